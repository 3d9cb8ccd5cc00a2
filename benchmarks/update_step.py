"""The population optimizer step: what each backend costs before the first step and per step.

Each backend (``SHOAL_UPDATE=native|compiled|eager``) runs in a fresh process, as a study's process
would: the time to the end of its first step (loading or building the kernel, or compiling it), then
the median of ``--steps`` steps over the parameters of ``--members`` members of all four optimizer
families (sizes drawn like the MLP preset's). ``--cold`` points the caches (shoal's and Inductor's)
at an empty folder first, as on a machine that never ran shoal. Ratios are against ``compiled``.

    python benchmarks/update_step.py                 # warm caches, 1 and 2 threads
    python benchmarks/update_step.py --cold          # first run on a machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
import numpy as np, torch
threads, members, steps = (int(a) for a in sys.argv[1:4])
torch.set_num_threads(threads)
from shoal.engine import _pop_optim as po
rng = np.random.default_rng(0)
sizes = rng.integers(2_000, 200_000, members) // po.BLOCK * po.BLOCK
code = np.concatenate([np.full(s, 2 * k + 1) for k, s in enumerate(sizes)])
n = code.size
opts = ["sgd", "momentum", "rmsprop", "adam"]
cfgs = [dict(optimizer=opts[k % 4], momentum=0.9, rmsprop_alpha=0.99, beta1=0.9, beta2=0.999, eps=1e-8,
             weight_decay=1e-4 * (k % 2), l1=0.0) for k in range(members)]
coef = po.Coefficients(cfgs)
codes = po.Codes(code, 2 * members, torch.device("cpu"))
P, G = torch.randn(n), torch.randn(n) * 1e-2
M, V = torch.zeros(n), torch.zeros(n)
table = torch.from_numpy(coef.table(np.full(members, 1e-3), np.ones(members)))
t1 = time.perf_counter()
po.flat_update(P, G, M, V, codes, table)
first = time.perf_counter() - t1
times = []
for s in range(steps):
    table = torch.from_numpy(coef.table(np.full(members, 1e-3), np.full(members, s + 2)))
    t = time.perf_counter()
    po.flat_update(P, G, M, V, codes, table)
    times.append(time.perf_counter() - t)
print(json.dumps({"backend": po.backend, "params": int(n), "first_step_s": first,
                  "step_ms": 1000 * float(np.median(times)), "process_s": time.perf_counter() - t0}))
"""


def run(backend: str, threads: int, members: int, steps: int, env_extra: dict) -> dict:
    env = {**os.environ, "SHOAL_UPDATE": backend, "OMP_NUM_THREADS": str(threads), **env_extra}
    env.pop("SHOAL_NO_COMPILE", None)
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(members), str(steps)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=22)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3, help="fresh processes per backend and thread count")
    ap.add_argument("--cold", action="store_true", help="empty shoal and Inductor caches for every process")
    ap.add_argument("--backends", default="compiled,native,eager")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.members} members; median of {args.steps} steps; "
          f"{args.reps} processes each; caches {'cold' if args.cold else 'warm'}")
    for threads in (int(t) for t in args.threads.split(",")):
        rows = {}
        for backend in args.backends.split(","):
            if backend == "eager" and threads > 1:
                continue
            got = []
            for _ in range(args.reps):
                with tempfile.TemporaryDirectory() as tmp:
                    extra = {"SHOAL_CACHE_DIR": tmp, "TORCHINDUCTOR_CACHE_DIR": tmp} if args.cold else {}
                    got.append(run(backend, threads, args.members, args.steps, extra))
            rows[backend] = (statistics.median(g["first_step_s"] for g in got),
                             statistics.median(g["step_ms"] for g in got), got[0]["backend"], got[0]["params"])
        base = rows.get("compiled")
        for backend, (first, step, actual, params) in rows.items():
            ratio = f"   step {base[1] / step:.2f}x, start {base[0] / max(first, 1e-6):.0f}x vs compiled" if base else ""
            print(f"{threads} thread(s)  {backend:9s} ({actual:8s}) first step {first:7.3f} s   "
                  f"{step:7.2f} ms/step over {params / 1e6:.2f}M params{ratio}")


if __name__ == "__main__":
    main()

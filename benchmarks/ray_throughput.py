"""Ray throughput: the same N configs trained as populations in this process, on 1 and on 2 Ray workers.

Each repetition trains the same N configurations of the MLP preset (Optuna's RandomSampler, seed
0) for E epochs through each pool, in turn, in one run:

- ``local``: ``LocalPool``, populations in this process (torch's threads: all cores);
- ``ray xW``: ``RayPool`` with W actors of one core and one thread each, started before the clock
  and warmed up (each actor compiles its optimizer step once); the epochs include everything a
  study pays on Ray: sending the members, the per-epoch records and the per-epoch snapshots that
  make a lost worker cost no epoch.

Prints, per pool, the median over the repetitions of configs/s (N * E / seconds, the unit of
``throughput.py``) and its ratio to ``local``; then the actors' start-up time and the snapshot
bytes each epoch moves to the driver.

    python benchmarks/ray_throughput.py                    # 32 configs, 5 epochs, 3 repetitions
    python benchmarks/ray_throughput.py --n 64 --reps 5 --workers 1 2
    python benchmarks/ray_throughput.py --address auto     # a running cluster (ray start --head)
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import SPACES, load, sample_configs  # noqa: E402


def train(pool, cfgs: list[dict], epochs: int) -> tuple[float, int]:
    """Seconds to train every config for ``epochs`` through ``pool``; snapshot bytes of the last epoch."""
    from shoal.engine import normalize

    t0 = time.perf_counter()
    for i, cfg in enumerate(cfgs):
        pool.add(i, normalize(cfg), i, 0, epochs)
    for _ in range(epochs):
        records, failed = pool.run_epoch()
        for key in failed:
            pool.remove(key)
    seconds = time.perf_counter() - t0
    members = getattr(pool, "members", {})
    snap_bytes = sum(len(pickle.dumps(m.snap)) for m in members.values() if m.snap is not None)
    for key in list(range(len(cfgs))):
        pool.remove(key)
    return seconds, snap_bytes


def warm_up(pool, cfgs: list[dict]) -> None:
    """One epoch of a few members: each process compiles its optimizer step once, before the clock."""
    from shoal.engine import normalize

    keys = [("warm", i) for i in range(min(4, len(cfgs)))]
    for key in keys:
        pool.add(key, normalize(cfgs[key[1]]), 0, 0, 1)
    pool.run_epoch()
    for key in keys:
        pool.remove(key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="configs (default 32)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3, help="repetitions; medians are printed (default 3)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts (default 1 2)")
    ap.add_argument("--data", choices=["digits", "mnist"], default="digits")
    ap.add_argument("--space", choices=sorted(SPACES), default="preset")
    ap.add_argument("--address", default=None, help="a running Ray cluster; default: a local Ray on this machine")
    args = ap.parse_args()

    import ray
    import torch

    from shoal.engine import TensorData
    from shoal.engine._pool import LocalPool
    from shoal.engine._ray_pool import RayPool

    cfgs, _ = sample_configs(args.n, 0, args.space)
    data = TensorData.from_prepared(load(args.data))
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        # Ray runs its workers at niceness 15 (so they never starve its own services); here they
        # would lose the cores to anything else running, and the comparison with this process
        # (niceness 0) would measure the scheduler. A dedicated cluster has nothing to yield to.
        os.environ.setdefault("RAY_worker_niceness", "0")
        # Every pool's actors stay up for the whole run (started and warmed once); Ray counts the
        # CPUs they hold, so the cluster offers as many as all pools hold together. Only one pool
        # trains at any moment: the others' actors wait idle.
        ray.init(num_cpus=max(os.cpu_count() or 1, sum(args.workers)), include_dashboard=False, log_to_driver=False)
    print(f"{args.n} configs ({args.space} space, {args.data}), {args.epochs} epochs, {args.reps} repetitions; "
          f"torch {torch.__version__}, {os.cpu_count()} cores here, Ray {ray.__version__}: "
          f"{ray.cluster_resources().get('CPU', 0):g} logical CPUs in the cluster; load average before: "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    pools = {"local": LocalPool("mlp", [data])}
    startup = {}
    for w in args.workers:
        t0 = time.perf_counter()
        pool = RayPool("mlp", [data], "cpu", workers=w)
        warm_up(pool, cfgs)
        startup[f"ray x{w}"] = time.perf_counter() - t0
        pools[f"ray x{w}"] = pool
    warm_up(pools["local"], cfgs)

    times: dict[str, list[float]] = {name: [] for name in pools}
    snap = {}
    for rep in range(args.reps):
        for name, pool in pools.items():
            seconds, snap[name] = train(pool, cfgs, args.epochs)
            times[name].append(seconds)
            print(f"  rep {rep + 1} {name:<8} {seconds:7.2f} s", flush=True)
    base = statistics.median(times["local"])
    print()
    for name, ts in times.items():
        med = statistics.median(ts)
        extra = f"start-up {startup[name]:.1f} s, snapshots {snap[name] / 2**20:.1f} MiB/epoch" if name in startup else ""
        print(f"{name:<8} {args.n * args.epochs / med:7.2f} configs/s  (median {med:6.2f} s of "
              f"{', '.join(f'{t:.2f}' for t in ts)})  {base / med:5.2f}x local  {extra}")
    for pool in pools.values():
        pool.close()
    ray.shutdown()


if __name__ == "__main__":
    main()

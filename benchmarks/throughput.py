"""Throughput: the same N configs of the MLP preset, 10 epochs each, trained three ways.

(a) the way an Optuna user does it: an Optuna study whose objective builds a plain nn.Module and
    a torch.optim optimizer, two worker processes of one thread each (each takes half the configs);
(b) shoal's single-model engine, one config after another (torch's default threads);
(c) shoal's population engine: one population per batch size, every member at once.

Prints configs/s, useful GFLOP/s (matrix-product FLOPs of forward + backward: 6 * rows *
sum(fan_in * fan_out) per epoch) and its share of this machine's measured 2-thread sgemm rate;
last, ``speedup vs optuna: X.XXx``.

    python benchmarks/throughput.py --quick
    python benchmarks/throughput.py
    python benchmarks/throughput.py --data mnist            # or --data mnist:DIR, any load_dataset spec
    python benchmarks/throughput.py --ceiling               # per-step cost: one member, K alike, the mix
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from collections import defaultdict

import numpy as np

import os
from pathlib import Path

# The 10,000 real MNIST images live in the team's shared folder beside the checkout.
MNIST = "mnist:" + os.environ.get("SHOAL_MNIST", str(Path(__file__).resolve().parents[2] / "shared/data/mnist-10k"))


# --space narrow: the setting of the prototype (digits MLP 64-h-h-10, h in 32..256, Adam,
# batch 64): what a population gains when its members share a batch size and layer structure.
NARROW = {"optimizer": "adam", "batch_size": 64, "depth": 2, "shape": "constant", "width": [32, 64, 128, 256],
          "activation": "relu", "batch_norm": "off", "dropout": 0.0, "lr_decay": "none", "weight_decay": 0.0,
          "l1": 0.0, "lr": {"low": 1e-4, "high": 1e-2}}
SPACES = {"preset": {}, "narrow": NARROW}


def make_space(name: str):
    from shoal.space import preset

    return preset("mlp").update(SPACES[name])


def sample_configs(n: int, seed: int, space_name: str = "preset") -> tuple[list[dict], list[dict]]:
    """N configs, and the raw Optuna params that reproduce them (for enqueue_trial)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = make_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trials = [study.ask() for _ in range(n)]
    cfgs = [space.sample(t) for t in trials]
    return cfgs, [dict(t.params) for t in trials]


def load(name: str):
    from shoal.data import load_dataset, prepare, train_val_split

    ds = load_dataset(MNIST if name == "mnist" else name)
    return prepare(ds, train_val_split(ds, val_fraction=0.2, seed=0))


def matmul_flops(cfg: dict, n_in: int, n_out: int) -> float:
    from shoal.engine import hidden_widths, normalize

    widths = [n_in] + hidden_widths(normalize(cfg)) + [n_out]
    return float(sum(a * b for a, b in zip(widths[:-1], widths[1:])))


# ---------------------------------------------------------------------- (a) the Optuna user's way
def _plain_model(cfg: dict, n_in: int, n_out: int):
    from torch import nn

    from shoal.engine import hidden_widths, normalize

    c = normalize(cfg)
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU,
            "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}
    layers, w = [nn.Flatten()], n_in
    for h in hidden_widths(c):
        layers.append(nn.Linear(w, h))
        if c["batch_norm"] == "before":
            layers.append(nn.BatchNorm1d(h))
        layers.append(acts[c["activation"]]())
        if c["batch_norm"] == "after":
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.Dropout(c["dropout"]))
        w = h
    layers.append(nn.Linear(w, n_out))
    return nn.Sequential(*layers), c


def _optuna_worker(args) -> int:
    cfgs, data_name, epochs, device, space_name = args  # raw Optuna params of each trial
    import optuna
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = load(data_name)
    X, y = torch.from_numpy(p.X_train).flatten(1).to(device), torch.from_numpy(p.y_train).to(device)
    Xv, yv = torch.from_numpy(p.X_val).flatten(1).to(device), torch.from_numpy(p.y_val).to(device)
    space = make_space(space_name)

    def objective(trial):
        model, c = _plain_model(space.sample(trial), X.shape[1], p.n_outputs)
        model = model.to(device)
        lr, wd = c["lr"], c["weight_decay"]
        opt = {"sgd": lambda: torch.optim.SGD(model.parameters(), lr, weight_decay=wd),
               "momentum": lambda: torch.optim.SGD(model.parameters(), lr, momentum=c["momentum"], weight_decay=wd),
               "rmsprop": lambda: torch.optim.RMSprop(model.parameters(), lr, alpha=c["rmsprop_alpha"],
                                                      eps=c["eps"], weight_decay=wd),
               "adam": lambda: torch.optim.Adam(model.parameters(), lr, betas=(c["beta1"], c["beta2"]),
                                                eps=c["eps"], weight_decay=wd)}[c["optimizer"]]()
        bs = c["batch_size"]
        for _ in range(epochs):
            model.train()
            for idx in torch.randperm(X.shape[0], device=device).split(bs):
                loss = F.cross_entropy(model(X[idx]), y[idx])
                if c["l1"] > 0:
                    loss = loss + c["l1"] * sum(q.abs().sum() for q in model.parameters() if q.dim() > 1)
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                val = F.cross_entropy(model(Xv), yv).item()
        return val

    study = optuna.create_study()
    for cfg in cfgs:
        study.enqueue_trial(cfg, skip_if_exists=False)
    study.optimize(objective, n_trials=len(cfgs))
    return len(cfgs)


def run_optuna(cfgs, data_name, epochs, workers=2, device="cpu", space_name="preset") -> float:
    parts = [(cfgs[i::workers], data_name, epochs, device, space_name) for i in range(workers)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        start = time.perf_counter()
        pool.map(_optuna_worker, parts)
        return time.perf_counter() - start


# ---------------------------------------------------------------------- (b) and (c)
def run_single(cfgs, data, epochs) -> float:
    from shoal._errors import Diverged
    from shoal.engine import train

    start = time.perf_counter()
    for i, cfg in enumerate(cfgs):
        try:
            train(cfg, data, epochs=epochs, seed=i)
        except Diverged:
            pass
    return time.perf_counter() - start


def run_population(cfgs, data, epochs) -> tuple[float, dict]:
    from shoal.engine._config import diverged
    from shoal.engine._packer import group_key
    from shoal.engine._population import Population

    groups = defaultdict(list)
    for i, cfg in enumerate(cfgs):
        groups[group_key(cfg, "mlp")].append((i, cfg))
    start = time.perf_counter()
    info = {}
    for (_, bs), members in sorted(groups.items()):
        t = time.perf_counter()
        pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=bs,
                         device=data.X_train.device)
        for i, cfg in members:
            pop.add(i, cfg, seed=i, data=data, epochs=epochs)
        for _ in range(epochs):
            for key, record in pop.run_epoch().items():
                if diverged(record.train_loss, record.val_loss):  # as (b) and the study: stop it
                    pop.remove(key)
            if len(pop) == 0:
                break
        info[bs] = (len(members), time.perf_counter() - t)
    return time.perf_counter() - start, info


def run_pool(cfgs, data, epochs, workers) -> float:
    """(c2) the caviar-mode pool: populations over worker processes of one thread each, every member
    added at once (what `shoal tune --engine population --workers N` does with a large population)."""
    from shoal.engine import normalize
    from shoal.engine._config import diverged
    from shoal.engine._pool import make_pool

    start = time.perf_counter()
    pool = make_pool("mlp", [data], data.X_train.device, workers)
    try:
        for i, cfg in enumerate(cfgs):
            pool.add(i, normalize(cfg), i, 0, epochs)
        for _ in range(epochs):
            records, failed = pool.run_epoch()
            for key in [k for k, r in records.items() if diverged(r.train_loss, r.val_loss)] + list(failed):
                pool.remove(key)
            if len(pool) == 0:
                break
    finally:
        pool.close()
    return time.perf_counter() - start


def _per_step(fn, steps: int, reps: int = 3) -> float:
    """Median seconds per step of ``fn`` (one epoch of ``steps`` steps), after one warm call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) / steps)
    return float(np.median(times))


def ceiling(cfgs, data, batch: int, threads: int) -> None:
    """Per-step milliseconds at one batch size, one thread per process: what bounds a population.

    (1) one member in the single engine (the Optuna user's cost per step), (2) the same member alone
    in a population, (3) K members of that one shape (learning rates differ), (4) the K members of
    the preset mix at this batch size, (5) the same K trained one after another in the single
    engine, and (6) the matrix products alone of that mix, as plain ``torch.mm`` calls (forward,
    weight and input gradients): a floor no engine on this CPU beats.
    """
    import torch

    from shoal.engine import hidden_widths, normalize, train
    from shoal.engine._population import Population

    torch.set_num_threads(threads)
    n_in = int(np.prod(data.input_shape))
    steps = -(-data.n_train // batch)
    mix = [normalize(c) for c in cfgs if normalize(c)["batch_size"] == batch]
    K = len(mix)
    one = normalize({"batch_size": batch, "width": 128, "depth": 2, "optimizer": "adam", "lr": 1e-3})
    alike = [{**one, "lr": 1e-3 * (1 + i / K)} for i in range(K)]

    def population(members):
        pop = Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=batch)
        for i, c in enumerate(members):
            pop.add(i, c, seed=i, data=data, epochs=10**6)
        return lambda: pop.run_epoch()

    def matmuls(members):
        mats = []
        for c in members:
            dims = [n_in] + hidden_widths(c) + [data.n_outputs]
            for a, b in zip(dims[:-1], dims[1:]):
                mats.append((torch.randn(batch, a), torch.randn(a, b), torch.randn(batch, b)))

        def run():
            for _ in range(steps):
                for x, w, g in mats:
                    torch.mm(x, w), torch.mm(x.t(), g), torch.mm(g, w.t())
        return run

    def flops(members):
        return sum(6.0 * batch * matmul_flops(c, n_in, data.n_outputs) for c in members)

    rows = [("(1) one member, single engine", [one], lambda: train(one, data, epochs=1, seed=0)),
            ("(2) one member, population", [one], population([one])),
            (f"(3) {K} alike members, population", alike, population(alike)),
            (f"(4) {K} preset members, population", mix, population(mix)),
            (f"(5) the {K} one by one, single engine", mix, lambda: run_single(mix, data, 1)),
            ("(6) their matrix products alone", mix, matmuls(mix))]
    print(f"per step at batch {batch}, {threads} thread(s), {steps} steps per epoch on {data.n_train} rows "
          f"(width 128 x 2 for the alike members; the mix: widths 32-512, depths 1-4, every option)")
    for name, members, fn in rows:
        sec = _per_step(fn, steps)
        print(f"{name:<38} {1e3 * sec:8.2f} ms/step  {1e3 * sec / len(members):7.3f} ms per member  "
              f"{flops(members) / sec / 1e9:6.1f} GFLOP/s")


def sgemm_rate(threads=2, n=2048, reps=10, device="cpu") -> float:
    import torch

    torch.set_num_threads(threads)
    if device != "cpu":
        n = 8192
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    _sync(device)
    return 2.0 * n**3 * reps / (time.perf_counter() - start)


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer configs: under 2 minutes")
    ap.add_argument("--data", default="digits", help="digits, mnist (the shared 10k images) or mnist:DIR")
    ap.add_argument("--n", type=int, default=None, help="configs (default 24 quick, 96 full)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-single", action="store_true", help="skip (b)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (every engine, the baseline too)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for (c2); 1 skips it")
    ap.add_argument("--space", choices=sorted(SPACES), default="preset",
                    help="preset: the whole mlp preset; narrow: the issue's prototype setting")
    ap.add_argument("--ceiling", action="store_true", help="only per-step costs at --batch (see ceiling())")
    ap.add_argument("--batch", type=int, default=16, help="batch size for --ceiling")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for --ceiling")
    args = ap.parse_args()
    n = args.n or (24 if args.quick else 96)

    import torch

    from shoal.engine import TensorData
    from shoal.engine._pop_optim import flat_update  # noqa: F401  (imported before timing)

    cfgs, params = sample_configs(n, args.seed, args.space)
    p = load(args.data)
    data = TensorData.from_prepared(p, args.device)
    if args.ceiling:
        ceiling(cfgs, data, args.batch, args.threads)
        return
    n_in = int(np.prod(data.input_shape))
    flops = sum(6.0 * data.n_train * args.epochs * matmul_flops(c, n_in, data.n_outputs) for c in cfgs)
    peak = sgemm_rate(2, device=args.device)
    where = "2-thread sgemm" if args.device == "cpu" else f"{torch.cuda.get_device_name()} fp32 matmul"
    print(f"{n} configs from the {args.space} mlp space on {args.data} ({data.n_train} train rows), {args.epochs} epochs; "
          f"torch {torch.__version__}; {where} {peak / 1e9:.1f} GFLOP/s")

    def line(name, seconds):
        rate = flops / seconds
        print(f"{name:<28} {seconds:8.1f} s  {n / seconds:7.2f} configs/s  {rate / 1e9:6.1f} GFLOP/s  "
              f"{100 * rate / peak:5.1f}% of peak")

    t_a = run_optuna(params, args.data, args.epochs, device=args.device, space_name=args.space)
    line("(a) optuna, 2 processes", t_a)
    torch.set_num_threads(2)
    warm = time.perf_counter()
    run_population(cfgs[:1], data, 1)  # loads (or builds) the optimizer step: once per process
    print(f"    (population warm-up incl. loading the optimizer step: {time.perf_counter() - warm:.1f} s, not counted)")
    if not args.skip_single:
        line("(b) shoal single engine", run_single(cfgs, data, args.epochs))
    t_c, info = run_population(cfgs, data, args.epochs)
    line("(c) shoal population", t_c)
    print("    populations (batch size: members, seconds): "
          + ", ".join(f"{bs}: {k}, {s:.1f}" for bs, (k, s) in info.items()))
    best = t_c
    if args.device == "cpu" and args.workers > 1:
        t_c2 = run_pool(cfgs, data, args.epochs, args.workers)
        line(f"(c2) population, {args.workers} procs", t_c2)
        print("    (c2 counts its workers' start: imports, a few seconds each, in parallel)")
        best = min(best, t_c2)
    print(f"speedup vs optuna: {t_a / best:.2f}x")


if __name__ == "__main__":
    main()

"""How long ``shoal report`` takes on a 5,000-trial study (target: under 10 s).

Builds a SQLite study of 5,000 finished trials once (cached next to this script's output path),
each with a 20-epoch learning curve, a config drawn from the MLP preset, timings and a few
pruned / failed trials; then times writing the HTML report (loading included) three times.

    python benchmarks/report_speed.py [--trials 5000] [--epochs 20] [--db /tmp/report_speed.db]

Prints the median of the runs and its ratio to the 10 s target (below 1 is good).
"""

from __future__ import annotations

import argparse
import os
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_S = 10.0


def build(path: Path, n: int, epochs: int, seed: int = 0) -> None:
    """A study whose trials look like a real MLP search: lr matters most, then width and optimizer."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from shoal.space import preset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    space = preset("mlp")
    # Configs come from the real MLP space, sampled on a throw-away in-memory study.
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    t0 = dt.datetime(2026, 1, 1)
    clock = 0.0
    batch = []
    for number in range(n):
        probe = scratch.ask()
        config = space.sample(probe)
        dists = dict(probe.distributions)
        params = dict(probe.params)
        scratch.tell(probe, 0.0)
        quality = abs(np.log10(config["lr"]) + 2.3) + 0.2 * (config["width"] < 64) + rng.normal(0, 0.1)
        ep = np.arange(1, epochs + 1)
        floor = 0.05 + 0.15 * quality
        val = floor + 2.2 * np.exp(-ep / (1.5 + 3 * quality)) + rng.normal(0, 0.01, epochs)
        train = val * (0.6 + 0.3 * rng.random()) + rng.normal(0, 0.005, epochs)
        acc = np.clip(1.0 - val / 2.4, 0, 1)
        secs = rng.uniform(0.2, 0.6, epochs)
        state = TrialState.COMPLETE
        if rng.random() < 0.04:
            state = TrialState.PRUNED
        elif rng.random() < 0.02:
            state = TrialState.FAIL
        start = t0 + dt.timedelta(seconds=clock)
        clock += float(secs.sum()) + 0.01
        attrs = {"config": config, "seed": int(rng.integers(2**31)), "seconds": float(secs.sum()),
                 "epochs_run": epochs, "engine": "population",
                 "curves": {"train_loss": train.tolist(), "train_acc": (acc + 0.02).clip(0, 1).tolist(),
                            "val_loss": val.tolist(), "val_acc": acc.tolist(), "lr": [config["lr"]] * epochs,
                            "seconds": secs.tolist()},
                 "gap": float(val[-1] - train[-1])}
        if state == TrialState.FAIL:
            attrs["fail_reason"] = "training diverged"
        batch.append(create_trial(
            state=state, value=float(val[-1]) if state == TrialState.COMPLETE else None, params=params,
            distributions=dists, user_attrs=attrs,
            intermediate_values={} if state == TrialState.FAIL else {int(e): float(v) for e, v in zip(ep, val)},
        ))
        batch[-1].datetime_start = start
        batch[-1].datetime_complete = start + dt.timedelta(seconds=float(secs.sum()))
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name="bench", direction="minimize")
    study.set_user_attr("shoal", {"metric": "val_loss", "data": "synthetic", "preset": "mlp", "epochs": epochs})
    study.add_trials(batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "shoal_report_speed.db")
    args = ap.parse_args()
    from shoal.report import write_report

    if not args.db.exists():
        t = time.perf_counter()
        build(args.db, args.trials, args.epochs)
        print(f"built {args.trials} trials x {args.epochs} epochs in {time.perf_counter() - t:.1f} s -> {args.db}")
    out = args.db.with_suffix(".html")
    times, cpu = [], []
    for _ in range(args.runs):
        t, c = time.perf_counter(), time.process_time()
        write_report(str(args.db), "bench", out)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    med = statistics.median(times)
    print(f"report of {args.trials} trials: runs {', '.join(f'{x:.2f}' for x in times)} s; median {med:.2f} s; "
          f"ratio to the {TARGET_S:.0f} s target {med / TARGET_S:.2f}; {out.stat().st_size / 1e6:.1f} MB")
    # On a shared machine the wall time includes waiting for a core; the work is one thread, so its CPU
    # seconds are what an idle machine would take.
    print(f"CPU seconds per run: {', '.join(f'{x:.2f}' for x in cpu)}; median {statistics.median(cpu):.2f} s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

"""Time to target: how soon, process start included, each method reaches Optuna's best accuracy.

The anchor is what an Optuna user writes: TPESampler + HyperbandPruner, an objective that builds a
plain ``nn.Module`` MLP from the sampled config and trains it with ``torch.optim``, reporting the
validation accuracy every epoch; two worker processes (one torch thread each) share a journal
storage and run half the trials each. The search space is shoal's ``mlp`` preset, sampled with
``preset("mlp").sample(trial)``, so every method searches the same space. The second anchor is Ray
Tune with ASHA (random search, 2 concurrent trials of 1 CPU each). shoal runs ``shoal.tune(...,
engine="population")`` with each strategy in a fresh process.

Every method runs in subprocesses started after the clock: imports, data loading and (for Ray) the
cluster start count. Each run gives the best validation accuracy as a function of wall time: a
point when a trial completes (its last epoch's accuracy, Optuna's ``best_value``; ``--curve
epoch`` counts every reported epoch instead). The target is the median over seeds (the lower
median for an even count, so at least half the anchor's runs reach it) of the Optuna anchor's best
accuracy after all its trials. Per method: median time to the target over seeds ("not reached"
when more than half of the runs do not reach it), median best accuracy at the anchor's median
total wall time, median final best accuracy. Last line: ``time-to-target speedup vs optuna:
X.XXx`` (MNIST, the best shoal strategy).

A best-of-many accuracy is lifted by validation noise, the more the more trials complete (the
winner's curse). ``--retrain R`` also trains each run's chosen configuration (its best completed
trial) R more times with new seeds on the same split, by the anchor's plain PyTorch trainer, and
shows the median over seeds of their mean ("retrained"): how good what each method found is.

    python benchmarks/time_to_target.py --quick                 # 2 seeds, 30 trials, 8 epochs
    python benchmarks/time_to_target.py --task mnist --seeds 5 --retrain 3  # the full comparison
    python benchmarks/time_to_target.py --task digits --strategies tpe+hyperband --no-ray
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The 10,000 real MNIST images live in the team's shared folder beside the checkout.
MNIST = "mnist:" + os.environ.get("SHOAL_MNIST", str(Path(__file__).resolve().parents[2] / "shared/data/mnist-10k"))
TASKS = {"mnist": MNIST, "digits": "digits"}
DEFAULT_STRATEGIES = "tpe+hyperband,random+sha,coarse-to-fine,pbt"
DEFAULT_PRUNER = {"coarse-to-fine": "sha", "pbt": "none"}
SKIPPED = 3  # a shoal worker's exit status when tune() refuses the strategy (ConfigError)
EXPLODED = 1e4  # shoal's divergence rule: a loss this large (or not finite) stops the run


# ---------------------------------------------------------------------- plain PyTorch training
def load_split(task: str, seed: int) -> dict:
    """The same split and scaling shoal uses for ``seed`` (shoal.data; numpy arrays)."""
    from shoal.data import load_dataset, prepare, train_val_split

    ds = load_dataset(TASKS[task])
    p = prepare(ds, train_val_split(ds, val_fraction=0.2, seed=seed))
    return {"X": p.X_train.reshape(len(p.X_train), -1), "y": p.y_train,
            "Xv": p.X_val.reshape(len(p.X_val), -1), "yv": p.y_val, "n_out": int(p.n_outputs)}


def plain_model(cfg: dict, n_in: int, n_out: int, seed: int):
    """The MLP an Optuna user writes for the preset's config: Linear, batch norm before or after
    the activation, dropout; widths constant or halved per layer; the config's weight init."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU,
            "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}
    width, layers, w = cfg["width"], [], n_in
    for i in range(cfg["depth"]):
        h = max(width >> i, 8) if cfg["shape"] == "taper" else width
        layers.append(nn.Linear(w, h))
        if cfg["batch_norm"] == "before":
            layers.append(nn.BatchNorm1d(h))
        layers.append(acts[cfg["activation"]]())
        if cfg["batch_norm"] == "after":
            layers.append(nn.BatchNorm1d(h))
        if cfg["dropout"] > 0:
            layers.append(nn.Dropout(cfg["dropout"]))
        w = h
    layers.append(nn.Linear(w, n_out))
    model = nn.Sequential(*layers)
    init = {"normal": lambda t: nn.init.normal_(t, std=0.01),
            "uniform": lambda t: nn.init.uniform_(t, -t.shape[1] ** -0.5, t.shape[1] ** -0.5),
            "xavier": nn.init.xavier_uniform_,
            "he": lambda t: nn.init.kaiming_normal_(t, nonlinearity="relu")}[cfg["init"]]
    for m in model.modules():
        if isinstance(m, nn.Linear):
            init(m.weight)
            nn.init.zeros_(m.bias)
    return model


def plain_train(cfg: dict, data: dict, epochs: int, seed: int):
    """Train ``cfg`` with torch.optim; yield (train_loss, val_loss, val_acc) after each epoch."""
    import torch
    import torch.nn.functional as F

    X, y = torch.from_numpy(data["X"]), torch.from_numpy(data["y"])
    Xv, yv = torch.from_numpy(data["Xv"]), torch.from_numpy(data["yv"])
    model = plain_model(cfg, X.shape[1], data["n_out"], seed)
    lr, wd, params = cfg["lr"], cfg["weight_decay"], model.parameters()
    opt = {"sgd": lambda: torch.optim.SGD(params, lr, weight_decay=wd),
           "momentum": lambda: torch.optim.SGD(params, lr, momentum=cfg["momentum"], weight_decay=wd),
           "rmsprop": lambda: torch.optim.RMSprop(params, lr, alpha=cfg["rmsprop_alpha"], eps=cfg["eps"],
                                                  weight_decay=wd),
           "adam": lambda: torch.optim.Adam(params, lr, betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                                            weight_decay=wd)}[cfg["optimizer"]]()
    weights = [q for q in model.parameters() if q.dim() > 1]
    for epoch in range(epochs):
        decay = cfg["lr_decay"]
        factor = (cfg["step_gamma"] ** (epoch // cfg["step_size"]) if decay == "step" else
                  cfg["exp_gamma"] ** epoch if decay == "exponential" else
                  0.5 * (1 + math.cos(math.pi * epoch / epochs)) if decay == "cosine" else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr * factor
        model.train()
        batches = list(torch.randperm(len(X)).split(cfg["batch_size"]))
        if len(batches) > 1 and len(batches[-1]) == 1:  # batch norm cannot normalize one row
            batches[-2:] = [torch.cat(batches[-2:])]
        total = 0.0
        for idx in batches:
            loss = F.cross_entropy(model(X[idx]), y[idx])
            total += loss.item() * len(idx)
            if cfg["l1"] > 0:
                loss = loss + cfg["l1"] * sum(w.abs().sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            out = model(Xv)
            val_loss = F.cross_entropy(out, yv).item()
            val_acc = (out.argmax(1) == yv).float().mean().item()
        yield total / len(X), val_loss, val_acc


def _diverged(train_loss: float, val_loss: float) -> bool:
    return not all(math.isfinite(v) and v < EXPLODED for v in (train_loss, val_loss))


# ---------------------------------------------------------------------- workers (subprocesses)
def worker_optuna(a) -> None:
    import optuna
    import torch

    from shoal.space import preset

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load_split(a.task, a.seed)
    space = preset("mlp")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(a.storage))
    study = optuna.load_study(study_name="anchor", storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=a.seed * 1000 + a.worker),
                              pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=a.epochs,
                                                                    reduction_factor=3))

    def objective(trial):
        cfg = space.sample(trial)
        times: list[float] = []
        try:
            for epoch, (train_loss, val_loss, val_acc) in enumerate(
                    plain_train(cfg, data, a.epochs, a.seed * 100_000 + trial.number)):
                times.append(time.time())
                if _diverged(train_loss, val_loss):
                    return float("nan")  # Optuna records the trial as failed
                trial.report(val_acc, epoch + 1)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return val_acc
        finally:
            trial.set_user_attr("t", times)

    study.optimize(objective, n_trials=a.trials)


def worker_ray(a) -> None:
    import logging

    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    data = load_split(a.task, a.seed)
    epochs, seed = a.epochs, a.seed

    def trainable(config, data):
        import optuna
        import torch

        from shoal.space import preset

        torch.set_num_threads(1)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=config["draw"])).ask()
        cfg = preset("mlp").sample(draw)
        for train_loss, val_loss, val_acc in plain_train(cfg, data, epochs, seed * 100_000 + config["draw"] % 99_991):
            if _diverged(train_loss, val_loss):
                return
            tune.report({"val_acc": val_acc, "t": time.time()})

    # Ray runs its workers at niceness 15: on a busy machine they would wait for the cores.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, data=data), {"cpu": 1}),
        param_space={"draw": tune.randint(0, 2**31 - 1)},
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", num_samples=a.trials, max_concurrent_trials=2,
                                    reuse_actors=True, search_alg=BasicVariantGenerator(random_state=seed),
                                    scheduler=ASHAScheduler(max_t=epochs, grace_period=1, reduction_factor=3)),
        run_config=tune.RunConfig(storage_path=a.storage, verbose=0),
    )
    results = tuner.fit()
    trials = []
    for result in results:
        df = result.metrics_dataframe
        if df is None or "val_acc" not in df:
            trials.append({"t": [], "acc": [], "complete": False})
            continue
        trials.append({"t": [float(v) for v in df["t"]], "acc": [float(v) for v in df["val_acc"]],
                       "complete": len(df) >= epochs, "draw": int(result.config["draw"])})
    ray.shutdown()
    Path(a.out).write_text(json.dumps(trials))


def worker_shoal(a) -> None:
    import shoal
    from shoal._errors import ConfigError

    try:
        shoal.tune(data=TASKS[a.task], preset="mlp", strategy=a.strategy, pruner=a.pruner, trials=a.trials,
                   epochs=a.epochs, metric="val_acc", engine="population", storage=a.storage, seed=a.seed,
                   progress=False, **({"population": a.population} if a.population else {}),
                   **({"timeout": a.timeout} if a.timeout else {}))
    except ConfigError as exc:
        print(str(exc).splitlines()[0] if str(exc) else repr(exc), file=sys.stderr)
        sys.exit(SKIPPED)


# ---------------------------------------------------------------------- one run of one method
@dataclass
class Run:
    """One method's run on one seed: (seconds since process start, accuracy) events."""

    complete: list = field(default_factory=list)  # each completed trial: its final accuracy
    epoch: list = field(default_factory=list)  # every reported epoch of every trial
    wall: float = 0.0
    cpu: float = 0.0  # CPU seconds of the method's processes (less sensitive to others' load than wall)
    trials: int = 0
    note: str = ""
    chosen: dict | None = None  # the configuration of its best completed trial (None: PBT, or none completed)
    retrained: list = field(default_factory=list)  # --retrain: that configuration's accuracy, trained again


def _ray_config(draw: int) -> dict:
    """The configuration a Ray Tune trial trained (its draw seeds a random sample of the preset)."""
    import optuna

    from shoal.space import preset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return preset("mlp").sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=draw)).ask())


def _best_complete(study):
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    return max(done, key=lambda t: t.value, default=None)


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, __file__, "_worker", *args], stdout=fh, stderr=subprocess.STDOUT)


def _wait(procs: list[subprocess.Popen], logs: list[Path], what: str) -> tuple[list[int], float]:
    """Exit codes and CPU seconds of the workers (and the descendants they waited for)."""
    codes, cpu = [], 0.0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        codes.append(p.returncode)
        cpu += usage.ru_utime + usage.ru_stime
    for code, log in zip(codes, logs):
        if code not in (0, SKIPPED):
            raise RuntimeError(f"{what} worker failed (exit {code}):\n{log.read_text()[-3000:]}")
    return codes, cpu


def run_optuna(task: str, seed: int, trials: int, epochs: int, tmp: Path) -> Run:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = tmp / f"optuna-{task}-{seed}.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    optuna.create_study(study_name="anchor", storage=storage, direction="maximize")
    shares = [trials - trials // 2, trials // 2]
    logs = [tmp / f"optuna-{seed}-{w}.out" for w in range(2)]
    t0 = time.time()
    procs = [_spawn(["optuna", "--task", task, "--seed", str(seed), "--trials", str(n), "--epochs", str(epochs),
                     "--storage", str(path), "--worker", str(w)], logs[w]) for w, n in enumerate(shares)]
    _, cpu = _wait(procs, logs, "optuna")
    run = Run(wall=time.time() - t0, cpu=cpu)
    study = optuna.load_study(study_name="anchor", storage=storage)
    for tr in study.get_trials(deepcopy=False):
        times, steps = tr.user_attrs.get("t", []), sorted(tr.intermediate_values)
        run.epoch += [(t - t0, tr.intermediate_values[s]) for t, s in zip(times, steps)]
        if tr.state.name == "COMPLETE":
            run.complete.append((tr.datetime_complete.timestamp() - t0, tr.value))
    run.trials = len(study.trials)
    best = _best_complete(study)
    if best is not None:
        from shoal.space import preset

        run.chosen = preset("mlp").sample(optuna.trial.FixedTrial(best.params))
    return run


def run_ray(task: str, seed: int, trials: int, epochs: int, tmp: Path) -> Run:
    out, log = tmp / f"ray-{task}-{seed}.json", tmp / f"ray-{seed}.out"
    t0 = time.time()
    proc = _spawn(["ray", "--task", task, "--seed", str(seed), "--trials", str(trials), "--epochs", str(epochs),
                   "--storage", str(tmp / f"ray-{task}-{seed}"), "--out", str(out)], log)
    _, cpu = _wait([proc], [log], "ray")
    run = Run(wall=time.time() - t0, cpu=cpu)  # Ray's workers are the raylet's: partly counted
    best = None
    for tr in json.loads(out.read_text()):
        run.epoch += [(t - t0, acc) for t, acc in zip(tr["t"], tr["acc"])]
        if tr["complete"]:
            run.complete.append((tr["t"][-1] - t0, tr["acc"][-1]))
            if best is None or tr["acc"][-1] > best["acc"][-1]:
                best = tr
    run.trials = trials
    if best is not None:
        run.chosen = _ray_config(best["draw"])
    return run


def _pbt_recorded(study) -> bool:
    """Whether the study shows PBT at work (a lineage or PBT record), not just its random start."""
    keys = set(study.user_attrs)
    for tr in study.get_trials(deepcopy=False):
        keys |= set(tr.user_attrs)
    return any("pbt" in k or "lineage" in k or "parent" in k for k in keys)


def run_shoal(task: str, seed: int, trials: int, epochs: int, tmp: Path, strategy: str, pruner: str,
              population: int = 0, timeout: float = 0.0) -> Run | str:
    """A Run, or the reason the strategy was skipped (``population`` 0: shoal's default size;
    ``timeout``: shoal's timeout, 0: none)."""
    import optuna

    path = tmp / f"shoal-{task}-{strategy}-{pruner}-{population}-{seed}.db"
    log = tmp / f"shoal-{strategy}-{population}-{seed}.out"
    storage = f"sqlite:///{path}"
    t0 = time.time()
    proc = _spawn(["shoal", "--task", task, "--seed", str(seed), "--trials", str(trials), "--epochs", str(epochs),
                   "--storage", storage, "--strategy", strategy, "--pruner", pruner, "--population",
                   str(population), "--timeout", str(timeout)], log)
    codes, cpu = _wait([proc], [log], f"shoal {strategy}")
    if codes == [SKIPPED]:
        return log.read_text().strip().splitlines()[-1]
    run = Run(wall=time.time() - t0, cpu=cpu)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "Study name was omitted ..." per run
    study = optuna.load_study(study_name=None, storage=storage)
    for tr in study.get_trials(deepcopy=False):
        # The study stores when a trial started and ended, not when each epoch did. Epoch k's time is
        # estimated by spreading the trial's span in proportion to its epochs' `seconds` (a
        # population's own epoch time, which leaves out the compile and the other populations of
        # the round: adding them up from the start would date the epochs too early).
        seconds = tr.user_attrs.get("curves", {}).get("seconds", [])
        start = tr.datetime_start.timestamp()
        end = tr.datetime_complete.timestamp() if tr.datetime_complete else time.time()
        total, elapsed = sum(seconds) or 1.0, 0.0
        for step, s in zip(sorted(tr.intermediate_values), seconds):
            elapsed += s
            run.epoch.append((start + (end - start) * elapsed / total - t0, tr.intermediate_values[step]))
        if tr.state.name == "COMPLETE":
            run.complete.append((end - t0, tr.value))
    run.trials = len(study.trials)
    best = _best_complete(study)
    if best is not None and strategy != "pbt":  # a PBT member's weights come from a schedule, not one config
        run.chosen = dict(best.user_attrs["config"])
    if strategy == "pbt" and not _pbt_recorded(study):
        run.note = "no PBT record in the study: ran its random first generation only"
    return run


# ---------------------------------------------------------------------- the chosen configurations, again
RETRAIN_SEED = 900_000  # retrain r of seed s trains with seed RETRAIN_SEED + 1000 * s + r, for every method


def _retrain_one(task: str, seed: int, cfg: dict, epochs: int, rep: int) -> float:
    import torch

    torch.set_num_threads(1)
    acc = float("nan")
    for _, _, acc in plain_train(cfg, load_split(task, seed), epochs, RETRAIN_SEED + 1000 * seed + rep):
        pass
    return float(acc)


def retrain(task: str, seed: int, runs: list[Run], reps: int, epochs: int) -> None:
    """Train each run's chosen configuration ``reps`` more times, with new seeds, on the same split,
    by the anchor's plain PyTorch trainer (2 processes): the accuracy of what each method found,
    apart from the luck of the one run that found it. The best of many noisy trials is lifted by
    that noise (the winner's curse), the more the more trials complete; a retrained value is not."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(r, rep) for r in runs if r.chosen is not None for rep in range(reps)]
    if not jobs:
        return
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        futures = [ex.submit(_retrain_one, task, seed, r.chosen, epochs, rep) for r, rep in jobs]
        for (r, _), f in zip(jobs, futures):
            r.retrained.append(f.result())


# ---------------------------------------------------------------------- curves and summary
def best_curve(events: list) -> list[tuple[float, float]]:
    """Best-so-far accuracy, one point per improvement."""
    out, best = [], -math.inf
    for t, acc in sorted(events):
        if acc is not None and math.isfinite(acc) and acc > best:
            best = acc
            out.append((t, acc))
    return out


def time_to(curve, target: float) -> float:
    return next((t for t, acc in curve if acc >= target - 1e-12), math.inf)


def best_at(curve, when: float) -> float:
    return max((acc for t, acc in curve if t <= when), default=float("nan"))


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else float("nan")


def summarize(task: str, runs: dict[str, list[Run]], curve: str) -> dict:
    """Per method: medians over seeds of time to target, accuracy at the anchor's wall, final best."""
    curves = {m: [best_curve(getattr(r, curve)) for r in rs] for m, rs in runs.items()}
    anchor_final = [c[-1][1] if c else float("nan") for c in curves["optuna"]]
    target = statistics.median_low(anchor_final)
    equal_wall = statistics.median(r.wall for r in runs["optuna"])
    rows = {}
    for m, cs in curves.items():
        ttt = [time_to(c, target) for c in cs]
        rows[m] = {"time_to_target": statistics.median(ttt), "times": ttt,
                   "acc_at_equal_wall": _median([best_at(c, equal_wall) for c in cs]),
                   "final_best": _median([c[-1][1] if c else float("nan") for c in cs]),
                   "retrained": _median([statistics.fmean(r.retrained) if r.retrained else float("nan")
                                         for r in runs[m]]),
                   "wall": statistics.median(r.wall for r in runs[m]),
                   "cpu": statistics.median(r.cpu for r in runs[m]),
                   "note": "; ".join(sorted({r.note for r in runs[m] if r.note}))}
    print(f"\n{task}: target {target:.4f} (Optuna anchor's median best after its trials), equal wall "
          f"{equal_wall:.1f} s (its median total wall)")
    print(f"{'method':26s} {'time to target':>16s} {'acc @ equal wall':>17s} {'final best':>11s} {'retrained':>10s} "
          f"{'wall':>8s} {'CPU':>8s}")
    for m, row in rows.items():
        t = row["time_to_target"]
        shown = "not reached" if math.isinf(t) else f"{t:.1f} s"
        reached = sum(math.isfinite(x) for x in row["times"])
        print(f"{m:26s} {shown:>11s} ({reached}/{len(row['times'])}) {row['acc_at_equal_wall']:17.4f} "
              f"{row['final_best']:11.4f} {row['retrained']:10.4f} {row['wall']:7.1f}s {row['cpu']:7.1f}s" + (f"  [{row['note']}]" if row["note"] else ""))
    for m in rows:
        paired = retrained_vs_anchor(runs["optuna"], runs[m]) if m != "optuna" else None
        if paired:
            rows[m]["retrained_vs_optuna"] = paired
            print(f"  {m}, retrained minus optuna's, seed by seed: median {paired['median']:+.4f}, mean "
                  f"{paired['mean']:+.4f} (standard error {paired['se']:.4f}, t = {paired['t']:.1f}), higher in "
                  f"{paired['higher']} of {paired['n']} seeds")
    return {"target": target, "equal_wall": equal_wall, "methods": rows,
            "runs": {m: [asdict(r) for r in rs] for m, rs in runs.items()}}


def retrained_vs_anchor(anchor: list[Run], other: list[Run]) -> dict | None:
    """Seed-by-seed differences of the retrained accuracy (``other`` minus the anchor's): are they
    larger than the seeds' own spread? None without retrained values on 2 or more common seeds."""
    d = [statistics.fmean(o.retrained) - statistics.fmean(a.retrained)
         for a, o in zip(anchor, other) if a.retrained and o.retrained]
    if len(d) < 2:
        return None
    se = statistics.stdev(d) / math.sqrt(len(d))
    mean = statistics.fmean(d)
    return {"n": len(d), "median": statistics.median(d), "mean": mean, "se": se,
            "t": mean / se if se > 0 else 0.0, "higher": sum(x > 0 for x in d), "differences": d}


def save_partial(path: str | None, report: dict, task: str, runs: dict) -> None:
    """What has run so far, so that an interrupted benchmark keeps it (see --summarize)."""
    if path:
        partial = {m: [asdict(r) for r in rs] for m, rs in runs.items()}
        Path(path).write_text(json.dumps({**report, f"{task} (partial)": partial}, default=str))


def parse_strategies(text: str) -> list[tuple[str, str, int]]:
    """``name[+pruner][@population]`` items: (strategy, pruner, trials at once; 0 = shoal's default)."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        item, _, size = item.partition("@")
        name, _, pruner = item.partition("+")
        out.append((name, pruner or DEFAULT_PRUNER.get(name, "none"), int(size or 0)))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=["mnist", "digits", "both"], default="mnist")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 "
                    "(another sample of seeds; not with --anchor-from)")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                    help="shoal strategies, each name[+pruner][@population] (default %(default)s; "
                         "@N: N trials at once instead of shoal's default)")
    ap.add_argument("--no-ray", action="store_true", help="leave out the Ray Tune ASHA anchor")
    ap.add_argument("--curve", choices=["complete", "epoch"], default="complete",
                    help="count completed trials (default) or every reported epoch")
    ap.add_argument("--quick", action="store_true", help="2 seeds, 30 trials, 8 epochs")
    ap.add_argument("--json", help="write the raw numbers here")
    ap.add_argument("--shoal-trials", type=int, default=0, help="trials for shoal's strategies (default: "
                    "--trials, as the anchors); the target stays the anchor's best after --trials")
    ap.add_argument("--shoal-timeout", type=float, default=0.0, help="shoal's --timeout: no new trial after this "
                    "many seconds, and trials in training stop at their epoch's end; with a large --shoal-trials: "
                    "search until then")
    ap.add_argument("--retrain", type=int, default=0, metavar="R",
                    help="train each run's chosen configuration R more times with new seeds (plain PyTorch, "
                         "same split; not timed) and show their mean: what each method found, without the "
                         "lift its best trial got from validation noise")
    ap.add_argument("--anchor-from", metavar="JSON", help="take the Optuna anchor's runs from a saved --json "
                    "file of the same task, seeds, trials and epochs instead of running it again (to compare "
                    "shoal settings against one anchor; its wall times are from that run)")
    ap.add_argument("--summarize", metavar="JSON", help="only print the tables of a saved --json file "
                    "(also one an interrupted run left: the seeds that finished)")
    a = ap.parse_args(argv)
    if a.summarize:
        return summarize_saved(json.loads(Path(a.summarize).read_text()), a.curve)
    if a.quick:
        a.seeds, a.trials, a.epochs = 2, 30, 8
    tasks = ["mnist", "digits"] if a.task == "both" else [a.task]
    strategies = parse_strategies(a.strategies)
    print(f"{a.seeds} seeds, {a.trials} trials, up to {a.epochs} epochs; load: {os.getloadavg()[0]:.2f}")
    ray_ok = not a.no_ray
    if ray_ok:
        probe = subprocess.run([sys.executable, "-c", "import ray.tune"], capture_output=True, text=True)
        if probe.returncode:
            print("Ray Tune left out: `import ray.tune` failed: " + (probe.stderr.strip().splitlines() or ["?"])[-1])
            ray_ok = False
    report, skipped = {"args": vars(a)}, set()
    if a.anchor_from and a.first_seed:
        sys.exit("--anchor-from reuses the anchor's seeds 0 .. seeds - 1: leave out --first-seed")
    saved_anchor = _saved_anchor(a) if a.anchor_from else {}
    for task in tasks:
        runs: dict[str, list[Run]] = {"optuna": []}
        if ray_ok:
            runs["ray-asha"] = []
        with tempfile.TemporaryDirectory(prefix="ttt-") as tmp:
            for seed in range(a.first_seed, a.first_seed + a.seeds):
                if task in saved_anchor:
                    r = saved_anchor[task][seed]
                else:
                    r = run_optuna(task, seed, a.trials, a.epochs, Path(tmp))
                runs["optuna"].append(r)
                print(f"  {task} seed {seed} optuna: {r.wall:.1f} s, {len(r.complete)} complete"
                      + (" (saved)" if task in saved_anchor else ""), flush=True)
                save_partial(a.json, report, task, runs)
                if ray_ok:
                    try:
                        r = run_ray(task, seed, a.trials, a.epochs, Path(tmp))
                        runs["ray-asha"].append(r)
                        print(f"  {task} seed {seed} ray-asha: {r.wall:.1f} s, {len(r.complete)} complete", flush=True)
                    except RuntimeError as exc:
                        print(f"Ray Tune left out: {str(exc).splitlines()[-1]}")
                        ray_ok = False
                        runs.pop("ray-asha")
                for strategy, pruner, population in strategies:
                    name = f"shoal {strategy}+{pruner}" + (f"@{population}" if population else "")
                    if name in skipped:
                        continue
                    r = run_shoal(task, seed, a.shoal_trials or a.trials, a.epochs, Path(tmp), strategy, pruner,
                                  population, a.shoal_timeout)
                    if isinstance(r, str):
                        print(f"  {name} skipped: {r}")
                        skipped.add(name)
                        continue
                    runs.setdefault(name, []).append(r)
                    print(f"  {task} seed {seed} {name}: {r.wall:.1f} s, {len(r.complete)} complete", flush=True)
                    save_partial(a.json, report, task, runs)
                if a.retrain:  # after the timed runs: it is evaluation, not part of any method
                    this_seed = {m: rs[-1] for m, rs in runs.items() if len(rs) == seed - a.first_seed + 1}
                    retrain(task, seed, [r for r in this_seed.values() if not r.retrained], a.retrain, a.epochs)
                    print(f"  {task} seed {seed} retrained: " + ", ".join(
                        f"{m} {statistics.fmean(r.retrained):.4f}" for m, r in this_seed.items() if r.retrained),
                          flush=True)
                    save_partial(a.json, report, task, runs)
        other = "epoch" if a.curve == "complete" else "complete"
        print(f"\n--curve {other} (for comparison):", end="")
        report[task + f" ({other})"] = summarize(task, runs, other)
        print(f"\n--curve {a.curve}:", end="")
        report[task] = summarize(task, runs, a.curve)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1, default=str))
    print_speedup(report)


def print_speedup(report: dict) -> None:
    if "mnist" in report:
        rows = report["mnist"]["methods"]
        shoal = [r["time_to_target"] for m, r in rows.items() if m.startswith("shoal") and not r["note"]]
        best, anchor = min(shoal, default=math.inf), rows["optuna"]["time_to_target"]
        speedup = anchor / best if math.isfinite(best) and math.isfinite(anchor) else 0.0
        print(f"time-to-target speedup vs optuna: {speedup:.2f}x")


def _runs_of(value: dict) -> dict[str, list[Run]]:
    raw = value["runs"] if "runs" in value else value
    return {m: [Run(**{**r, "complete": [tuple(e) for e in r["complete"]], "epoch": [tuple(e) for e in r["epoch"]]})
                for r in rs] for m, rs in raw.items()}


def _saved_anchor(a) -> dict[str, list[Run]]:
    """The Optuna anchor's runs per task from ``--anchor-from``, checked against this run's settings."""
    saved = json.loads(Path(a.anchor_from).read_text())
    args = saved.get("args", {})
    for key in ("trials", "epochs"):
        if args.get(key) != getattr(a, key):
            sys.exit(f"--anchor-from {a.anchor_from}: it ran {key}={args.get(key)}, this run asks {getattr(a, key)}")
    out = {}
    for key, value in saved.items():
        task, _, kind = key.partition(" ")
        if task in TASKS and kind in ("", "(partial)") and task not in out:
            out[task] = _runs_of(value).get("optuna", [])
    for task, runs in out.items():
        if len(runs) < a.seeds:
            sys.exit(f"--anchor-from {a.anchor_from}: {len(runs)} anchor seed(s) of {task} saved, {a.seeds} asked")
    return out


def summarize_saved(saved: dict, curve: str) -> None:
    """The tables of a saved run: each task's finished runs (an interrupted run's partial ones)."""
    report = {}
    for key, value in saved.items():
        task, _, kind = key.partition(" ")
        if task not in TASKS or kind not in ("", "(partial)") or task in report:
            continue
        runs = {m: rs for m, rs in _runs_of(value).items() if rs}
        seeds = min(len(rs) for rs in runs.values())  # compare the seeds every method finished
        runs = {m: rs[:seeds] for m, rs in runs.items()}
        print(f"\n{task}: {seeds} seed(s) finished by every method ({', '.join(runs)})", end="")
        report[task] = summarize(task, runs, curve)
    print_speedup(report)


def _worker_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["optuna", "ray", "shoal"])
    for name in ("--task", "--storage", "--out", "--strategy", "--pruner"):
        ap.add_argument(name)
    for name in ("--seed", "--trials", "--epochs", "--worker", "--population"):
        ap.add_argument(name, type=int, default=0)
    ap.add_argument("--timeout", type=float, default=0.0)
    a = ap.parse_args(argv)
    {"optuna": worker_optuna, "ray": worker_ray, "shoal": worker_shoal}[a.kind](a)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _worker_main(sys.argv[2:])
    else:
        main()

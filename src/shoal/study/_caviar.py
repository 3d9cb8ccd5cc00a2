"""Caviar mode inside a study: trials train as members of populations, slots refilled at once.

Populations are keyed by what cannot mix in one batched computation (batch size, model family).
Each round, every live population trains one epoch; each member's record goes to its own Optuna
trial; a member that is pruned, finishes or diverges leaves, and its slot is refilled from the
strategy before the next round. With k-fold, a trial is k members (one per fold) and reports the
mean over its folds.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from shoal._errors import ConfigError

if TYPE_CHECKING:
    from shoal.study._builtin import PreparedData
    from shoal.study._experiment import Experiment
    from shoal.study._runner import Job, StudyRunner

__all__ = ["default_population_size", "run_caviar"]

log = logging.getLogger("shoal")

MODEL_BASED = ("tpe", "gp", "cmaes")


MAX_DEFAULT_POPULATION = 128
UNBOUNDED_POPULATION = 32  # model-based, searching until the timeout: the population of a 96-trial budget


def default_population_size(exp: Experiment) -> int:
    """How many trials train at once when the user gives no ``population``.

    Model-based strategies learn from finished trials, so they get at least three waves of
    feedback (TPE's first 10 trials are random anyway), and no more than the others at once: a
    budget meant never to be reached would otherwise ask thousands of trials before the first
    finished. Without a budget (a search until ``timeout``) they train 32 at once, so that trials
    finish early in the search. The others fill the device.
    """
    if exp.population:
        return int(exp.population)
    if exp.strategy in MODEL_BASED:
        if exp.trials is None:
            return UNBOUNDED_POPULATION
        return max(8, min(MAX_DEFAULT_POPULATION, math.ceil(exp.trials / 3)))
    return MAX_DEFAULT_POPULATION


@dataclass
class _Running:
    job: Job
    cfg: dict[str, Any]
    folds: int
    histories: list[list] = field(default_factory=list)  # per fold: list of EpochRecord
    best: float = math.inf
    since_best: int = 0
    bracket: int = 0  # successive halving / Hyperband: the trial's bracket and its rung decisions
    rungs: list[dict] = field(default_factory=list)
    static: dict = field(default_factory=dict)  # measures the configuration alone decides (params, ...)

    def __post_init__(self) -> None:
        self.histories = [[] for _ in range(self.folds)]


def _attrs(state: _Running, device: str) -> dict[str, Any]:
    from shoal.study._builtin import trial_attrs

    attrs = trial_attrs(state.histories, device, "population")
    if state.rungs:
        attrs["rungs"] = state.rungs
    return attrs


MEMBERS_PER_WORKER = 4  # below this, a worker's population is too small to be worth a process


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers(exp: Experiment, device: str, size: int) -> int:
    """Worker processes for populations: ``workers`` when given (or ``$SHOAL_WORKERS``), else on a
    CPU one process of one thread per core, as long as each gets ``MEMBERS_PER_WORKER`` trials of
    the ``size`` that train at once; one process (this one, torch's threads) on a GPU.

    Measured on the 2-core CPU (benchmarks/README.md), with the optimizer step's C kernel (a worker
    starts in 2-3 s: its imports): two one-thread processes against this process on two threads,
    30 TPE trials of the quickstart 28.5 / 29.1 s against 33.5 / 29.5 s; 48 random trials 38.1 s
    against 40.4 s; 24 MNIST-10k configurations 0.57 against 0.34 configs/s; and on a machine busy
    with other work the two threads of one process wait for each other at every parallel region,
    which processes do not. (Before the C kernel each worker also compiled the optimizer step for
    4-12 s, and one process was the better default.)
    """
    if exp.workers:
        return int(exp.workers)
    env = os.environ.get("SHOAL_WORKERS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ConfigError(f"SHOAL_WORKERS must be a whole number of at least 1; got {env!r}.")
        return int(env)
    if device != "cpu" or exp.executor == "local":
        return 1
    return max(1, min(usable_cores(), min(size, exp.trials or size) // MEMBERS_PER_WORKER))


def builtin_pool(exp: Experiment, data: PreparedData, size: int) -> Any:
    """Where a built-in study's populations train: this process, worker processes (``default_workers``
    for ``size`` trials at once) or a Ray cluster, which decides the device ("auto": its GPUs if
    any) and, unless asked, the number of workers."""
    from shoal.engine._pool import make_pool

    if exp.executor in ("ray", "processes"):
        workers = exp.workers
    else:
        workers = default_workers(exp, data.device, size)
    return make_pool(exp.preset, data.folds, exp.device if exp.executor == "ray" else data.device, workers,
                     executor=exp.executor, address=exp.address)


def run_caviar(runner: StudyRunner, exp: Experiment, data: PreparedData, pool: Any = None) -> None:
    """Train a study's trials as populations until the budget is spent.

    ``pool`` is where members train: by default the built-in engine's (``make_pool``); a user's
    module trains in a ``ModulePool`` (``shoal.tune(model=...)``)."""
    from shoal.engine import normalize
    from shoal.engine._config import divergence_reason, diverged
    from shoal.engine._pool import LocalPool

    from collections import deque

    from shoal.engine._packer import PeakMemory, default_budget, member_bytes
    from shoal.study._builtin import static_of
    from shoal.study._objectives import epoch_measures

    size = default_population_size(exp)
    budget = int(exp.memory_mb * 2**20) if exp.memory_mb else default_budget(data.device)
    builtin = pool is None
    if pool is None:
        pool = builtin_pool(exp, data, size)
    workers = getattr(pool, "workers", 1)  # worker processes or Ray actors; 1: this process
    log.info("caviar mode: up to %d trials at once, %d worker process(es), memory budget %.0f MiB",
             size, workers, budget / 2**20)
    halving = None  # successive halving / Hyperband decided per cohort (see _halving)
    if exp.pruner in ("sha", "hyperband"):
        from shoal.study._halving import Halving

        halving = Halving(exp.epochs, maximize=exp.direction == "maximize", hyperband=exp.pruner == "hyperband")
        halving.restore(runner.study.get_trials(deepcopy=False))
        # Halving decides here, never Optuna's pruner. Left on the study, Optuna's HyperbandPruner
        # hands the sampler a new bracket wrapper at every suggest, each with an empty trial cache:
        # every parameter re-read all ~30 training trials from the storage (digits, 100 trials:
        # 783 reads instead of ~200; the sampled values are the same either way).
        import optuna

        runner.study.pruner = optuna.pruners.NopPruner()
    cohort: list[tuple[int, int, int, float]] = []  # (trial, bracket, epoch, value) at a rung this round
    running: dict[int, _Running] = {}
    statics: dict[int, dict] = {}  # asked trials' static measures, until they join a population
    waiting: deque = deque()  # asked, but their memory would exceed the budget: they go next
    used = {"bytes": 0}
    peak = {"members": 0, "estimate": 0, "observed": 0}  # recorded in the study at the end
    fold0 = data.folds[0]

    def cost(cfg: dict) -> int:
        return len(data.folds) * member_bytes(cfg, exp.preset, fold0.input_shape, fold0.n_outputs)

    def leave(number: int) -> None:
        state = running.pop(number)
        used["bytes"] -= cost(state.cfg)
        for k in range(state.folds):
            pool.remove((number, k))

    def fill() -> None:
        while len(running) < size:
            if waiting:
                job, cfg = waiting[0]
            else:
                job = runner.ask()
                if job is None:
                    return
                try:
                    cfg = normalize(job.config)
                except ConfigError as exc:
                    runner.fail(job, str(exc))
                    continue
                # measures the configuration decides: the built-in model's, or what the pool says
                static = pool.static_measures(cfg) if hasattr(pool, "static_measures") else \
                    static_of(exp, cfg, data) if builtin else {}
                if not runner.admit(job, static):
                    continue  # over a limit the configuration alone decides: recorded, not trained
                statics[job.number] = static
                waiting.append((job, cfg))
            # The memory budget decides K: a member that would overflow it waits for a free slot
            # (alone, it trains whatever its size: the budget never starves the study).
            if running and used["bytes"] + cost(cfg) > budget:
                return
            waiting.popleft()
            used["bytes"] += cost(cfg)
            peak["members"] = max(peak["members"], len(running) + 1)
            running[job.number] = _Running(job, cfg, len(data.folds), static=statics.pop(job.number, {}))
            if halving is not None:
                running[job.number].bracket = halving.bracket(job.number)
                job.trial.set_user_attr("bracket", running[job.number].bracket)
            for k in range(len(data.folds)):
                pool.add((job.number, k), cfg, job.seed + k, k, exp.epochs)

    def handle(number: int) -> None:
        """All folds of trial ``number`` have a new epoch: report, then continue, stop or fail."""
        state = running[number]
        epoch = min(len(h) for h in state.histories)
        last = [h[epoch - 1] for h in state.histories]
        job = state.job
        if any(diverged(r.train_loss, r.val_loss) for r in last):
            r = next(r for r in last if diverged(r.train_loss, r.val_loss))
            attrs = _attrs(state, data.device)
            leave(number)
            runner.fail(job, divergence_reason(epoch, r.train_loss, r.val_loss, r.lr), attrs)
            return
        measures = {**state.static, **epoch_measures([h[:epoch] for h in state.histories])}
        value = measures.get(exp.objectives[0], math.nan)
        if runner.report(job, epoch, measures, ask_pruner=halving is None):
            attrs = _attrs(state, data.device)
            leave(number)
            runner.prune(job, attrs)
            return
        val_loss = float(np.mean([r.val_loss for r in last]))
        if val_loss < state.best - 1e-12:
            state.best, state.since_best = val_loss, 0
        else:
            state.since_best += 1
        done = epoch >= exp.epochs or (exp.patience is not None and state.since_best >= exp.patience)
        if done:
            attrs = _attrs(state, data.device)
            leave(number)
            runner.complete(job, measures, attrs)
        elif halving is not None and epoch in halving.rungs(state.bracket) and math.isfinite(value):
            cohort.append((number, state.bracket, epoch, value))

    def decide_rungs() -> None:
        """Members that reached a rung this round are ranked together; those below the cutoff stop."""
        for d in halving.decide(cohort):
            state = running.get(d.number)
            if state is None:
                continue
            state.rungs.append(d.record())
            if not d.keep:
                attrs = _attrs(state, data.device)
                leave(d.number)
                runner.prune(state.job, attrs)
        cohort.clear()

    try:
        fill()
        while running:
            with PeakMemory(data.device) as observed:
                records, failed = pool.run_epoch()
            # the peak in this process, or the sum of the workers' peaks (each measured in its process)
            seen = observed.bytes if isinstance(pool, LocalPool) else getattr(pool, "last_peak_bytes", None)
            if seen is not None and used["bytes"] > peak["estimate"]:
                peak["estimate"], peak["observed"] = used["bytes"], seen
            for (number, _), reason in failed.items():
                if number in running:
                    state = running[number]
                    attrs = _attrs(state, data.device)
                    leave(number)
                    runner.fail(state.job, reason.split("\n")[0], {"traceback": reason[-4000:]})
            ready = set()
            for (number, k), record in records.items():
                if number in running:
                    running[number].histories[k].append(record)
                    ready.add(number)
            for number in sorted(ready):
                state = running.get(number)
                if state is not None and len({len(h) for h in state.histories}) == 1:
                    handle(number)
            if cohort:
                decide_rungs()
            runner.check_stop()  # a Ctrl-C stops here, with every member's epoch recorded
            if runner.past_deadline():  # the timeout: members in training stop with this epoch
                for number, state in list(running.items()):
                    attrs = _attrs(state, data.device)
                    leave(number)
                    runner.stop_at_deadline(state.job, attrs)
                while waiting:  # asked, never trained: queued again for a later run
                    runner.interrupt(waiting.popleft()[0])
                break
            fill()
    except KeyboardInterrupt:
        for state in list(running.values()):
            runner.interrupt(state.job)
        for job, _ in waiting:  # asked, not yet training: they run again next time too
            runner.interrupt(job)
        raise
    finally:
        pool.close()
        if peak["members"]:  # a resumed study with nothing left to run keeps the earlier record
            runner.study.set_user_attr("population", {
                "max_members": peak["members"], "budget_bytes": budget, "workers": workers,
                "estimated_bytes": peak["estimate"], "observed_peak_bytes": peak["observed"]})
        log.info("caviar mode: at most %d trials at once; estimated %.1f MiB, observed peak %.1f MiB",
                 peak["members"], peak["estimate"] / 2**20, peak["observed"] / 2**20)

"""``shoal.tune(model=...)``: a study over the user's own ``nn.Module``.

The model is an ``nn.Module`` class (its constructor receives the searched values it names, and
the data's shape for ``n_inputs`` / ``n_outputs`` / ``input_shape``) or a builder
``build(config) -> nn.Module``. shoal owns the training loop: the study's data split, shuffled
batches, cross entropy for classification or mean squared error for regression, the optimizer
keys of the space (``optimizer``, ``lr``, ``momentum``, ``beta1``, ``beta2``, ``eps``,
``weight_decay``, ``l1``, ``batch_size``, ``lr_decay``...), validation loss and accuracy after
each epoch. Trials train as members of ``FunctionalPopulation``s (``torch.func.vmap`` over the
stacked members), refilled from the strategy as trials finish; pruners see each epoch; PBT copies
members' weights and optimizer state. Each trial records what the built-in engines record (curves,
seed, epochs run), plus ``engine`` ("functional" or "sequential") and, for the latter,
``engine_reason``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from shoal._errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from shoal.space import Space
    from shoal.study._builtin import PreparedData
    from shoal.study._experiment import Experiment
    from shoal.study._runner import Job, StudyRunner
    from shoal.study._tune import TuneResult

__all__ = ["run_model", "tune_model"]

log = logging.getLogger("shoal")


def model_name(model: Any) -> str:
    return getattr(model, "__name__", None) or type(model).__name__


def tune_model(model: Any, exp: Experiment, space: Space | None, direction: str | None, progress: bool,
               console: Console | None) -> TuneResult:
    """Run a study of ``model`` with the experiment's data, strategy, pruner and budget."""
    from shoal.space import Space
    from shoal.study._builtin import prepare_data
    from shoal.study._tune import _run

    if not isinstance(space, Space):
        raise ConfigError("shoal.tune(model=...) needs its search space: pass space=shoal.Space([...]) with the "
                          "training keys (lr, weight_decay, optimizer, batch_size...) and the model's own "
                          f"arguments. Got {space!r} instead.")
    if direction is not None and direction != exp.direction:
        raise ConfigError(f"The metric {exp.metric!r} is always {exp.direction}d; drop direction={direction!r} "
                          "or pick the other metric.")
    from torch import nn

    if isinstance(model, nn.Module) or not callable(model):
        what = f"an instance of {type(model).__name__}" if isinstance(model, nn.Module) else repr(model)
        raise ConfigError("The 'model' must be an nn.Module class or a builder build(config) -> nn.Module, so that "
                          f"each trial gets its own weights. Got {what} instead.")
    space = space.copy().update(exp.params)
    if exp.study is None:
        exp.study = f"{exp.study_name.rsplit('-', 1)[0]}-{model_name(model)}"
    data = prepare_data(exp)
    from shoal.engine._functional import ModulePool

    # engine="single" asks for plain one-at-a-time training (the same update, no vmap)
    pool = ModulePool(model, data.folds, vmap=exp.engine != "single")
    if exp.strategy == "pbt":
        def body(runner):
            from shoal.study._pbt import run_pbt

            try:
                run_pbt(runner, exp, data, pool=pool, maximize=exp.direction == "maximize", metric=exp.metric)
            finally:
                _record(runner, pool)
    else:
        def body(runner):
            run_model(runner, exp, data, pool)
    return _run(exp, space, exp.direction, exp.metric, body, progress, console,
                attrs={"data_description": data.description, "device": data.device, "engine": "functional",
                       "model": model_name(model)})


@dataclass
class _Running:
    job: Job
    folds: int
    histories: list[list] = field(default_factory=list)  # per fold: EpochRecords
    best: float = math.inf
    since_best: int = 0

    def __post_init__(self) -> None:
        self.histories = [[] for _ in range(self.folds)]


def _record(runner: StudyRunner, pool: Any) -> None:
    runner.study.set_user_attr("usermodel", {"largest_population": pool.largest, "notes": pool.notes,
                                             "shapes": len(pool.shapes)})


def run_model(runner: StudyRunner, exp: Experiment, data: PreparedData, pool: Any) -> None:
    """Train the study's trials as populations of the user's module until the budget is spent.

    Each round every population trains one epoch; each trial reports its metric (the mean over
    folds with k-fold) to the pruner; a trial that is pruned, finishes, stops early (patience) or
    diverges leaves, and its slot is refilled from the strategy at once.
    """
    from shoal.engine._config import diverged
    from shoal.study._builtin import trial_attrs
    from shoal.study._caviar import default_population_size

    size = default_population_size(exp)
    nfolds = len(data.folds)
    running: dict[int, _Running] = {}
    modes: dict[int, tuple[str, str | None]] = {}

    def attrs_of(state: _Running) -> dict[str, Any]:
        mode, reason = modes.get(state.job.number, ("functional", None))
        attrs = trial_attrs(state.histories, data.device, "functional" if mode == "vmap" else mode)
        if reason:
            attrs["engine_reason"] = reason
        return attrs

    def leave(number: int) -> _Running:
        state = running.pop(number)
        for k in range(nfolds):
            if (number, k) in pool.where:
                modes.setdefault(number, pool.mode_of((number, k)))
            pool.remove((number, k))
        return state

    def fill() -> None:
        while len(running) < size and (job := runner.ask()) is not None:
            running[job.number] = _Running(job, nfolds)
            for k in range(nfolds):
                pool.add((job.number, k), job.config, job.seed + k, k, exp.epochs)
                if (job.number, k) in pool.where:
                    modes[job.number] = pool.mode_of((job.number, k))

    def handle(number: int) -> None:
        state = running[number]
        epoch = min(len(h) for h in state.histories)
        last = [h[epoch - 1] for h in state.histories]
        job = state.job
        bad = next((r for r in last if diverged(r.train_loss, r.val_loss)), None)
        if bad is not None:
            runner.fail(job, f"training diverged at epoch {epoch}: train loss {bad.train_loss}, validation loss "
                             f"{bad.val_loss} (learning rate {bad.lr:.3g}); try a smaller learning rate",
                        attrs_of(leave(number)))
            return
        value = float(np.mean([getattr(r, exp.metric) for r in last]))
        if runner.report(job, epoch, value):
            runner.prune(job, attrs_of(leave(number)))
            return
        val_loss = float(np.mean([r.val_loss for r in last]))
        if val_loss < state.best - 1e-12:
            state.best, state.since_best = val_loss, 0
        else:
            state.since_best += 1
        if epoch >= exp.epochs or (exp.patience is not None and state.since_best >= exp.patience):
            runner.complete(job, value, attrs_of(leave(number)))

    try:
        fill()
        while running:
            records, failed = pool.run_epoch()
            for (number, _), reason in failed.items():
                if number in running:
                    state = leave(number)
                    runner.fail(state.job, reason.split("\n")[0], {**attrs_of(state), "traceback": reason[-4000:]})
            ready = set()
            for (number, k), record in records.items():
                if number in running:
                    running[number].histories[k].append(record)
                    ready.add(number)
            for number in sorted(ready):
                state = running.get(number)
                if state is not None and len({len(h) for h in state.histories}) == 1:
                    handle(number)
            runner.check_stop()  # a Ctrl-C stops here, with every member's epoch recorded
            fill()
    except KeyboardInterrupt:
        for state in list(running.values()):
            runner.interrupt(state.job)
        raise
    finally:
        pool.close()
        _record(runner, pool)

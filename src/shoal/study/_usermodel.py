"""``shoal.tune(model=...)``: a study over the user's own ``nn.Module``.

The model is an ``nn.Module`` class (its constructor receives the searched values it names, and
the data's shape for ``n_inputs`` / ``n_outputs`` / ``input_shape``) or a builder
``build(config) -> nn.Module``. shoal owns the training loop: the study's data split, shuffled
batches, cross entropy for classification or mean squared error for regression, the optimizer
keys of the space (``optimizer``, ``lr``, ``momentum``, ``beta1``, ``beta2``, ``eps``,
``weight_decay``, ``l1``, ``batch_size``, ``lr_decay``...), validation loss and accuracy after
each epoch. Trials train as members of ``FunctionalPopulation``s (``torch.func.vmap`` over the
stacked members) in caviar mode's round loop (``run_caviar`` with a ``ModulePool``): slots refilled
from the strategy as trials finish, pruners see each epoch, successive halving and Hyperband rank
cohorts; PBT copies members' weights and optimizer state. With ``workers=N`` the members train
in N worker processes. Each trial records what the built-in engines record (curves,
seed, epochs run), plus ``engine`` ("functional" or "sequential") and, for the latter,
``engine_reason``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shoal._errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from shoal.space import Space
    from shoal.study._builtin import PreparedData
    from shoal.study._experiment import Experiment
    from shoal.study._runner import Job, StudyRunner
    from shoal.study._tune import TuneResult

__all__ = ["tune_model"]

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
    if isinstance(model, type):  # a class whose arguments the space lacks fails every trial: say so now
        from shoal.engine._functional import DATA_ARGS, check_class_args, check_read

        check_class_args(model, [*space.names(), *DATA_ARGS])
        check_read(model, space.names(), {key for p in space for key in p.when})
    if exp.study is None:
        exp.study = f"{exp.study_name.rsplit('-', 1)[0]}-{model_name(model)}"
    data = prepare_data(exp)
    pool, mode_of, workers = _pool(model, exp, data, space.names())
    if exp.strategy == "pbt":
        from shoal.study._pbt import run_pbt as run

        def body(runner):
            run(runner, exp, data, pool=pool, maximize=exp.direction == "maximize", metric=exp.metric)
    else:
        from shoal.study._caviar import run_caviar

        def body(runner):
            run_caviar(_Labelled(runner, mode_of), exp, data, pool=pool)

    def recorded(runner):
        try:
            body(runner)
        finally:
            _record(runner, pool, workers)

    return _run(exp, space, exp.directions, exp.metric, recorded, progress, console,
                attrs={"data_description": data.description, "device": data.device, "engine": "functional",
                       "model": model_name(model)})


def _pool(model: Any, exp: Experiment, data: PreparedData, keys: list[str]) -> tuple[Any, Any, int]:
    """Where the members train, how to tell a member's engine, and how many worker processes.

    In this process by default (a ``ModulePool``). With ``workers=N`` (N > 1), in N worker
    processes on the CPU (the engine's ``ProcessPool``): members that batch together share a
    worker, members of a module ``vmap`` cannot trace spread over them. A model the workers cannot import (a
    class or function defined inside another function) trains in this process, and says why.
    """
    import functools
    import pickle

    from shoal.engine._functional import ModulePlacer, ModulePool
    from shoal.engine._pool import ProcessPool, WorkerStartError

    vmap = exp.engine != "single"  # engine="single": plain one-at-a-time training (the same update)
    workers = int(exp.workers or 1)
    if workers > 1:
        try:
            pickle.dumps(model)
        except Exception as exc:
            log.warning("model: training in this process, not in %d worker processes: they import the model "
                        "by name, and %s cannot be (%s: %s); define it at the top level of a module", workers,
                        model_name(model), type(exc).__name__, str(exc).split("\n")[0][:200])
            workers = 1
    if workers <= 1:
        pool = ModulePool(model, data.folds, vmap=vmap, keys=keys)
        return pool, pool.mode_of, 1
    placer = ModulePlacer(model, data.folds, vmap=vmap, keys=keys)
    try:
        pool = ProcessPool("model", data.folds, "cpu", workers, place=placer,
                           factory=functools.partial(ModulePool, model, vmap=vmap, keys=keys))
    except WorkerStartError as exc:
        log.warning("model: training in this process, not in %d worker processes: %s", workers, exc)
        pool = ModulePool(model, data.folds, vmap=vmap, keys=keys)
        return pool, pool.mode_of, 1
    pool.placer = placer
    pool.static_measures = placer.pool.static_measures  # parameters, for objectives and limits
    return pool, placer.mode_of, workers


class _Labelled:
    """The study runner as ``run_caviar`` sees it, with each finished trial's engine named as this
    pool trained it: "functional" (vmapped), or "sequential" with ``engine_reason``."""

    def __init__(self, runner: StudyRunner, mode_of: Any) -> None:
        self._runner, self._mode_of = runner, mode_of

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)

    def _label(self, job: Job, args: tuple, kwargs: dict) -> None:
        mode, reason = self._mode_of((job.number, 0))
        engine = "functional" if mode == "vmap" else mode
        job.trial.set_user_attr("engine", engine)
        if reason:
            job.trial.set_user_attr("engine_reason", reason)
        for attrs in [*args, *kwargs.values()]:  # the attributes run_caviar records name its engine
            if isinstance(attrs, dict) and "engine" in attrs:
                attrs["engine"] = engine

    def complete(self, job: Job, *args: Any, **kwargs: Any) -> Any:
        self._label(job, args, kwargs)
        return self._runner.complete(job, *args, **kwargs)

    def prune(self, job: Job, *args: Any, **kwargs: Any) -> Any:
        self._label(job, args, kwargs)
        return self._runner.prune(job, *args, **kwargs)

    def fail(self, job: Job, *args: Any, **kwargs: Any) -> Any:
        self._label(job, args, kwargs)
        return self._runner.fail(job, *args, **kwargs)


def _record(runner: StudyRunner, pool: Any, workers: int) -> None:
    info = getattr(pool, "placer", None)
    info = info.pool if info is not None else pool
    runner.study.set_user_attr("usermodel", {"largest_population": info.largest, "notes": info.notes,
                                             "shapes": len(info.shapes), "workers": workers})

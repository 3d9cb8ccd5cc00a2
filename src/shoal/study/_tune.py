"""``shoal.tune``: one call from settings to a finished (or resumed) study."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from shoal._errors import ConfigError, ShoalError, StorageError
from shoal.study._experiment import Experiment, load_experiment, make_experiment, resolve_storage, storage_file

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

    from shoal.space import Space

__all__ = ["TuneResult", "check", "open_study", "retune", "tune"]


@dataclass
class TuneResult:
    """What ``tune`` returns.

    Attributes:
        best_params: the best trial's full configuration (sampled and fixed values).
        best_value: its metric value (the first objective's, with several).
        best_trial: the Optuna FrozenTrial (with limits: the best trial within them; with several
            objectives: the Pareto-optimal trial best at the first objective).
        study: the Optuna study (for Optuna's own tools).
        experiment: the settings used (None for a user objective).
    """

    best_params: dict[str, Any] | None
    best_value: float | None
    best_trial: Any
    study: optuna.Study
    experiment: Experiment | None = None

    @property
    def pareto(self) -> list:
        """The feasible Pareto front (several objectives), best first by the first objective; with
        one objective, the best trial alone."""
        from shoal.study._objectives import pareto_front

        return pareto_front(self.study)


def open_study(storage: Any, name: str, direction: str | list[str], sampler=None, pruner=None) -> optuna.Study:
    """Create or load a study; refuse one created with other directions (another metric)."""
    import optuna

    # shoal reports failures, storage faults and progress itself; Optuna's own warnings (a failed
    # trial's parameters, "falling back to a slower alternative" when a database is locked) would
    # only break its one-paragraph messages and the progress bar.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    directions = [direction] if isinstance(direction, str) else list(direction)
    study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    have = [d.name.lower() for d in study.directions]
    if have != directions:
        raise ConfigError(
            f"The study {name!r} in this storage was created to {' and '.join(have)} its value(s), "
            f"but this run asks to {' and '.join(directions)}. Use another --study name, or the original metric."
        )
    return study


def resumed_seed(seed: int, existing: int) -> int:
    """The sampler seed of a run that finds ``existing`` trials in its study: reproducible, and a
    different random stream for each resume point (a fresh study keeps the study seed)."""
    import numpy as np

    if not existing:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(existing)]).generate_state(1)[0] & 0x7FFFFFFF)


def _best(study: optuna.Study) -> tuple[dict | None, float | None, Any]:
    """The best complete trial within every limit: by the value, or with several objectives by
    the first one among the Pareto front (``TuneResult.pareto`` holds the whole front)."""
    from optuna.trial import TrialState

    from shoal.study._objectives import pareto_front

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None, None, None
    front = pareto_front(study)
    if not front:
        return None, None, None
    best = front[0]
    return dict(best.user_attrs.get("config", best.params)), best.values[0], best


def _experiment_from(experiment: str | Experiment | None, settings: Mapping[str, Any]) -> Experiment:
    """The experiment a call describes: a TOML path or ``Experiment``, with ``settings`` winning."""
    if isinstance(experiment, Experiment):
        return make_experiment({**experiment.to_dict(), **settings})
    if experiment is not None:
        return load_experiment(experiment, **settings)
    return make_experiment(dict(settings))


def tune(
    objective: Callable[..., Any] | None = None,
    *,
    space: Space | None = None,
    experiment: str | Experiment | None = None,
    direction: str | None = None,
    progress: bool = True,
    console: Console | None = None,
    model: Any = None,
    **settings: Any,
) -> TuneResult:
    """Tune a built-in preset on a data set, a user's own model, or a user's own objective.

    Args:
        objective: a user function ``fn(config)`` or ``fn(config, trial)`` returning the value to
            optimize (a float, or a dict holding ``metric``); None trains a built-in preset.
        space: the search space (required with ``objective``; optional override of the preset's).
        experiment: an experiment TOML path or ``Experiment`` to start from.
        direction: "minimize" or "maximize" for a user objective (default minimize).
        progress: show a live progress bar.
        model: the user's ``nn.Module`` class or builder ``build(config) -> nn.Module``, trained by
            shoal on ``data`` as batched populations where ``torch.func`` allows (see ``_usermodel``).
        **settings: any ``Experiment`` field: data, preset, strategy, trials, epochs, metric,
            storage, study, seed, pruner, val_fraction, folds, params, timeout, ... With
            ``timeout`` and no ``trials``, trials start until the timeout.

    Returns:
        TuneResult with the best configuration, its value and the Optuna study.

    Example:
        >>> result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=5,
        ...                     epochs=3, storage="runs.db")  # doctest: +SKIP
        >>> result.best_params["lr"]  # doctest: +SKIP
    """
    _refuse_while_a_worker_starts()
    named = settings.get("metric") if objective is not None else None  # the objective's own names
    exp = _experiment_from(experiment, {k: v for k, v in settings.items() if named is None or k != "metric"})
    if objective is not None and model is not None:
        raise ConfigError("Pass either objective= (your own training code) or model= (shoal trains your "
                          "nn.Module), not both.")
    if objective is not None:
        return _tune_objective(objective, space, exp, direction, progress, console, named)
    if model is not None:
        from shoal.study._usermodel import tune_model

        return tune_model(model, exp, space, direction, progress, console)
    if direction is not None and direction != exp.direction:
        raise ConfigError(
            f"The metric {exp.metric!r} is always {exp.direction}d; drop direction={direction!r} "
            "or pick the other metric."
        )
    tuned_space, data, engine, body = _plan(exp, space)
    return _run(exp, tuned_space, exp.directions, exp.metric, lambda runner: body(runner, exp, data),
                progress, console, attrs={"data_description": data.description, "device": data.device, "engine": engine})


def _refuse_while_a_worker_starts() -> None:
    """A worker process that Python's ``spawn`` starts runs the parent's main script first; a script
    that calls ``shoal.tune`` at its top level, with no ``if __name__ == "__main__":`` guard, would
    run a second study from inside that worker, into the same storage. Stop it there, before
    anything is touched (the parent then reports the worker's failure to start)."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):  # multiprocessing's own test
        # One paragraph and exit code 1, not an exception: the worker would print a 20-line traceback
        # through multiprocessing's own frames, once per worker, before the parent explains.
        print("shoal: shoal.tune was called while a worker process was starting: the script that calls it has "
              "no `if __name__ == \"__main__\":` guard, and Python's spawn runs that script again in each "
              "worker. Put the call (and anything that should run once) under the guard.", file=sys.stderr)
        raise SystemExit(1)


def _plan(exp: Experiment, space: Space | None = None) -> tuple[Space, Any, str, Callable]:
    """Everything that can fail on user input, run before the storage is touched: the space, the
    data (loaded, split, scaled, on its device), the engine and the loop that trains."""
    from shoal.study._builtin import prepare_data, run_builtin
    from shoal.study._caviar import run_caviar

    tuned_space = space.copy().update(exp.params) if space is not None else exp.space()
    if space is None:  # a built-in preset reads its own keys only: a parameter added to it would do nothing
        from shoal.space import preset

        known = preset(exp.preset).names()
        unused = [n for n in tuned_space.names() if n not in known]
        if unused:
            raise ConfigError(f"The {exp.preset} preset has no use for {', '.join(map(repr, unused))}: it would be "
                              f"sampled and recorded but change nothing. Its parameters: {', '.join(known)}. To tune "
                              "arguments of your own model, use shoal.tune(model=...) or an objective.")
    _check_extremes(tuned_space)
    data = prepare_data(exp)
    engine = exp.resolved_engine(data.device)
    body = run_caviar if engine == "population" else run_builtin
    if exp.strategy == "pbt":
        if engine != "population":
            raise ConfigError("PBT copies weights between members of a population: use --engine population "
                              "(or auto) with --strategy pbt.")
        from shoal.study._pbt import run_pbt as body
    return tuned_space, data, engine, body


def _check_extremes(space: Space) -> None:
    """Every value the space can give a built-in model is one the engine accepts: fixed values,
    choices, both ends of ranges (lr = -1 or dropout up to 1.5 is refused here, not trial by trial)."""
    from shoal.engine import normalize

    for p in space:
        values = [getattr(p, "value")] if hasattr(p, "value") else list(getattr(p, "choices", ()))
        values += [getattr(p, k) for k in ("low", "high", "off") if getattr(p, k, None) is not None]
        for v in values:
            normalize({p.name: v})


def check(experiment: str | Experiment | None = None, **settings: Any) -> str:
    """Validate a built-in study's settings as ``tune`` would (settings, space, data, strategy,
    pruner, storage kind and folder) without training or touching the storage.

    Returns a one-line summary; raises ConfigError on bad input (``shoal tune --check``).

    Example:
        >>> check(data="digits", preset="mlp", trials=5)  # doctest: +SKIP
        'digits-mlp: digits: 1797 samples ...'
    """
    from shoal.study._strategies import make_pruner, make_sampler

    exp = _experiment_from(experiment, settings)
    space, data, engine, _ = _plan(exp)
    make_sampler("random" if exp.strategy == "coarse-to-fine" else exp.strategy, seed=exp.seed, space=space,
                 grid_points=exp.grid_points)
    make_pruner(exp.pruner, epochs=exp.epochs)
    storage = resolve_storage(exp.storage, create=False)
    stored = _stored_study(exp)
    if stored is not None:  # a run would continue it: refused where its measure differs
        existing = len(stored.get_trials(deepcopy=False))
        if existing:
            _refuse_other_measures(stored, exp, existing, exp.metric.split(","))
    return (f"{exp.study_name}: {data.description}; {engine} engine on {data.device}; {exp.strategy}, "
            f"{_budget(exp)} x {exp.epochs} epochs over {len(space.names()) - len(space.unreachable())} "
            f"parameters; storage {storage}. Nothing was written.")


def _stored_study(exp: Experiment) -> optuna.Study | None:
    """The study a run of ``exp`` would continue, when its storage is a file that exists (opening a
    file that does not exist would create it; a server is only reached by ``--check``)."""
    import optuna

    path = storage_file(exp.storage)
    if path is None or not os.path.isfile(path):
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = resolve_storage(exp.storage)
    if exp.study_name not in optuna.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=exp.study_name, storage=storage)


def _budget(exp: Experiment) -> str:
    return f"trials until the timeout ({exp.timeout:g} s)" if exp.trials is None else f"{exp.trials} trials"


def _plain(value: Any) -> bool:
    """Whether ``value`` survives a round trip through JSON (overrides from TOML or the CLI do)."""
    import json

    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def retune(source: str, *, from_study: str | None = None, top: int = 5, narrow: bool = False,
           objective: Callable[..., Any] | None = None, space: Space | None = None, progress: bool = True,
           console: Console | None = None, **settings: Any) -> TuneResult:
    """Start a new study from an earlier one: its ``top`` best configurations run first, the
    sampler learns from them, and with ``narrow`` the space is narrowed around them.

    The earlier study's settings (data, preset, strategy, epochs, metric, ...) are the defaults;
    ``settings`` override them (typically ``data``, ``storage``, ``study``, ``trials``).
    ``shoal.study._warm.compare(result.study)`` then says how the earlier best configurations fared.
    """
    from shoal.study._warm import load_warm_start

    warm = load_warm_start(source, from_study, top)  # checks the source before anything runs
    import optuna

    old = optuna.load_study(study_name=warm.study, storage=resolve_storage(source))
    saved = dict(old.user_attrs.get("shoal", {}))
    known = set(Experiment.__dataclass_fields__) - {"storage", "study", "warm_start", "warm_study",
                                                    "warm_top", "warm_narrow", "trials"}
    base = {k: v for k, v in saved.items() if k in known and v is not None} if objective is None else {}
    merged = {**base, **settings, "warm_start": source, "warm_study": warm.study, "warm_top": top,
              "warm_narrow": narrow}
    if _storage_key(merged.get("storage")) == _storage_key(source):
        name = merged.get("study") or (getattr(objective, "__name__", "objective") if objective is not None
                                       else make_experiment(merged).study_name)
        if name == warm.study:
            if settings.get("study") is not None:
                raise ConfigError(f"The new study would be {warm.study!r} itself, in {source!r}: retune starts a new "
                                  f"study. Give it another name (--study NAME) or another storage (--storage).")
            merged["study"] = f"{warm.study}-retune"  # the default name is the earlier study's: never reopen it
    return tune(objective, space=space, progress=progress, console=console, **merged)


def _storage_key(storage: str | None) -> str:
    """One spelling per storage: a file's real path, or a URL as given."""
    path = storage_file(storage)
    return str(storage) if path is None else os.path.realpath(path)


def _objective_names(metric: Any, direction: str | list[str] | None) -> tuple[list[str] | None, Any]:
    """The names a user objective's values go by when ``metric`` names them ("val_acc", or
    "val_acc,seconds"; the keys of the dict it returns), and their directions: as given, else
    a measure's own (val_acc is maximized), else minimize. None when ``metric`` is not given."""
    if metric is None:
        return None, direction
    names = [str(m).strip() for m in (metric.split(",") if isinstance(metric, str) else metric)]
    if not names or not all(names) or len(set(names)) != len(names):
        raise ConfigError(f"The 'metric' setting must name the objective's value(s), each once: 'val_acc', or "
                          f"'val_acc,seconds' for several. Got {metric!r} instead.")
    if direction is None:
        from shoal.study._objectives import direction_of, resolve

        def known(name: str) -> str:
            try:
                return direction_of(resolve(name))
            except (ConfigError, KeyError):
                return "minimize"

        directions = [known(n) for n in names]
        direction = directions[0] if len(names) == 1 else directions
    elif len([direction] if isinstance(direction, str) else list(direction)) != len(names):
        raise ConfigError(f"The metric names {len(names)} value(s) ({', '.join(names)}) but direction has "
                          f"{1 if isinstance(direction, str) else len(direction)}: give one direction per value.")
    return names, direction


def _source_of(objective: Callable[..., Any]) -> str | None:
    """The real path of the file that defines ``objective`` (None for builtins and the like)."""
    import inspect

    try:
        path = inspect.getsourcefile(objective)
    except TypeError:
        return None
    # a notebook cell's "file" is a name in a temporary folder, another at each run: not a place
    return os.path.realpath(path) if path and os.path.isfile(path) else None


def _check_signature(objective: Callable[..., Any]) -> None:
    """Refuse an objective shoal cannot call before it fails every trial the same way."""
    import inspect

    from shoal.study._fidelity import has_fidelity

    try:
        params = inspect.signature(objective).parameters.values()
    except (TypeError, ValueError):
        return  # a builtin or an extension: its call will tell
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p.name for p in params if p.kind in positional and p.default is inspect.Parameter.empty]
    most, form = (3, "fn(config, epochs, state=None)") if has_fidelity(objective) else (2, "fn(config) or fn(config, trial)")
    if len(required) > most or not any(p.kind in positional or p.kind == p.VAR_POSITIONAL for p in params):
        name = getattr(objective, "__name__", repr(objective))
        raise ConfigError(f"The objective {name}({', '.join(p.name for p in params)}) cannot be called as {form}: "
                          f"shoal passes the configuration first{', then the trial' if most == 2 else ''}. Give "
                          f"other arguments defaults, or bind them (functools.partial).")


def _tune_objective(objective, space, exp, direction, progress, console, metric_setting=None) -> TuneResult:
    from shoal.space import Space

    if not callable(objective):
        raise ConfigError(f"The objective must be a function fn(config) -> value (or fn(config, trial), or "
                          f"fn(config, epochs, state=None) -> (value, state)). Got {objective!r} instead.")
    _check_signature(objective)
    names, direction = _objective_names(metric_setting, direction)

    if not isinstance(space, Space):
        raise ConfigError(
            "A user objective needs its search space: pass space=shoal.Space([...]) "
            f"(Float, Int, Categorical parameters). Got {space!r} instead."
        )
    space = space.copy().update(exp.params)
    direction = direction or "minimize"
    directions = [direction] if isinstance(direction, str) else list(direction)
    if not directions or any(d not in ("minimize", "maximize") for d in directions):
        raise ConfigError(f"The 'direction' must be 'minimize' or 'maximize' (or a list of them, one per value "
                          f"the objective returns). Got {direction!r} instead.")
    metric = ",".join(names) if names else "value" if len(directions) == 1 else \
        ",".join(f"value{i}" for i in range(len(directions)))
    if len(directions) > 1 and (exp.strategy in ("pbt", "cmaes", "coarse-to-fine") or exp.pruner != "none"):
        raise ConfigError(f"Several objectives need a strategy that handles them (tpe, nsga2, gp, random, qmc, "
                          f"grid) and no pruner; got strategy {exp.strategy!r}, pruner {exp.pruner!r}.")
    attrs = {"objective": getattr(objective, "__qualname__", repr(objective)), "objective_file": _source_of(objective)}
    if exp.study is None:
        exp.study = getattr(objective, "__name__", "objective")
        attrs["default_name"] = True  # the study is named after the function: another one of that name is not it
    from shoal.study._fidelity import FunctionPool, has_fidelity, run_fidelity

    if len(directions) > 1 and has_fidelity(objective):
        raise ConfigError("A fidelity objective fn(config, epochs, state) reports one value per epoch; several "
                          "objectives need fn(config) returning a tuple. Keep one direction, or drop the fidelity "
                          "argument.")

    if exp.strategy == "pbt":
        if not has_fidelity(objective):
            raise ConfigError("PBT trains members a few epochs at a time and copies the best: the objective must "
                              "take a fidelity argument, fn(config, epochs, state=None) -> (value, state).")

        def body(runner):
            from shoal.study._pbt import run_pbt

            run_pbt(runner, exp, None, pool=FunctionPool(objective, runner.objectives[0]),
                    maximize=direction == "maximize", metric="value")
    elif has_fidelity(objective):
        def body(runner):
            run_fidelity(runner, objective, exp)
    else:
        def body(runner):
            runner.run_objective(objective)
    return _run(exp, space, directions, metric, body, progress, console,
                attrs=attrs)


# What a failed write of the storage says, and what the user can do about it.
_DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file is too large for this disk or limit",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied", errno.EDQUOT: "the disk quota is used up"}
_SQLITE_HINTS = (("locked", "another program holds a lock on it (close it, or wait for it to finish)"),
                 ("readonly", "it is read-only"), ("read-only", "it is read-only"),
                 ("full", "the disk is full"), ("disk i/o", "the disk failed a write (full, or removed)"),
                 ("unable to open", "the file cannot be opened or created (check the folder and permissions)"))


def storage_error(exc: BaseException, storage: Any) -> StorageError | None:
    """A clear StorageError for a failed write of the study's storage, or None for other errors.

    Optuna wraps the database's own error (``StorageInternalError`` around SQLAlchemy's around
    sqlite3's); the reason is found by walking the chain of causes.
    """
    import sqlite3

    seen = exc
    while seen is not None:
        reason = None
        if isinstance(seen, sqlite3.Error) or type(seen).__module__.startswith("sqlalchemy"):
            text = str(getattr(seen, "orig", None) or seen).split("\n")[0]
            reason = next((hint for key, hint in _SQLITE_HINTS if key in text.lower()), None)
            path = storage_file(storage) if reason == "it is read-only" else None
            if path and os.access(path, os.W_OK) and not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
                reason = "its folder is not writable (SQLite writes a journal file beside the database)"
            if reason is None and "OperationalError" in type(seen).__name__:
                reason = "the database refused the operation"  # e.g. another process creating its tables
            reason = f"{reason} ({text})" if reason else None
        elif isinstance(seen, OSError) and seen.errno in _DISK_ERRNOS:
            reason = f"{_DISK_ERRNOS[seen.errno]} ({seen.strerror})"
        if reason:
            return StorageError(
                f"The storage {str(storage or 'shoal.db')!r} could not be written: {reason}. Nothing recorded "
                "is lost: every trial finished before this stays in the storage, and trials that were "
                "running are run again next time. Fix the cause, then run the same command again."
            )
        seen = seen.__cause__ or seen.__context__
    return None


def _storage_faults(run: Callable) -> Callable:
    """Failed storage writes end the study with a StorageError instead of a database traceback."""

    @functools.wraps(run)
    def wrapper(exp: Experiment, *args: Any, **kwargs: Any) -> TuneResult:
        try:
            return run(exp, *args, **kwargs)
        except Exception as exc:
            error = storage_error(exc, exp.storage)
            if error is None or isinstance(exc, StorageError):
                raise
            raise error from exc

    return wrapper


# Settings that decide what a trial's value measures: the data and its split, the model family,
# how long each trial trains, the metric. A study's trials are compared, ranked and modelled by its
# sampler together, so a run that continues a study must keep them (budget, strategy, space,
# workers and the like may change).
MEASURE_SETTINGS = ("data", "preset", "epochs", "patience", "metric", "val_fraction", "test_fraction",
                    "official_test", "folds", "target", "task", "seed")


def _refuse_other_measures(study: optuna.Study, exp: Experiment, existing: int, objectives: list[str],
                           attrs: Mapping[str, Any] | None = None) -> None:
    stored = study.user_attrs.get("shoal")
    if not isinstance(stored, Mapping):
        return  # a study shoal did not create, or an older one: nothing to compare with
    now = {**exp.to_dict(), "metric": list(objectives)}
    if attrs is not None and attrs.get("default_name") and attrs.get("objective_file") and stored.get("objective_file") \
            and os.path.isfile(stored["objective_file"]) and (
            (stored.get("objective"), stored["objective_file"]) != (attrs["objective"], attrs["objective_file"])):
        raise ConfigError(
            f"The study {study.study_name!r} was made by {stored['objective']} in {stored['objective_file']}; this run "
            f"tunes {attrs['objective']} in {attrs['objective_file']}, whose trials are another function's. Name "
            f"this study (study='...'), or pass study={study.study_name!r} to continue that study on purpose.")
    stored = {**stored, "metric": stored.get("objectives", [stored.get("metric")])}
    # a function's values: what it computes is its own business, but not how long it trains
    keys = ("epochs", "metric") if "objective" in stored else MEASURE_SETTINGS
    if stored.get("folds") and now.get("folds"):  # k-fold validates every row once: val_fraction is unused
        keys = tuple(k for k in keys if k != "val_fraction")
    if stored.get("data_at") is not None:  # where the files are, whatever folder names them
        from shoal.data._loaders import data_location

        stored["data"], now["data"] = stored["data_at"], data_location(exp.data)
    changed = [k for k in keys if k in stored and stored[k] != now[k]]
    if not changed:
        return
    was = ", ".join(f"{k}={stored[k]!r}" for k in changed)
    asked = ", ".join(f"{k}={now[k]!r}" for k in changed)
    raise ConfigError(
        f"The study {study.study_name!r} holds {existing} trial(s) measured with {was}; this run asks for {asked}. "
        f"Their values would not be comparable, and the sampler would model them together. Continue it with "
        f"the same settings, or start another study with --study NAME."
    )


@_storage_faults
def _run(exp: Experiment, space: Space, direction: str | list[str], metric: str, body: Callable, progress: bool,
         console: Console | None, attrs: Mapping[str, Any]) -> TuneResult:
    from shoal.study._experiment import one_driver

    with one_driver(exp.storage, exp.study_name):  # a second driver on a file would take our trials for dead
        return _drive(exp, space, direction, metric, body, progress, console, attrs)


def _drive(exp: Experiment, space: Space, direction: str | list[str], metric: str, body: Callable, progress: bool,
           console: Console | None, attrs: Mapping[str, Any]) -> TuneResult:
    from shoal.study._display import Progress
    from shoal.study._runner import StudyRunner
    from shoal.study._strategies import make_pruner, make_sampler

    warm = None
    if exp.warm_start:
        from shoal.study import _warm

        warm = _warm.load_warm_start(exp.warm_start, exp.warm_study, exp.warm_top)
        if exp.warm_narrow:
            space = _warm.narrowed(space, warm)
    staged = exp.strategy == "coarse-to-fine"
    sampler = make_sampler("random" if staged else exp.strategy, seed=exp.seed, space=space,
                           grid_points=exp.grid_points)
    pruner = make_pruner(exp.pruner, epochs=exp.epochs)
    trials = exp.trials
    if exp.strategy == "grid":
        size = space.grid_size(exp.grid_points)
        trials = size if trials is None else min(trials, size)
    storage = resolve_storage(exp.storage)
    objectives = metric.split(",")
    directions = [direction] if isinstance(direction, str) else list(direction)
    study = open_study(storage, exp.study_name, directions, sampler, pruner)
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        _refuse_other_measures(study, exp, existing, objectives, attrs)
    if existing and exp.strategy != "grid":
        # A resumed study: the sampler's random stream continues from what is stored rather than
        # restarting at the study seed (which drew the stored trials' parameters once again).
        study.sampler = make_sampler("random" if staged else exp.strategy, space=space, grid_points=exp.grid_points,
                                     seed=resumed_seed(exp.seed, existing))
    from shoal.data._loaders import data_location

    study.set_user_attr("shoal", {**{k: v for k, v in exp.to_dict().items() if k != "params"},
                                  **({"params": exp.params} if _plain(exp.params) else {}),
                                  "metric": objectives[0], "objectives": objectives, "space": space.describe(),
                                  "data_at": data_location(exp.data), **attrs})
    if warm is not None:
        _warm.enqueue(study, space, warm)
    shown = trials
    if exp.strategy == "pbt":  # each exploit step ends some members' trials and starts their copies
        from shoal.study._pbt import expected_trials

        shown = expected_trials(trials, exp.epochs, exp.pbt_interval, exp.pbt_quantile)
    display = Progress(shown, direction, metric, console=console, enabled=progress)
    planner = None
    if staged:
        from shoal.study._stages import StagePlanner, parse_stages

        planner = StagePlanner(study, space, parse_stages(exp.stages, trials), seed=exp.seed,
                               top_fraction=exp.top_fraction, grid_points=exp.grid_points, on_stage=display.stage)
    from shoal.study._objectives import parse_constraints

    runner = StudyRunner(study, space, trials=trials, metric=metric, seed=exp.seed, timeout=exp.timeout,
                         on_finish=display.finished, planner=planner, constraints=parse_constraints(exp.constraints))
    if runner.recovered:  # said with or without a progress bar: the run is not starting from nothing
        logging.getLogger("shoal").warning(
            "%d trial(s) left running by a run that stopped (killed or interrupted) are recorded as interrupted "
            "and run again now", runner.recovered)
    display.resume(study, done=runner.finished_count())
    display.deadline = runner.deadline
    logging.getLogger("shoal").info("study %s: %d trials finished before this run", study.study_name,
                                    runner.finished_count())
    with display, runner.stop_on_interrupt():
        body(runner)
    if runner.timed_out:
        message = (f"the timeout ({exp.timeout:g} s) passed: {runner.timed_out} trial(s) in training stopped before "
                   f"their last epoch (user attribute stopped='timeout')")
        logging.getLogger("shoal").info(message)
        display.note(f"[yellow]{message}[/]")
    best_params, best_value, best_trial = _best(study)
    return TuneResult(best_params, best_value, best_trial, study, exp)

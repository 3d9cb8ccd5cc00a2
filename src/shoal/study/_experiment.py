"""An experiment: everything one study needs, from a TOML file, CLI flags or Python arguments.

Validated as a whole before anything touches the storage, so that bad input writes nothing.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from shoal._errors import ConfigError
from shoal.study._strategies import check_pruner, check_strategy

__all__ = ["Experiment", "load_experiment", "resolve_storage"]

# Strategies whose trial count is a size, not a budget: a timeout alone cannot stand in for it.
SIZED = {"pbt": "it is the population's size", "coarse-to-fine": "its stages are shares of it"}
SINGLE_OBJECTIVE = ("cmaes", "coarse-to-fine", "pbt")  # they rank trials by one value
ENGINES = ("auto", "population", "single")
EXECUTORS = ("auto", "local", "processes", "ray")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Declared field type -> (check, how the message names it). Paths count as strings (Python callers).
_KINDS = {
    "str": (lambda v: isinstance(v, (str, os.PathLike)), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (_is_number, "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "None": (lambda v: v is None, "unset"),
}


@dataclass
class Experiment:
    """One study's settings. Field names are the TOML keys and (with dashes) the CLI flags.

    Example:
        >>> Experiment(trials=20, strategy="random").direction
        'minimize'
    """

    data: str = "digits"
    preset: str = "mlp"
    strategy: str = "tpe"
    trials: int | None = 30  # None: as many as the timeout allows (see make_experiment)
    epochs: int = 15
    metric: str | list = "val_loss"  # one measure, or several ("val_acc,train_seconds"): see _objectives
    constraints: list[str] | None = None  # limits such as "params<=100000"
    storage: str | None = None
    study: str | None = None
    seed: int = 0
    pruner: str = "none"
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    official_test: bool = False  # hold out the data set's own test part (MNIST's t10k) instead
    folds: int | None = None
    patience: int | None = None
    device: str = "auto"
    engine: str = "auto"
    population: int | None = None
    workers: int | None = None
    executor: str = "auto"
    address: str | None = None
    memory_mb: float | None = None
    grid_points: int = 3
    target: str | None = None
    task: str | None = None  # "classification" or "regression"; None: inferred from the target
    download: bool = False
    timeout: float | None = None
    stages: list[str] | None = None
    top_fraction: float = 0.2
    pbt_interval: int = 2
    pbt_quantile: float = 0.25
    pbt_explore: str = "perturb"
    warm_start: str | None = None
    warm_study: str | None = None
    warm_top: int = 5
    warm_narrow: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def objectives(self) -> list[str]:
        """The objective names, in the order of the study's values."""
        return self.metric.split(",")

    @property
    def directions(self) -> list[str]:
        from shoal.study._objectives import direction_of

        return [direction_of(name) for name in self.objectives]

    @property
    def direction(self) -> str:
        """The first objective's direction (the only one, unless the study is multi-objective)."""
        return self.directions[0]

    @property
    def study_name(self) -> str:
        if self.study:
            return self.study
        stem = Path(str(self.data).split(":", 1)[-1]).stem if ("/" in str(self.data) or "." in str(self.data)) else self.data
        if stem in ("", ".", ".."):  # "." or "..": the folder's own name
            stem = Path(str(self.data).split(":", 1)[-1]).resolve().name or "data"
        return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', str(stem))}-{self.preset}"

    def validate(self) -> None:
        from shoal.space import PRESETS

        self._validate_types()
        if self.task not in (None, "classification", "regression"):
            raise ConfigError(f"The 'task' setting must be 'classification' or 'regression' (or left out: inferred "
                              f"from the target). Got {self.task!r} instead.")
        if self.preset not in PRESETS:
            from shoal.space import preset

            preset(self.preset)  # raises the standard message
        check_strategy(self.strategy)
        check_pruner(self.pruner)
        self._validate_objectives()
        if self.trials is None:
            if self.timeout is None:
                raise ConfigError("The 'trials' setting is missing: give a number of trials, or a timeout "
                                  "(--timeout S) to search until it.")
            if self.strategy in SIZED:
                raise ConfigError(f"The {self.strategy} strategy needs a number of trials (--trials N): "
                                  f"{SIZED[self.strategy]}. A timeout alone does not give one.")
        for name, low in (("trials", 1), ("epochs", 1), ("grid_points", 2)):
            v = getattr(self, name)
            if name == "trials" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"The '{name}' setting must be an integer >= {low}. Got {v!r} instead.")
        if self.grid_points > 1000:  # the grid is built in memory before the size check can refuse it
            raise ConfigError(f"The 'grid_points' setting must be at most 1000 values per parameter. "
                              f"Got {self.grid_points!r} instead.")
        for name, low in (("folds", 2), ("patience", 1), ("population", 1), ("workers", 1)):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise ConfigError(f"The '{name}' setting must be an integer >= {low}. Got {v!r} instead.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"The 'seed' setting must be a non-negative integer. Got {self.seed!r} instead.")
        if not (0.0 < float(self.val_fraction) < 1.0):
            raise ConfigError(f"The 'val_fraction' setting must be in (0, 1). Got {self.val_fraction!r} instead.")
        if not (0.0 <= float(self.test_fraction) < 1.0) or self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"The 'test_fraction' setting must be in [0, 1) and leave data for training "
                f"(val_fraction + test_fraction < 1). Got {self.test_fraction!r}."
            )
        self._validate_executor()
        if self.engine not in ENGINES:
            raise ConfigError(f"The 'engine' setting must be one of {list(ENGINES)}. Got {self.engine!r} instead.")
        if self.memory_mb is not None and not (isinstance(self.memory_mb, (int, float)) and self.memory_mb > 0):
            raise ConfigError(f"The 'memory_mb' setting must be a positive number of MiB. Got {self.memory_mb!r}.")
        if self.timeout is not None and not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ConfigError(f"The 'timeout' setting must be a positive number of seconds. Got {self.timeout!r}.")
        self._validate_strategy_settings()
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"The 'params' (or [space]) section must be a table. Got {self.params!r} instead.")

    def _validate_types(self) -> None:
        """Each plain setting has its declared type (from a TOML file anything can arrive: a date,
        a table, a string where a number belongs); numbers are finite, booleans are not numbers."""
        for f in fields(self):
            kinds = str(f.type).replace(" ", "").split("|")
            value = getattr(self, f.name)
            if not set(kinds) <= set(_KINDS) or (value is None and "None" in kinds):
                continue  # lists and tables are checked where they are read
            if f.name == "data" and isinstance(value, tuple) and len(value) == 2:
                continue  # shoal.tune(data=(X, y)): arrays from Python
            if not any(_KINDS[k][0](value) for k in kinds if k != "None"):
                wanted = " or ".join(_KINDS[k][1] for k in kinds)
                raise ConfigError(f"The '{f.name}' setting must be {wanted}. Got {value!r} instead.")

    def _validate_objectives(self) -> None:
        """Objectives and limits by name; the strategies and pruners that can serve several objectives."""
        from shoal.study._objectives import parse_constraints, parse_objectives

        self.metric = ",".join(parse_objectives(self.metric))  # canonical: aliases resolved
        if self.constraints is not None:
            if isinstance(self.constraints, str):
                self.constraints = [self.constraints]
            if not isinstance(self.constraints, (list, tuple)):
                raise ConfigError(f"The 'constraints' setting must be a list of limits such as 'params<=100000'. "
                                  f"Got {self.constraints!r} instead.")
            self.constraints = [c.key for c in parse_constraints(self.constraints)] or None
        many = len(self.objectives) > 1
        if many and self.strategy in SINGLE_OBJECTIVE:
            raise ConfigError(f"The strategy {self.strategy!r} optimizes one value; this experiment has "
                              f"{len(self.objectives)} objectives ({self.metric}). Use tpe, nsga2, gp, random, qmc or grid.")
        if many and self.pruner != "none":
            raise ConfigError(f"Optuna prunes single-objective studies only; this experiment has objectives "
                              f"{self.metric}. Drop the pruner {self.pruner!r}, or keep one objective and move the "
                              "others to --constraint limits.")
        if self.constraints and self.strategy in ("cmaes", "coarse-to-fine", "pbt"):
            raise ConfigError(f"The strategy {self.strategy!r} cannot steer away from infeasible configurations. "
                              "Use tpe, nsga2 or gp with --constraint (random, qmc and grid record them too).")

    def _validate_strategy_settings(self) -> None:
        """Coarse-to-fine stages and PBT's schedule."""
        if self.stages is not None or self.strategy == "coarse-to-fine":
            from shoal.study._stages import parse_stages

            if self.stages is not None and self.strategy != "coarse-to-fine":
                raise ConfigError(f"The 'stages' setting belongs to the coarse-to-fine strategy; this "
                                  f"experiment's strategy is {self.strategy!r}. Drop 'stages' or use "
                                  "--strategy coarse-to-fine.")
            parse_stages(self.stages, self.trials)
        if isinstance(self.top_fraction, bool) or not isinstance(self.top_fraction, (int, float)) \
                or not 0 < self.top_fraction <= 1:
            raise ConfigError(f"The 'top_fraction' setting must be in (0, 1]. Got {self.top_fraction!r} instead.")
        if isinstance(self.pbt_interval, bool) or not isinstance(self.pbt_interval, int) or self.pbt_interval < 1:
            raise ConfigError(f"The 'pbt_interval' setting must be an integer >= 1 (epochs between PBT's "
                              f"exploit steps). Got {self.pbt_interval!r} instead.")
        if isinstance(self.pbt_quantile, bool) or not isinstance(self.pbt_quantile, (int, float)) \
                or not 0 < self.pbt_quantile <= 0.5:
            raise ConfigError(f"The 'pbt_quantile' setting must be in (0, 0.5] (the share of the population "
                              f"replaced at each step). Got {self.pbt_quantile!r} instead.")
        if self.strategy == "pbt" and self.pruner != "none":
            raise ConfigError(f"PBT selects members itself (the bottom quantile copies the top one every "
                              f"pbt_interval epochs); drop the pruner {self.pruner!r} or use another strategy.")
        if isinstance(self.warm_top, bool) or not isinstance(self.warm_top, int) or self.warm_top < 1:
            raise ConfigError(f"The 'warm_top' setting must be an integer >= 1 (how many of the earlier study's "
                              f"best configurations run first). Got {self.warm_top!r} instead.")
        if self.pbt_explore not in ("perturb", "resample"):
            raise ConfigError(f"The 'pbt_explore' setting must be 'perturb' (multiply by 0.8 or 1.2) or "
                              f"'resample'. Got {self.pbt_explore!r} instead.")

    def _validate_executor(self) -> None:
        """Where populations train: this process, worker processes, or a Ray cluster."""
        if self.executor not in EXECUTORS:
            raise ConfigError(f"The 'executor' setting must be one of {list(EXECUTORS)}. Got {self.executor!r} instead.")
        if self.address is not None and self.executor != "ray":
            raise ConfigError(f"The 'address' setting is a Ray cluster's address; it needs executor 'ray'. "
                              f"Got executor {self.executor!r}. Add --executor ray, or drop --address.")
        if self.executor == "local" and self.workers not in (None, 1):
            raise ConfigError(f"The 'local' executor trains in this process; 'workers' must be 1 or unset with it. "
                              f"Got {self.workers!r}. Use --executor processes or ray for more workers.")
        if self.executor == "ray" and self.engine == "single":
            raise ConfigError("The 'ray' executor runs populations; engine 'single' trains one model at a time in "
                              "this process. Use --engine population (or auto) with --executor ray.")

    def resolved_engine(self, device: str) -> str:
        """``auto`` trains populations, except CNNs on a CPU, where batching was measured slower."""
        if self.engine != "auto":
            return self.engine
        if self.preset == "cnn" and not str(device).startswith("cuda") and self.executor != "ray":
            return "single"
        return "population"

    def space(self):
        """The preset space with this experiment's overrides applied."""
        from shoal.space import preset

        space = preset(self.preset)
        space.update(self.params)
        return space

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def load_experiment(path: str | Path, **overrides: Any) -> Experiment:
    """Read an experiment TOML file; ``overrides`` (non-None) win over the file.

    The file holds the settings at the top level (or under ``[experiment]``) and parameter overrides
    under ``[space]``::

        data = "digits"
        preset = "mlp"
        strategy = "tpe"
        trials = 40

        [space]
        optimizer = ["adam", "momentum"]      # choices
        batch_size = 64                        # fixed
        lr = { low = 1e-3, high = 0.3 }       # narrowed (stays log scale)
    """
    import tomllib

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{str(p)!r} is a folder, not an experiment file (a .toml file). Give the file's path.")
    if not p.is_file():
        raise ConfigError(f"Experiment file not found: {str(p)!r}. Check the path, or use flags such as --data digits.")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The experiment file {str(p)!r} is not valid TOML: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"The experiment file {str(p)!r} is not text (TOML is UTF-8): is it the right file?") from None
    settings = _table(raw.pop("experiment", {}), "[experiment]", p)
    params = _table(raw.pop("space", {}), "[space]", p)
    settings.update(raw)
    settings["params"] = {**params, **_table(settings.get("params", {}), "params", p)}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "params":
            settings["params"] = {**settings["params"], **value}
        else:
            settings[key] = value
    return make_experiment(settings, source=str(p))


def _table(value: Any, name: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"The {name} section of {str(path)!r} must be a table (name = value lines under "
                          f"{name if name.startswith('[') else '[space]'}). Got {value!r} instead.")
    return dict(value)


def make_experiment(settings: Mapping[str, Any], source: str = "arguments") -> Experiment:
    known = {f.name for f in fields(Experiment)}
    normalized = {str(k).replace("-", "_"): v for k, v in settings.items()}
    bad = [k for k in normalized if k not in known]
    if bad:
        close = difflib.get_close_matches(bad[0], sorted(known), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        if bad[0] == "quiet":
            hint = " shoal.tune(progress=False) hides the progress bar (--quiet on the command line)."
        raise ConfigError(
            f"Unknown setting '{bad[0]}' in {source}.{hint} Known settings: {', '.join(sorted(known))}; "
            "parameter overrides go under [space]."
        )
    if normalized.get("trials") is None and normalized.get("timeout") is not None \
            and normalized.get("strategy", "tpe") not in SIZED:
        normalized["trials"] = None  # no budget given, a timeout given: search until the timeout
    return Experiment(**normalized)


def _cut_partial_line(backend: Any, path: Path) -> None:
    """Drop a journal's last line if a write was cut short (disk full, process killed, power lost).

    Optuna skips such a line when reading, but the next append would be glued to it and make the
    log unreadable. Under the journal's own lock, so that no other writer is half-way through.
    """
    from optuna.storages.journal._file import get_lock_file

    if not path.is_file() or path.stat().st_size == 0:
        return
    with get_lock_file(backend._lock), open(path, "rb+") as f:
        size = f.seek(0, 2)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        end = size
        while end > 0:  # find the last newline, reading backwards in blocks
            start = max(0, end - 65536)
            f.seek(start)
            block = f.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        f.truncate(end)
    import logging

    logging.getLogger("shoal").warning("journal %s: dropped an incomplete last record (%d bytes) left by an "
                                       "interrupted write", path, size - end)


OPTUNA_TABLES = frozenset({"studies", "study_directions", "study_user_attributes", "study_system_attributes", "trials",
                           "trial_user_attributes", "trial_system_attributes", "trial_params", "trial_values",
                           "trial_intermediate_values", "trial_heartbeats", "version_info", "alembic_version"})
JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _check_storage_file(path: str, *, journal: bool) -> None:
    """Refuse, before anything opens or changes it, a storage path that is not one: a folder, a
    file of another kind (an application's ``.log``, which repairing a journal's last line would
    cut; a ``.db`` that is no SQLite database), another application's SQLite database (Optuna
    would add its tables to it), or a new file in a folder that cannot be written."""
    p = Path(path)
    kind = "journal file" if journal else "SQLite file"
    if p.is_dir():
        raise ConfigError(f"The storage {path!r} is a folder, not a {kind}. Give a file name such as "
                          f"{str(p / ('shoal.log' if journal else 'shoal.db'))!r}.")
    if not p.exists():
        parent = p.parent if str(p.parent) else Path(".")
        if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"Cannot create the {kind} {path!r}: its folder {str(parent)!r} is not writable. "
                              "Give a path in a folder you may write to.")
        return
    try:
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise ConfigError(f"Cannot read the storage {path!r}: {exc.strerror or exc}. Check its permissions.") from None
    if not head:
        return  # empty: a new storage
    if journal:
        import json

        first = head.split(b"\n", 1)[0]
        try:
            record = json.loads(first.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):  # not JSON, or a first record longer than what was read
            record = {"op_code": None} if first == head and head.startswith(b'{"op_code"') else None
        if not (isinstance(record, dict) and "op_code" in record):
            raise ConfigError(f"The file {path!r} is not an Optuna journal (its first line is no journal record): "
                              "shoal leaves it as it is. Give the storage another file name; a new name.log is "
                              "created.")
        return
    if not head.startswith(b"SQLite format 3\x00"):
        raise ConfigError(f"The file {path!r} is not a SQLite database (it may be another kind of file, or "
                          "damaged): shoal leaves it as it is. Give the storage another file name; a new name.db "
                          "is created.")
    import sqlite3

    try:
        with sqlite3.connect(f"file:{p.resolve()}?mode=ro", uri=True) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            studies = {r[1] for r in db.execute("PRAGMA table_info(studies)")} if "studies" in tables else set()
    except sqlite3.OperationalError:  # locked by a writer right now: the storage's own handling applies
        return
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"The SQLite file {path!r} cannot be read ({exc}): it may be damaged. Give the storage "
                          "another file name, or restore the file from a copy.") from None
    # none of Optuna's tables (while a run creates them, some exist and others not yet: that is Optuna's)
    if (tables and not tables & OPTUNA_TABLES) or (studies and not {"study_id", "study_name"} <= studies):
        theirs = sorted(tables - OPTUNA_TABLES) or ["studies"]  # its own tables (or its own "studies")
        shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
        raise ConfigError(f"The SQLite file {path!r} is another application's database (tables {shown}), not an "
                          "Optuna storage: shoal will not add its tables to it. Give the storage another file name.")


def file_safe(name: str) -> str:
    """``name`` (a study's) as part of a file name: letters, digits, ``-_.``; anything else ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@contextlib.contextmanager
def one_driver(storage: str | None, study: str):
    """Hold the study's driver lock while a run drives it (a SQLite or journal file; nothing for a
    database server, where several drivers share a study through heartbeats).

    On a file, a trial found RUNNING at start is a killed run's and is recovered (failed, run
    again); a second driver would take a live run's trials for dead ones, and the first would then
    crash writing to trials that were no longer its own. The lock is ``flock`` on a hidden file
    beside the storage: the system drops it when its process ends, however it ends.
    """
    path = storage_file(storage)
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one driver per study is the user's to keep
        yield
        return
    file = Path(path)
    lock = file.parent / f".{file.name}.lock-{file_safe(study)}"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # an unwritable folder: the storage's own check says so
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(
                f"Another shoal process (pid {holder}) is running the study {study!r} in {path!r}. A SQLite or "
                f"journal file takes one driver per study: wait for that run to end (or stop it; running this "
                f"command again then continues the study), or share the study between drivers on PostgreSQL "
                f"(docs/scaling.md).") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def storage_file(storage: str | None) -> str | None:
    """The file behind a storage setting (``x.db``, ``sqlite:///x.db``, ``journal:x``, ``x.log``; the
    default ``shoal.db``), or None for a database server's URL."""
    s = str(storage or "shoal.db")
    if "://" in s and not s.startswith("sqlite:///"):
        return None
    return s.removeprefix("sqlite:///").removeprefix("journal:")


def check_stored(storage: str | None) -> None:
    """Refuse a storage that should hold studies already but cannot: no file at that path (opening
    it would create an empty one), or none given and no ``shoal.db`` here."""
    if storage is None and not Path("shoal.db").exists():
        raise ConfigError("No storage given and no shoal.db in this folder. Pass --storage FILE_OR_URL.")
    path = storage_file(storage)
    if path is not None and not Path(path).exists():
        raise ConfigError(f"Storage file not found: {path!r}. Check the path (studies are created by `shoal tune`).")


def open_stored(storage: str | None, study: str | None) -> Any:
    """Open a study that ``shoal tune`` (or anything Optuna) stored; pick the only one if unnamed.
    ConfigError for a missing file, several studies and no name, or an unknown name."""
    import optuna

    check_stored(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    resolved = resolve_storage(storage)
    names = list(optuna.get_all_study_names(resolved))  # summaries would read every trial
    if study is None:
        if len(names) != 1:
            raise ConfigError(f"This storage holds {len(names)} studies: {', '.join(names) or 'none'}. "
                              "Pick one with --study NAME.")
        study = names[0]
    if study not in names:
        raise ConfigError(f"No study named {study!r} in this storage. Studies here: {', '.join(names) or 'none'}.")
    return optuna.load_study(study_name=study, storage=resolved)


def resolve_storage(storage: str | None, create: bool = True):
    """A storage for Optuna: a SQLite file by default, any SQLAlchemy URL, or a journal file.

    ``None`` -> ``sqlite:///shoal.db`` in the working folder; ``x.db`` / ``x.sqlite`` -> that SQLite
    file; ``x.log`` / ``x.jsonl`` / ``journal:x`` -> an Optuna journal file; ``scheme://...`` -> as is,
    except that a database server's URL (PostgreSQL, MySQL) opens with heartbeats for several
    drivers (see ``_shared``). With ``create=False`` nothing is opened (opening a journal file
    creates it): the storage is only checked, and described as a string.
    """
    if storage is None or storage == "":
        _check_storage_file("shoal.db", journal=False)
        return "sqlite:///shoal.db"
    s = str(storage)
    path = storage_file(s)
    if path is not None and (s.startswith(("journal:", "sqlite:///")) or s.endswith(JOURNAL_SUFFIXES + SQLITE_SUFFIXES)):
        _check_storage_file(path, journal=not s.startswith("sqlite:///") and not s.endswith(SQLITE_SUFFIXES))
    if "://" in s and not create:
        from shoal.study._shared import check_server

        check_server(s)  # a server is reached (read only); a sqlite:// file is left unopened
        return s
    if "://" in s:
        from shoal.study._shared import server_storage

        return server_storage(s)  # a database server: heartbeats, so that several drivers can share it
    if s.startswith("journal:") or s.endswith(JOURNAL_SUFFIXES):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = s.removeprefix("journal:")
        if Path(path).parent and not Path(path).parent.exists():
            raise ConfigError(f"The folder of journal file {path!r} does not exist. Create it first.")
        if not create:
            return f"journal:{path}"
        backend = JournalFileBackend(path)
        _cut_partial_line(backend, Path(path))
        return JournalStorage(backend)
    if s.endswith(SQLITE_SUFFIXES):
        if not Path(s).parent.exists():
            raise ConfigError(f"The folder of SQLite file {s!r} does not exist. Create it first.")
        return f"sqlite:///{s}"
    raise ConfigError(
        f"Cannot tell what storage {s!r} is. Give a SQLite file (name.db), a journal file (name.log) "
        "or a SQLAlchemy URL such as sqlite:///name.db or postgresql+psycopg://user:pw@host/db."
    )

"""Comparing the values of one categorical hyperparameter, all else fixed: the optimizer case study.

The same MLP (the preset's default architecture) on the same data and split is trained with each
value of the parameter (sgd, momentum, rmsprop, adam by default), at its own tuned learning rate
and at one shared default, over several seeds. Everything is stored:

* one small tuning study per value (``<study>/lr-<value>``), searching the learning rate on a log
  scale with the population engine (many learning rates trained as one batched computation);
* the comparison study ``<study>`` holding every final run (one trial each, trained alone with the
  single-model engine so that its seconds are its own), tagged with user attribute ``compare``.

Running the same comparison again reuses what the storage holds and trains only what is missing.
``load_comparison`` turns the stored runs into plain data: mean and spread of the curves, epochs and
seconds to reach a target loss, final accuracy with a t-distribution confidence interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal._errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["COMPARABLE", "ComparisonData", "GroupStats", "load_comparison", "run_comparison"]

# Parameters of the MLP preset that can be compared, value by value.
COMPARABLE = ("optimizer", "activation", "init", "batch_norm", "batch_size", "lr_decay", "shape")
LR_RANGE = (1e-4, 1.0)


@dataclass
class GroupStats:
    """The runs of one (value, learning-rate mode) pair, over seeds."""

    value: Any
    lr_mode: str  # "tuned" or "default"
    lr: float
    runs: int
    failed: int
    epochs: list[int]
    val_loss_mean: list[float]
    val_loss_std: list[float]
    val_loss_min: list[float]
    val_loss_max: list[float]
    train_loss_mean: list[float]
    final_acc: list[float]  # per run
    acc_mean: float | None
    acc_ci: tuple[float, float] | None  # 95 % t-interval of the mean
    final_loss_mean: float | None
    epochs_to_target: list[int | None]  # per run; None: never reached
    seconds_to_target: list[float | None]
    seconds_total: list[float]

    @property
    def label(self) -> str:
        return f"{self.value} ({self.lr_mode} lr {self.lr:.3g})"


@dataclass
class ComparisonData:
    study_name: str
    param: str
    values: list[Any]
    settings: dict[str, Any]
    target_loss: float | None
    groups: list[GroupStats]
    tuning: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # value -> (lr, val_loss)


def _mlp_defaults(param: str) -> dict[str, Any]:
    """Every MLP parameter fixed at the engine's default, except the compared one and lr."""
    from shoal.engine._config import DEFAULTS
    from shoal.space import preset

    space = preset("mlp")
    return {p.name: DEFAULTS[p.name] for p in space if p.name not in (param, "lr") and p.name in DEFAULTS}


def choices(param: str, values: list[Any] | None) -> list[Any]:
    """The values to compare: the preset's choices (checked), or those given."""
    from shoal.space import Categorical, Int, preset

    if param not in COMPARABLE:
        raise ConfigError(f"The 'param' to compare must be one of {list(COMPARABLE)}. Got {param!r} instead.")
    p = preset("mlp")[param]
    allowed = list(p.choices) if isinstance(p, Categorical) else list(p.values()) if isinstance(p, Int) else []
    if values is None:
        return allowed
    out = []
    for v in values:
        if isinstance(v, str) and param == "batch_size":
            v = int(v) if v.isdigit() else v
        if v not in allowed:
            raise ConfigError(f"The value {v!r} is not a choice of '{param}'. Its choices are {allowed}.")
        if v not in out:
            out.append(v)
    if len(out) < 2:
        raise ConfigError(f"A comparison needs at least 2 values of '{param}'. Got {out} instead.")
    return out


def run_comparison(param: str = "optimizer", *, data: str = "digits", values: list[Any] | None = None,
                   seeds: int = 3, budget: int = 8, epochs: int = 10, default_lr: float = 0.01,
                   storage: str | None = None, study: str | None = None, seed: int = 0,
                   target_loss: float | None = None, search_engine: str = "population", progress: bool = True,
                   console: Console | None = None) -> ComparisonData:
    """Tune the learning rate per value, train every value at its tuned and the default lr over
    ``seeds`` seeds, store it all, and return the comparison's data.

    Args:
        param: the categorical hyperparameter compared (``COMPARABLE``).
        data: the data set (``digits``, ``mnist:FOLDER``, ...); one split for all runs.
        values: the values compared (default: all the preset's choices).
        seeds: runs per (value, lr) pair, each with its own seed (init, shuffling, dropout).
        budget: trials of each value's learning-rate search (0: no search, default lr only).
        epochs: epochs of every run (search included).
        default_lr: the shared learning rate every value is also trained with.
        storage: where studies go (default ./shoal.db).
        study: the comparison study's name (default ``compare-<param>-<data>``).
        target_loss: the validation loss whose first crossing times convergence (default: the
            median over groups of each group's lowest mean validation loss).
        search_engine: the engine of the learning-rate searches: ``population`` (all of a search's
            trials as one batched computation) or ``single`` (cheaper for a budget of 2 or 3 on a CPU,
            where the population engine's fixed costs per population dominate).

    Returns:
        ComparisonData (also readable later with ``load_comparison``).

    Example:
        >>> data = run_comparison("optimizer", data="digits", seeds=3, budget=6, epochs=8,
        ...                       storage="cmp.db")  # doctest: +SKIP
        >>> [(g.value, g.lr_mode, g.acc_mean) for g in data.groups]  # doctest: +SKIP
    """
    import optuna

    from shoal.study import open_study, resolve_storage
    from shoal.study._tune import tune

    for name, v, low in (("seeds", seeds, 1), ("budget", budget, 0), ("epochs", epochs, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"The '{name}' setting must be an integer >= {low}. Got {v!r} instead.")
    if not (isinstance(default_lr, (int, float)) and 0 < default_lr < 10):
        raise ConfigError(f"The 'default_lr' setting must be a number in (0, 10). Got {default_lr!r} instead.")
    if search_engine not in ("population", "single"):
        raise ConfigError(f"The 'search_engine' must be 'population' or 'single'. Got {search_engine!r} instead.")
    values = choices(param, values)
    name = study or f"compare-{param}-{_data_name(data)}"
    fixed = _mlp_defaults(param)
    common = dict(data=data, preset="mlp", epochs=epochs, storage=storage, seed=seed, metric="val_loss")

    tuned: dict[str, float] = {}
    tuning_names: dict[str, str] = {}
    if budget:
        for v in values:
            tuning_names[str(v)] = f"{name}/lr-{v}"
            res = tune(**common, study=tuning_names[str(v)], strategy="qmc", trials=budget, engine=search_engine,
                       params={**fixed, param: v, "lr": {"low": LR_RANGE[0], "high": LR_RANGE[1], "log": True}},
                       progress=progress, console=console)
            if res.best_params is None:
                raise ConfigError(f"No learning-rate trial for {param}={v} finished; see `shoal show --study "
                                  f"{tuning_names[str(v)]}` for the reasons.")
            tuned[str(v)] = float(res.best_params["lr"])

    runs = [(v, mode, lr, r) for v in values
            for mode, lr in ((("tuned", tuned[str(v)]),) if budget else ()) + (("default", float(default_lr)),)
            for r in range(seeds)]
    url = resolve_storage(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    final = open_study(url, name, "minimize")
    from shoal.study._runner import counted

    have = set()
    for t in final.get_trials(deepcopy=False):
        tag = t.user_attrs.get("compare")
        if tag and (t.state.name == "WAITING" or counted(t)):
            have.add((str(tag["value"]), tag["lr_mode"], float(tag["lr"]), tag["replicate"]))
    for v, mode, lr, r in runs:
        if (str(v), mode, lr, r) not in have:
            final.enqueue_trial({param: v, "lr": lr}, user_attrs={
                "compare": {"param": param, "value": v, "lr_mode": mode, "lr": lr, "replicate": r}})
    final.set_user_attr("compare", {"param": param, "values": values, "data": data, "seeds": seeds, "budget": budget,
                                    "epochs": epochs, "default_lr": float(default_lr), "tuned_lr": tuned,
                                    "tuning_studies": tuning_names, "seed": seed})
    trials = final.get_trials(deepcopy=False)
    waiting = sum(1 for t in trials if t.state.name == "WAITING")
    if waiting:
        # Each final run trains alone (single engine) so that its seconds are its own.
        tune(**common, study=name, strategy="random", trials=sum(1 for t in trials if counted(t)) + waiting,
             engine="single", params={**fixed, param: list(values), "lr": {"low": 1e-6, "high": 10.0, "log": True}},
             progress=progress, console=console)
    return load_comparison(storage, name, target_loss=target_loss)


def _data_name(data: str) -> str:
    import re
    from pathlib import Path

    text = str(data)
    if ":" in text:  # mnist:/data/mnist-10k -> mnist-10k; fashion-mnist:/data/x -> fashion-mnist-x
        kind, _, folder = text.partition(":")
        name = Path(folder).name
        text = name if name.startswith(kind) else f"{kind}-{name}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(text).stem if "." in Path(text).name else text)


def t_interval(xs: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` confidence interval of the mean of ``xs`` (Student's t); None below 2 values."""
    if len(xs) < 2:
        return None
    from scipy import stats

    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def _first_at_or_below(curve: list[float], target: float) -> int | None:
    for i, v in enumerate(curve):
        if v is not None and v <= target:
            return i
    return None


def load_comparison(storage: str | None, study: str, *, target_loss: float | None = None) -> ComparisonData:
    """Read a stored comparison into ``ComparisonData`` (no training)."""
    import numpy as np

    from shoal.report._load import open_stored_study, read_trials
    from shoal.study import resolve_storage

    st = open_stored_study(storage, study)
    settings = dict(st.user_attrs.get("compare") or {})
    if not settings:
        raise ConfigError(f"The study {study!r} is not a comparison (no 'compare' attribute); "
                          "run `shoal compare` to make one.")
    url = resolve_storage(storage)
    trials = read_trials(st, url if isinstance(url, str) else None)
    by_number = {t.number: t for t in trials}
    tuned_lr = settings.get("tuned_lr") or {}

    def expected_lr(key: tuple[str, str]) -> float | None:
        return float(settings["default_lr"]) if key[1] == "default" else tuned_lr.get(key[0])

    groups: dict[tuple[str, str], list] = {}
    lrs: dict[tuple[str, str], float] = {}
    values_by_key: dict[str, Any] = {}
    for t in trials:
        tag = t.user_attrs.get("compare")
        retry = t.user_attrs.get("retry_of")
        while tag is None and isinstance(retry, int) and retry in by_number:  # a resumed run keeps its tag
            tag = by_number[retry].user_attrs.get("compare")
            retry = by_number[retry].user_attrs.get("retry_of")
        if not tag or t.state in ("running", "waiting") or t.fail_reason == "interrupted":
            continue
        key = (str(tag["value"]), tag["lr_mode"])
        if float(tag["lr"]) != expected_lr(key):  # runs of an earlier comparison with another lr
            continue
        values_by_key[key[0]] = tag["value"]
        lrs[key] = float(tag["lr"])
        groups.setdefault(key, []).append(t)

    stats_in: list[tuple[tuple[str, str], list, np.ndarray | None]] = []
    for key, ts in groups.items():
        ok = [t for t in ts if t.state == "complete" and t.curves.get("val_loss")]
        if ok:
            n = min(len(t.curves["val_loss"]) for t in ok)
            stats_in.append((key, ts, np.array([t.curves["val_loss"][:n] for t in ok], dtype=float)))
        else:
            stats_in.append((key, ts, None))
    if target_loss is None:
        lows = [float(np.nanmin(np.nanmean(m, axis=0))) for _, _, m in stats_in if m is not None]
        target_loss = float(np.median(lows)) if lows else None

    order = [str(v) for v in settings.get("values", [])]
    out = []
    for key, ts, m in sorted(stats_in, key=lambda x: (order.index(x[0][0]) if x[0][0] in order else len(order),
                                                       x[0][1] != "tuned")):
        ok = [t for t in ts if t.state == "complete" and t.curves.get("val_loss")]
        failed = len(ts) - len(ok)
        if m is None:
            out.append(GroupStats(values_by_key[key[0]], key[1], lrs[key], len(ts), failed, [], [], [], [], [], [], [],
                                  None, None, None, [], [], []))
            continue
        n = m.shape[1]
        train = np.array([t.curves.get("train_loss", [math.nan] * n)[:n] for t in ok], dtype=float)
        accs = [float(t.curves["val_acc"][n - 1]) for t in ok if t.curves.get("val_acc")]
        e2t, s2t, total = [], [], []
        for t in ok:
            secs = np.cumsum(np.asarray(t.curves.get("seconds") or [math.nan] * n, dtype=float))
            i = _first_at_or_below(t.curves["val_loss"], target_loss) if target_loss is not None else None
            e2t.append(None if i is None else i + 1)
            s2t.append(None if i is None or i >= len(secs) else float(secs[i]))
            total.append(float(secs[-1]) if len(secs) else math.nan)
        out.append(GroupStats(
            value=values_by_key[key[0]], lr_mode=key[1], lr=lrs[key], runs=len(ts), failed=failed,
            epochs=list(range(1, n + 1)), val_loss_mean=_list(np.nanmean(m, axis=0)),
            val_loss_std=_list(np.nanstd(m, axis=0, ddof=1) if len(ok) > 1 else np.zeros(n)),
            val_loss_min=_list(np.nanmin(m, axis=0)), val_loss_max=_list(np.nanmax(m, axis=0)),
            train_loss_mean=_list(np.nanmean(train, axis=0)), final_acc=accs,
            acc_mean=sum(accs) / len(accs) if accs else None, acc_ci=_within_0_1(t_interval(accs)),
            final_loss_mean=float(np.nanmean(m[:, -1])), epochs_to_target=e2t, seconds_to_target=s2t,
            seconds_total=total,
        ))
    tuning = {}
    for v, tname in (settings.get("tuning_studies") or {}).items():
        try:
            ts = read_trials(open_stored_study(storage, tname), url if isinstance(url, str) else None)
        except ConfigError:
            continue
        tuning[v] = sorted((float(t.config["lr"]), t.value) for t in ts if t.value is not None and "lr" in t.config)
    return ComparisonData(st.study_name, str(settings.get("param")), list(settings.get("values", [])), settings,
                          target_loss, out, tuning)


def _list(a) -> list[float]:
    return [float(x) for x in a]


def _within_0_1(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    """An accuracy's interval, cut to what an accuracy can be (two seeds give wide t-intervals)."""
    return None if ci is None else (max(0.0, ci[0]), min(1.0, ci[1]))

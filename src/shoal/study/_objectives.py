"""Objectives by name, several at once, and limits (constraints) on any measure of a trial.

Every finished trial records its *measures* (user attribute ``measures``): validation loss,
accuracy, balanced accuracy and F1 (classification) or R² and MSE (regression), training seconds,
seconds per epoch, parameter count, estimated memory, the generalization gap, and with k-fold the
spread over folds (``<name>_std``). Any of them can be the objective (``metric="val_f1"``), several
at once (``metric="val_acc,train_seconds"``: an Optuna multi-objective study whose Pareto front
shoal shows), or a limit (``constraints=["params<=100000"]``: Optuna's constraints, so the
sampler steers away from infeasible configurations).

Measures known from the configuration alone (``params``, ``memory_mb``, ``latency_ms``) are
checked before training: a configuration over such a limit is never trained; it is recorded as
COMPLETE with the worst possible value (+inf when minimizing, -inf when maximizing), its
constraint values and ``infeasible_before_training``, so that samplers rank it last.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from shoal._errors import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["MEASURES", "Constraint", "Measure", "feasible", "pareto_front", "parse_constraints",
           "parse_objectives", "pick"]


@dataclass(frozen=True)
class Measure:
    name: str
    direction: str  # "minimize" or "maximize"
    task: str | None  # "classification", "regression", or None (any task)
    doc: str
    static: bool = False  # known from the configuration alone, before training


MEASURES = {m.name: m for m in (
    Measure("val_loss", "minimize", None, "validation loss (cross entropy; MSE of standardized targets)"),
    Measure("val_acc", "maximize", "classification", "validation accuracy"),
    Measure("val_balanced_acc", "maximize", "classification", "validation balanced accuracy (mean recall per class)"),
    Measure("val_f1", "maximize", "classification", "validation macro F1"),
    Measure("val_r2", "maximize", "regression", "validation R² (averaged over targets)"),
    Measure("val_mse", "minimize", "regression", "validation mean squared error, in the target's units"),
    Measure("train_loss", "minimize", None, "training loss of the last epoch"),
    Measure("train_acc", "maximize", "classification", "training accuracy of the last epoch"),
    Measure("gap", "minimize", None, "generalization gap: validation loss minus training loss"),
    Measure("acc_gap", "minimize", "classification", "generalization gap: training minus validation accuracy"),
    Measure("train_seconds", "minimize", None, "seconds of training (a population member: its share of the "
                                               "population's time, by multiply-adds)"),
    Measure("epoch_seconds", "minimize", None, "training seconds per epoch"),
    Measure("params", "minimize", None, "number of trainable parameters", static=True),
    Measure("memory_mb", "minimize", None, "estimated training memory in MiB (weights, optimizer state, "
                                           "activations of one batch)", static=True),
    Measure("latency_ms", "minimize", None, "inference latency for one example, milliseconds (median of "
                                            "20 runs on the training device)", static=True),
)}

ALIASES = {"loss": "val_loss", "accuracy": "val_acc", "acc": "val_acc", "balanced_acc": "val_balanced_acc",
           "balanced_accuracy": "val_balanced_acc", "f1": "val_f1", "r2": "val_r2", "mse": "val_mse",
           "seconds": "train_seconds", "time": "train_seconds", "latency": "latency_ms", "memory": "memory_mb",
           "size": "params", "parameters": "params"}

# Measures averaged over folds from each fold's last epoch record
_EPOCH = ("val_loss", "val_acc", "val_balanced_acc", "val_f1", "val_r2", "val_mse", "train_loss", "train_acc")


def resolve(name: str, where: str = "the 'metric' setting") -> str:
    """The canonical measure name for ``name`` (aliases, ``<name>_std``); ConfigError if unknown."""
    name = str(name).strip()
    name = ALIASES.get(name, name)
    base = name[:-4] if name.endswith("_std") else name
    base = ALIASES.get(base, base)
    if base in MEASURES and (name == base or not MEASURES[base].static):
        return base + ("_std" if name.endswith("_std") else "")
    # the closest measure by its own name, else by an alias (named as the measure it stands for)
    close = difflib.get_close_matches(name, list(MEASURES), n=1) or \
        [ALIASES[a] for a in difflib.get_close_matches(name, list(ALIASES), n=1)]
    hint = f" Did you mean '{close[0]}'?" if close else ""
    if ":" in name:  # "module:function": the user's own objective, which tune takes from Python
        hint = (" The metric names a measure of shoal's training; to tune your own function, pass it from "
                "Python (shoal.tune(fn, space=...)), or babysit it (shoal babysit --objective module:fn).")
    raise ConfigError(f"Unknown measure {name!r} in {where}.{hint} Known measures: {', '.join(MEASURES)} "
                      f"(and '<measure>_std', the spread over folds, with k-fold); short names: "
                      f"{', '.join(f'{a}={m}' for a, m in ALIASES.items())}.")


def direction_of(name: str) -> str:
    """``maximize`` or ``minimize`` (a spread over folds is always minimized)."""
    return "minimize" if name.endswith("_std") else MEASURES[name].direction


def parse_objectives(value: str | Sequence[str]) -> list[str]:
    """``"val_acc,train_seconds"`` or a list -> canonical names, in order, each once.

    Example:
        >>> parse_objectives("accuracy, seconds")
        ['val_acc', 'train_seconds']
    """
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not items or any(not isinstance(v, str) for v in items):
        raise ConfigError(f"The 'metric' setting must name one measure or several, e.g. 'val_acc' or "
                          f"'val_acc,train_seconds'. Got {value!r} instead.")
    names = [resolve(v) for v in items if v.strip()]
    if not names:
        raise ConfigError(f"The 'metric' setting is empty. Name a measure, e.g. val_loss. Got {value!r}.")
    if len(set(names)) != len(names):
        raise ConfigError(f"The 'metric' setting names a measure twice: {value!r}. Name each objective once.")
    return names


@dataclass(frozen=True)
class Constraint:
    """A limit on one measure: ``params<=100000``; feasible when ``violation(value) <= 0``."""

    measure: str
    op: str  # "<=" or ">="
    limit: float

    @property
    def key(self) -> str:
        return f"{self.measure}{self.op}{self.limit:g}"

    def violation(self, value: float | None) -> float:
        """By how much ``value`` breaks the limit (<= 0: within it), in the measure's units."""
        if value is None or not math.isfinite(float(value)):
            return math.inf
        return float(value) - self.limit if self.op == "<=" else self.limit - float(value)


_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*$")


def parse_constraints(values: Iterable[str] | str | None) -> list[Constraint]:
    """``["params<=1e5", "epoch_seconds<2"]`` -> constraints (``<`` reads as ``<=``).

    Example:
        >>> parse_constraints("params<=1e5")[0].key
        'params<=100000'
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    out = []
    for text in values:
        m = _CONSTRAINT.match(str(text)) if isinstance(text, str) else None
        if m is None:
            raise ConfigError(f"A constraint must read '<measure> <= <number>' or '<measure> >= <number>' ('<' and "
                              f"'>' read the same), e.g. 'params<=100000' or 'epoch_seconds<=2'. Got {text!r} instead.")
        try:
            limit = float(m.group(3).replace("_", ""))
        except ValueError:
            raise ConfigError(f"The limit in the constraint {text!r} is not a number.") from None
        if not math.isfinite(limit):
            raise ConfigError(f"The limit in the constraint {text!r} must be a finite number.")
        out.append(Constraint(resolve(m.group(1), f"the constraint {text!r}"), "<=" if m.group(2).startswith("<") else ">=", limit))
    return out


def check_measures(names: Iterable[str], task: str, folds: int | None, what: str = "metric") -> None:
    """Every measure named exists for this task (and ``_std`` only with k-fold)."""
    for name in names:
        base = name[:-4] if name.endswith("_std") else name
        need = MEASURES[base].task
        if need is not None and need != task:
            fits = [m for m, v in MEASURES.items() if v.task in (None, task) and not v.static][:6]
            raise ConfigError(f"The {what} {name!r} needs a {need} target, but the data set is a {task} one. "
                              f"Use one of: {', '.join(fits)}.")
        if name.endswith("_std") and not folds:
            raise ConfigError(f"The {what} {name!r} is the spread over k-fold folds; it needs --folds K (K >= 2).")


# ---------------------------------------------------------------------- computing measures
def static_measures(cfg: Mapping[str, Any], family: str, input_shape: Sequence[int], n_outputs: int,
                    folds: int = 1, latency: bool = False, device: Any = "cpu") -> dict[str, float]:
    """Measures known from the configuration: parameters, estimated memory, and (when asked) latency."""
    from shoal.engine._models import build_model
    from shoal.engine._packer import member_bytes

    model = build_model(family, tuple(input_shape), n_outputs, cfg, 0)
    out = {"params": float(sum(p.numel() for p in model.parameters() if p.requires_grad)),
           "memory_mb": folds * member_bytes(cfg, family, input_shape, n_outputs) / 2**20}
    if latency:
        out["latency_ms"] = latency_ms(model.to(device), input_shape, device)
    return out


def latency_ms(model: Any, input_shape: Sequence[int], device: Any = "cpu", reps: int = 20) -> float:
    """Median milliseconds of one forward pass on a single example, in eval mode."""
    import time

    import torch

    model.eval()
    x = torch.zeros((1, *input_shape), device=device)
    times = []
    with torch.no_grad():
        for i in range(reps + 3):
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 3:  # the first calls warm caches and allocators
                times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def epoch_measures(folds: Sequence[Sequence[Any]]) -> dict[str, float]:
    """Measures from each fold's epoch records (``EpochRecord``), cut to the shortest fold:
    the mean over folds of each validation and training measure at the last epoch, with its
    spread (``_std``, k-fold only); training seconds summed over epochs and folds."""
    n = min(len(records) for records in folds)
    if n == 0:
        return {}
    last = [records[n - 1] for records in folds]
    out: dict[str, float] = {}
    for name in _EPOCH:
        vals = [getattr(r, name, None) for r in last]
        if any(v is None for v in vals):
            continue
        out[name] = float(np.mean(vals))
        if len(folds) > 1:
            out[f"{name}_std"] = float(np.std(vals, ddof=1))
    out["gap"] = out["val_loss"] - out["train_loss"]
    if "val_acc" in out and "train_acc" in out:
        out["acc_gap"] = out["train_acc"] - out["val_acc"]
    seconds = float(sum(r.seconds for records in folds for r in records[:n]))
    out["train_seconds"] = seconds
    out["epoch_seconds"] = seconds / n
    return out


# ---------------------------------------------------------------------- reading a study
def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Within every limit (a trial of a study without constraints always is)."""
    return all(v <= 0 for v in trial.constraints.values())


def objectives_of(study: optuna.Study) -> list[str]:
    """The study's objective names, in the order of its values."""
    settings = study.user_attrs.get("shoal", {})
    names = settings.get("objectives") if isinstance(settings, dict) else None
    if names:
        return list(names)
    metric = settings.get("metric", "value") if isinstance(settings, dict) else "value"
    if len(study.directions) > 1:
        return [f"value{i}" for i in range(len(study.directions))]
    return [str(metric)]


def measure_of(trial: optuna.trial.FrozenTrial, name: str, objectives: Sequence[str] = ()) -> float | None:
    """A trial's measure by name: an objective value, a recorded measure, or a curve's last point."""
    if name in objectives and trial.values is not None:
        return float(trial.values[list(objectives).index(name)])
    measures = trial.user_attrs.get("measures", {})
    if name in measures:
        return float(measures[name])
    curve = trial.user_attrs.get("curves", {}).get(name)
    return float(curve[-1]) if curve else None


def pareto_front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The feasible, non-dominated complete trials with finite values, best first by the first objective."""
    front = [t for t in study.best_trials if all(math.isfinite(v) for v in t.values)]
    sign = 1 if study.directions[0].name == "MINIMIZE" else -1
    return sorted(front, key=lambda t: sign * t.values[0])


def pick(study: optuna.Study, by: str | None = None, where: Iterable[str] | str | None = None
         ) -> optuna.trial.FrozenTrial | None:
    """The best complete feasible trial by one measure among those meeting ``where``'s limits.

    ``pick(study, "val_acc", "epoch_seconds<=2")`` is "the best accuracy under 2 seconds per epoch".
    ``by`` defaults to the first objective. Returns None when no trial qualifies.
    """
    from optuna.trial import TrialState

    names = objectives_of(study)
    if by is None:
        by = names[0]
    elif by not in names:  # a measure that is not an objective (aliases resolved)
        by = resolve(by, "--by")
    direction = study.directions[names.index(by)].name.lower() if by in names else direction_of(by)
    limits = parse_constraints(where)
    best, best_value = None, None
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if not feasible(t) or "infeasible_before_training" in t.user_attrs:
            continue
        value = measure_of(t, by, names)
        if value is None or not math.isfinite(value):
            continue
        if any(c.violation(measure_of(t, c.measure, names)) > 0 for c in limits):
            continue
        if best is None or (value < best_value if direction == "minimize" else value > best_value):
            best, best_value = t, value
    return best

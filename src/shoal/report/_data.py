"""Plot data of a report: plain dataclasses, no plotting library.

The HTML report, the terminal tables and the dashboard all read a ``ReportData``; tests check its
numbers without rendering anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BestRow",
    "CurveSet",
    "GapRow",
    "GapRules",
    "History",
    "Importance",
    "InfeasibleRow",
    "LineageData",
    "ParamData",
    "ParetoData",
    "ReportData",
    "StageRow",
    "Timing",
    "TrialInfo",
]

@dataclass
class TrialInfo:
    """What the report needs of one trial, read once from the storage.

    ``start`` and ``end`` are seconds since the study's first trial started (None when unknown).
    ``value`` is the first objective (None unless complete and finite); ``values`` holds every
    objective of a complete trial, None where not finite (a trial found infeasible before training
    records the worst value, +-inf). ``feasible`` is None when the trial recorded no constraint.
    """

    number: int
    state: str  # complete, pruned, fail, running, waiting
    value: float | None
    config: dict[str, Any]
    curves: dict[str, list]
    seconds: float | None = None
    start: float | None = None
    end: float | None = None
    epochs_run: int | None = None
    stage: Any = None
    parent: int | None = None
    fail_reason: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # Optuna's sampled params (for importance)
    distributions: dict[str, Any] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)  # everything the trial recorded
    values: list[float | None] = field(default_factory=list)
    constraints: dict[str, float] | None = None  # Optuna's constraint values: feasible when every one <= 0
    feasible: bool | None = None


@dataclass
class History:
    """Objective value per complete trial (in trial-number order) and the best so far.

    With constraints, the best so far counts feasible trials only (None until the first one).
    """

    numbers: list[int]
    values: list[float]
    best: list[float | None]
    stages: list[Any]
    other_numbers: list[int]  # pruned, failed and infeasible-before-training trials: marks on the axis
    other_states: list[str]  # "pruned", "fail" or "infeasible"
    feasible: list[bool] = field(default_factory=list)  # per complete trial (all True without constraints)


@dataclass
class Curve:
    number: int
    state: str
    values: list[float]  # one per epoch, epoch 1 first
    color: Any  # the colouring hyperparameter's value (None when the trial lacks it)


@dataclass
class CurveSet:
    """The learning curves drawn (at most ``max_curves``: the best trials first, then evenly spread)."""

    metric: str
    color_by: str | None
    color_kind: str | None  # "numeric", "categorical" or None
    color_log: bool
    curves: list[Curve]
    total: int  # trials that have this curve
    note: str = ""
    failed: int = 0  # failed trials with this curve, not drawn (a diverged one would flatten the others)


@dataclass
class ParamData:
    """Sampled values of every varying parameter, per complete trial (None where inactive)."""

    numbers: list[int]
    objective: list[float]
    names: list[str]
    values: dict[str, list[Any]]
    kinds: dict[str, str]  # "numeric" or "categorical"
    logs: dict[str, bool]
    constant: dict[str, Any]  # parameters that never varied, with their value

    def present_in_all(self) -> list[str]:
        return [n for n in self.names if all(v is not None for v in self.values[n])]


@dataclass
class Importance:
    evaluator: str
    values: dict[str, float]  # highest first
    reason: str = ""  # why it is empty


@dataclass
class Contour:
    """The objective over the two most important parameters: interpolated grid plus the trials."""

    x: str
    y: str
    x_log: bool
    y_log: bool
    grid_x: list[float]
    grid_y: list[float]
    z: list[list[float | None]]  # z[row for grid_y][column for grid_x]
    points_x: list[float]
    points_y: list[float]
    points_value: list[float]
    x_ticks: list[str] | None = None  # category names when the axis is categorical
    y_ticks: list[str] | None = None
    method: str = "linear"  # "linear" interpolation, or "cell mean" for large studies


@dataclass
class BestRow:
    number: int
    value: float
    val_acc: float | None
    seconds: float | None
    epochs_run: int | None
    config: dict[str, Any]
    values: list[float | None] = field(default_factory=list)  # every objective (multi-objective studies)
    also: str = "val_acc"  # what ``val_acc`` holds: the final val_acc, or val_r2 for a regression trial


@dataclass
class GapRules:
    """When a trial is flagged.

    Attributes:
        overfit_ratio: overfitting when (val loss - train loss) > ratio x val loss at the end ...
        rise: ... and the final val loss is above its minimum by more than this share.
        underfit_share: underfitting when the final train accuracy is below this share of the
            study's best final train accuracy.
    """

    overfit_ratio: float = 0.3
    rise: float = 0.05
    underfit_share: float = 0.8


@dataclass
class GapRow:
    number: int
    state: str
    train_loss: float
    val_loss: float
    gap: float
    val_rising: bool
    train_acc: float | None
    flag: str  # "overfit", "underfit" or ""


@dataclass
class StageRow:
    stage: Any
    trials: int
    complete: int
    best_value: float | None
    best_number: int | None
    first: int
    last: int


@dataclass
class LineageData:
    """Parent -> child edges of forked trials (PBT exploit steps, babysitting forks)."""

    edges: list[tuple[int, int]]
    values: dict[int, float | None]  # every trial in an edge, with its value


@dataclass
class Timing:
    finished: int
    wall_seconds: float  # first start to last end, less the pauses between runs
    busy_seconds: float  # time with at least one trial running
    idle_seconds: float  # wall - busy: sampling, bookkeeping, waiting
    trial_seconds: float  # training seconds summed over trials (above wall time when they train together)
    configs_per_second: float | None  # None when every trial started and ended at the same instant
    mean_trial_seconds: float | None
    segments: list[tuple[int, float, float, str]]  # (number, start, end, state)
    runs: int = 1  # stretches of work split by pauses (nothing running for over RUN_GAP_S)
    between_runs_seconds: float = 0.0  # the pauses, left out of wall_seconds


@dataclass
class ParetoData:
    """A multi-objective study in objective space, and its Pareto front.

    The front is what Optuna's ``study.best_trials`` returns: the feasible complete trials that no
    other feasible trial dominates (at least as good in every objective, better in one).
    """

    objectives: list[str]
    directions: list[str]  # "maximize" or "minimize", per objective
    numbers: list[int]  # complete trials whose every objective is finite
    values: list[list[float]]  # values[i][k]: objective k of trial numbers[i]
    feasible: list[bool]
    front: list[int]  # trial numbers on the front, best first objective first
    configs: dict[int, dict[str, Any]]  # the configuration of every trial in ``numbers``
    dropped: int = 0  # complete trials left out: an objective is not finite (infeasible before training)
    spread: dict[int, dict[str, float]] = field(default_factory=dict)  # k-fold: objective -> its std over folds

    def front_values(self) -> dict[int, list[float]]:
        at = {n: i for i, n in enumerate(self.numbers)}
        return {n: self.values[at[n]] for n in self.front}


@dataclass
class InfeasibleRow:
    """A complete trial that broke a constraint: its values (None where not finite), each constraint
    value above 0 and, when the limit was known before training, the reason it never trained."""

    number: int
    values: list[float | None]
    violations: dict[str, float]
    reason: str = ""


@dataclass
class ReportData:
    """Everything one report shows, computed from a stored study.

    For a multi-objective study ``direction`` and ``metric`` are the first objective's (the sections
    that need one value use it) and ``pareto`` holds the front; ``objectives`` and ``directions``
    name every objective in order.
    """

    study_name: str
    direction: str
    metric: str
    settings: dict[str, Any]
    states: dict[str, int]
    trials: list[TrialInfo]
    history: History
    curves: CurveSet
    params: ParamData
    importance: Importance
    contour: Contour | None
    contour_reason: str
    best: list[BestRow]
    gaps: list[GapRow]
    gap_rules: GapRules
    stages: list[StageRow] = field(default_factory=list)
    lineage: LineageData | None = None
    timing: Timing | None = None
    objectives: list[str] = field(default_factory=list)
    directions: list[str] = field(default_factory=list)
    pareto: ParetoData | None = None
    objective_importance: dict[str, Importance] = field(default_factory=dict)  # per objective (multi-objective)
    constraints: list[str] = field(default_factory=list)  # the limits as the user set them, e.g. "params<=100000"
    constrained: bool = False  # some trial recorded a constraint
    infeasible: list[InfeasibleRow] = field(default_factory=list)
    # a warm-started study: where it started from, and how each earlier best configuration fared here
    # (rows of ``shoal.study._warm.compare``: old_trial, old_rank, old_value, new_trial, new_value, new_rank, of)
    warm_source: dict[str, Any] | None = None
    warm: list[dict[str, Any]] = field(default_factory=list)
    # coarse-to-fine: each stage's strategy, size and the narrowing it searched (the study's ``stages``)
    stage_plan: list[dict[str, Any]] = field(default_factory=list)
    # successive halving / Hyperband: [bracket, rung epoch, trials that reached it, kept, best value there]
    rungs: list[list[Any]] = field(default_factory=list)

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1


# Parameters listed first, when present (the same order as the summary tables).
KEY_PARAMS = ("optimizer", "lr", "batch_size", "depth", "width", "conv_layers", "channels", "dropout")


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None

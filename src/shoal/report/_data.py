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
    "LineageData",
    "ParamData",
    "ReportData",
    "StageRow",
    "Timing",
    "TrialInfo",
]

@dataclass
class TrialInfo:
    """What the report needs of one trial, read once from the storage.

    ``start`` and ``end`` are seconds since the study's first trial started (None when unknown).
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


@dataclass
class History:
    """Objective value per complete trial (in trial-number order) and the best so far."""

    numbers: list[int]
    values: list[float]
    best: list[float]
    stages: list[Any]
    other_numbers: list[int]  # pruned and failed trials, drawn as marks on the axis
    other_states: list[str]


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
    wall_seconds: float  # first start to last end
    busy_seconds: float  # time with at least one trial running
    idle_seconds: float  # wall - busy: sampling, bookkeeping, waiting
    trial_seconds: float  # training seconds summed over trials (above wall time when they train together)
    configs_per_second: float | None  # None when every trial started and ended at the same instant
    mean_trial_seconds: float | None
    segments: list[tuple[int, float, float, str]]  # (number, start, end, state)


@dataclass
class ReportData:
    """Everything one report shows, computed from a stored study."""

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


# Parameters listed first, when present (the same order as the summary tables).
KEY_PARAMS = ("optimizer", "lr", "batch_size", "depth", "width", "conv_layers", "channels", "dropout")


def _float(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None

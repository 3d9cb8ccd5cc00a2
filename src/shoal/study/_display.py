"""What a person sees in the terminal: a live progress bar, then a summary table."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from rich.console import Console

__all__ = ["Progress", "summary_table", "trial_row"]

# Parameters shown first in tables, when present; the rest follow in space order.
KEY_PARAMS = ("optimizer", "lr", "batch_size", "depth", "width", "conv_layers", "channels", "dropout")


class Progress:
    """A rich progress bar over trials: done / total, best so far, elapsed and time left."""

    def __init__(self, total: int | None, direction: str | list[str], metric: str, *, console: Console | None = None,
                 enabled: bool = True) -> None:
        directions = [direction] if isinstance(direction, str) else list(direction)
        self.direction = directions[0]
        self.signs = [1.0 if d == "minimize" else -1.0 for d in directions]
        self.metric = metric
        self.best: float | None = None
        self.front: list[tuple] = []  # several objectives: the non-dominated points so far (minimized)
        self.enabled = enabled
        self.failed = 0
        self.interrupted = 0
        self.pruned = 0
        self.deadline: float | None = None  # time.monotonic() of the timeout: "left" counts down to it
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn
        from rich.progress import TimeElapsedColumn

        self._progress = RichProgress(
            TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"), TextColumn("[dim]elapsed"), TimeElapsedColumn(),
            _left_column(self), console=console, transient=False,
        )
        self._task = self._progress.add_task("tune", total=total, completed=0, best="best: -")

    def __enter__(self) -> Progress:
        if self.enabled:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._progress.__exit__(*exc)

    def resume(self, study: optuna.Study, done: int) -> None:
        """Start from what the storage already holds: ``done`` counted trials and their best."""
        for t in study.get_trials(deepcopy=False):
            self._consider(t)
        if self.enabled:  # a study already past this run's budget shows 12/12, not 12/10
            total = self._progress.tasks[0].total
            self._progress.update(self._task, completed=done, total=None if total is None else max(total, done))
        self._refresh()

    def _consider(self, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.trial import TrialState

        from shoal.study._runner import INTERRUPTED

        if trial.state == TrialState.FAIL and trial.user_attrs.get("fail_reason") == INTERRUPTED:
            self.interrupted += 1  # stopped by Ctrl-C or a kill: run again, not a failure of its own
        elif trial.state == TrialState.FAIL:
            self.failed += 1
        elif trial.state == TrialState.PRUNED:
            self.pruned += 1
        if trial.state != TrialState.COMPLETE or trial.values is None:
            return
        if any(v > 0 for v in trial.constraints.values()) or not all(math.isfinite(v) for v in trial.values):
            return  # outside a limit: it is not a best
        if len(self.signs) > 1:
            p = tuple(s * v for s, v in zip(self.signs, trial.values))
            if not any(_dominates(q, p) or q == p for q in self.front):
                self.front = [q for q in self.front if not _dominates(p, q)] + [p]
            return
        better = self.best is None or (trial.value < self.best if self.direction == "minimize" else trial.value > self.best)
        if better:
            self.best = trial.value

    def _refresh(self) -> None:
        if not self.enabled:
            return
        best = "-" if self.best is None else f"{self.best:.4g}"
        extra = "".join(
            f" [dim]{n} {what}[/]" for n, what in ((self.pruned, "pruned"), (self.failed, "failed"),
                                                  (self.interrupted, "interrupted")) if n
        )
        if len(self.signs) > 1:
            self._progress.update(self._task, best=f"Pareto front: [green]{len(self.front)}[/] trials{extra}")
            return
        self._progress.update(self._task, best=f"best {self.metric}: [green]{best}[/]{extra}")

    def note(self, text: str) -> None:
        """A message above the bar (a new stage and its narrowed ranges, ...)."""
        if self.enabled:
            self._progress.console.print(text, highlight=False)

    def stage(self, index: int, strategy: str, trials: int, space: str) -> None:
        """Coarse-to-fine: stage ``index`` starts; show the space it searches. Numbered as its trials'
        ``stage`` attribute and the report number it (the wide first stage is 0)."""
        lines = "\n".join(f"  {line}" for line in space.splitlines())
        self.note(f"[bold]stage {index}[/]: {strategy}, {trials} trials, in the narrowed space:\n{lines}")

    def finished(self, trial: optuna.trial.FrozenTrial) -> None:
        from shoal.study._runner import counted

        self._consider(trial)
        if self.enabled:
            if counted(trial):
                self._progress.advance(self._task)
            self._refresh()


def time_left(estimate: float | None, deadline: float | None, now: float) -> tuple[float | None, bool]:
    """Seconds left: the trials' pace estimate, or the time to the deadline when that comes first
    (then True: the timeout, not the budget, ends the run)."""
    if deadline is None:
        return estimate, False
    to_deadline = max(0.0, deadline - now)
    if estimate is None or to_deadline < estimate:
        return to_deadline, True
    return estimate, False


def _left_column(progress: Progress):
    """rich's time-remaining column with its label: "left" at the trials' pace, or "timeout" counting
    down to the progress bar's deadline (``--timeout``) when that comes first."""
    import time
    from datetime import timedelta

    from rich.progress import TimeRemainingColumn
    from rich.text import Text

    class Left(TimeRemainingColumn):
        def render(self, task):
            seconds, by_deadline = time_left(task.time_remaining, progress.deadline, time.monotonic())
            if not by_deadline or task.finished:
                return Text.assemble(("left ", "dim"), super().render(task))
            return Text.assemble(("timeout ", "dim"), (str(timedelta(seconds=int(seconds))), "progress.remaining"))

    return Left()


def _dominates(a: tuple, b: tuple) -> bool:
    """``a`` is no worse than ``b`` everywhere and better somewhere (both minimized)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.2e}" if (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def trial_row(t: optuna.trial.FrozenTrial, params: list[str], values: int = 1, acc: bool = True) -> list[str]:
    curves = t.user_attrs.get("curves", {})
    acc_curve = curves.get("val_acc", [])
    config = t.user_attrs.get("config", t.params)
    shown = list(t.values) if t.values is not None else [None] * values
    return [
        str(t.number),
        *["-" if v is None else _fmt(v) for v in shown[:values]],
        *([_fmt(acc_curve[-1]) if acc_curve else "-"] if acc else []),
        # training seconds (a population member's share), else the trial's wall time
        _fmt(t.user_attrs.get("measures", {}).get("train_seconds", t.user_attrs.get("seconds", math.nan))),
        *[_fmt(config[p]) if p in config else "" for p in params],
    ]


def summary_table(study: optuna.Study, *, top: int = 5, metric: str = "value"):
    """The best ``top`` complete trials as a rich Table, with their key parameters; with several
    objectives, the Pareto front (up to ``max(top, 10)`` of its trials). Trials outside a limit
    (constraints) are never listed as best."""
    from optuna.trial import TrialState
    from rich.table import Table

    from shoal.study._objectives import feasible, objectives_of, pareto_front

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]
    trials = [t for t in complete if feasible(t) and all(math.isfinite(v) for v in t.values)]
    outside = len(complete) - len(trials)
    note = f"; {outside} outside the limits" if outside else ""
    if len(study.directions) > 1:
        columns = objectives_of(study)
        front = pareto_front(study)
        shown = front[: max(top, 10)]
        title = f"Pareto front: {len(front)} of {len(complete)} complete trials ({study.study_name}){note}"
    else:
        columns = [metric]
        trials.sort(key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
        shown = trials[:top]
        title = f"best {len(shown)} of {len(complete)} complete trials ({study.study_name}){note}"
    names: list[str] = []
    for t in shown:
        for p in t.user_attrs.get("config", t.params):
            if p not in names:
                names.append(p)
    names.sort(key=lambda p: (KEY_PARAMS.index(p) if p in KEY_PARAMS else len(KEY_PARAMS)))
    names = names[:6]
    table = Table(title=title)
    # val_acc beside another metric, where the trials recorded one (not for regression)
    has_acc = any(t.user_attrs.get("curves", {}).get("val_acc") for t in shown)
    extra = ["val_acc"] if columns[0] != "val_acc" and len(columns) == 1 and has_acc else []
    for col in ("#", *columns, *extra, "train s", *names):
        table.add_column(col, justify="right", no_wrap=True, min_width=3 if col == "#" else min(max(len(col), 6), 9))
    for t in shown:
        table.add_row(*trial_row(t, names, len(columns), acc=bool(extra)))
    return table

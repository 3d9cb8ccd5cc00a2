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

    def __init__(self, total: int, direction: str, metric: str, *, console: Console | None = None,
                 enabled: bool = True) -> None:
        self.direction = direction
        self.metric = metric
        self.best: float | None = None
        self.enabled = enabled
        self.failed = 0
        self.pruned = 0
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn
        from rich.progress import TimeElapsedColumn, TimeRemainingColumn

        self._progress = RichProgress(
            TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"), TextColumn("[dim]elapsed"), TimeElapsedColumn(),
            TextColumn("[dim]left"), TimeRemainingColumn(), console=console, transient=False,
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
        if self.enabled:
            self._progress.update(self._task, completed=done)
        self._refresh()

    def _consider(self, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.trial import TrialState

        if trial.state == TrialState.FAIL:
            self.failed += 1
        elif trial.state == TrialState.PRUNED:
            self.pruned += 1
        if trial.state != TrialState.COMPLETE or trial.value is None:
            return
        better = self.best is None or (trial.value < self.best if self.direction == "minimize" else trial.value > self.best)
        if better:
            self.best = trial.value

    def _refresh(self) -> None:
        if not self.enabled:
            return
        best = "-" if self.best is None else f"{self.best:.4g}"
        extra = "".join(
            f" [dim]{n} {what}[/]" for n, what in ((self.pruned, "pruned"), (self.failed, "failed")) if n
        )
        self._progress.update(self._task, best=f"best {self.metric}: [green]{best}[/]{extra}")

    def note(self, text: str) -> None:
        """A message above the bar (a new stage and its narrowed ranges, ...)."""
        if self.enabled:
            self._progress.console.print(text, highlight=False)

    def stage(self, index: int, strategy: str, trials: int, space: str) -> None:
        """Coarse-to-fine: stage ``index`` starts; show the space it searches."""
        lines = "\n".join(f"  {line}" for line in space.splitlines())
        self.note(f"[bold]stage {index + 1}[/]: {strategy}, {trials} trials, in the narrowed space:\n{lines}")

    def finished(self, trial: optuna.trial.FrozenTrial) -> None:
        from shoal.study._runner import counted

        self._consider(trial)
        if self.enabled:
            if counted(trial):
                self._progress.advance(self._task)
            self._refresh()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.2e}" if (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def trial_row(t: optuna.trial.FrozenTrial, params: list[str]) -> list[str]:
    curves = t.user_attrs.get("curves", {})
    acc = curves.get("val_acc", [])
    config = t.user_attrs.get("config", t.params)
    return [
        str(t.number),
        "-" if t.value is None else _fmt(t.value),
        _fmt(acc[-1]) if acc else "-",
        _fmt(t.user_attrs.get("seconds", math.nan)),
        *[_fmt(config[p]) if p in config else "" for p in params],
    ]


def summary_table(study: optuna.Study, *, top: int = 5, metric: str = "value"):
    """The best ``top`` complete trials as a rich Table, with their key parameters."""
    from optuna.trial import TrialState
    from rich.table import Table

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    reverse = study.direction.name == "MAXIMIZE"
    trials.sort(key=lambda t: t.value, reverse=reverse)
    shown = trials[:top]
    names: list[str] = []
    for t in shown:
        for p in t.user_attrs.get("config", t.params):
            if p not in names:
                names.append(p)
    names.sort(key=lambda p: (KEY_PARAMS.index(p) if p in KEY_PARAMS else len(KEY_PARAMS)))
    names = names[:6]
    table = Table(title=f"best {len(shown)} of {len(trials)} complete trials ({study.study_name})")
    for col in ("#", metric, "val_acc", "s", *names):
        table.add_column(col, justify="right", no_wrap=True, min_width=3 if col == "#" else min(max(len(col), 6), 9))
    for t in shown:
        table.add_row(*trial_row(t, names))
    return table

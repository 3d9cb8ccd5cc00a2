"""What the babysitter sees: per-epoch curves as a terminal chart, the learning rate, seconds per
epoch, the train-validation gap and an overfitting warning; events marked under the chart.

``snapshot`` computes the numbers (tested without rendering); ``render`` draws them with rich.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from shoal.panda._trainer import Trainer

__all__ = ["View", "line_chart", "overfitting_run", "snapshot"]

SERIES_STYLE = {"train": ("●", "cyan"), "val": ("○", "magenta")}
OVERFIT_EPOCHS = 2


def overfitting_run(train_loss: Sequence[float], val_loss: Sequence[float]) -> int:
    """How many of the last epochs in a row saw the validation loss rise while the train loss fell."""
    run = 0
    for i in range(len(val_loss) - 1, 0, -1):
        if val_loss[i] > val_loss[i - 1] and train_loss[i] < train_loss[i - 1]:
            run += 1
        else:
            break
    return run


def snapshot(trainer: Trainer) -> dict[str, Any]:
    """The numbers the view shows, from the trainer's records and events."""
    r = trainer.records
    tl, vl = [x.train_loss for x in r], [x.val_loss for x in r]
    run = overfitting_run(tl, vl)
    return {
        "epoch": trainer.epoch, "epochs": trainer.epochs, "step": trainer.step, "steps": trainer.steps_per_epoch,
        "lr": trainer.lr, "paused": trainer.paused, "stopped": trainer.stopped,
        "train_loss": tl, "val_loss": vl,
        "train_acc": [x.train_acc for x in r if x.train_acc is not None],
        "val_acc": [x.val_acc for x in r if x.val_acc is not None],
        "seconds": r[-1].seconds if r else None,
        "gap": (vl[-1] - tl[-1]) if r else None,
        "overfitting": run >= OVERFIT_EPOCHS, "overfit_epochs": run,
        "plateau_wait": None if trainer.plateau is None else (trainer.plateau.wait, trainer.plateau.patience),
        "marks": sorted({int(e["epoch"]) for e in trainer.events if e["what"] not in ("checkpoint",)}),
        "events": trainer.events[-4:],
    }


def line_chart(series: dict[str, Sequence[float]], *, width: int = 48, height: int = 8,
               marks: Sequence[int] = (), x_count: int | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """A small scatter chart: returns rows of (y label, [(char, style), ...]), the last row marking
    ``marks`` (1-based x positions, e.g. epochs with events) with ▲."""
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    n = x_count or max((len(s) for s in series.values()), default=0)
    if not values or n == 0:
        return []
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    cols = min(width, max(n, 1))
    grid = [[(" ", "")] * cols for _ in range(height)]

    def col(i: int) -> int:
        return 0 if n == 1 else round(i * (cols - 1) / (n - 1))

    for name, s in series.items():
        glyph, style = SERIES_STYLE.get(name, ("·", ""))
        for i, v in enumerate(s):
            if v is None or not math.isfinite(v):
                continue
            row = height - 1 - round((v - lo) / (hi - lo) * (height - 1))
            grid[row][col(i)] = (glyph, style)
    rows = []
    for r, cells in enumerate(grid):
        label = f"{hi:.3g}" if r == 0 else f"{lo:.3g}" if r == height - 1 else ""
        rows.append((label, cells))
    axis = [("─", "dim")] * cols
    for m in marks:
        if 1 <= m <= n:
            axis[col(m - 1)] = ("▲", "yellow")
    rows.append(("", axis))
    return rows


def _chart_text(title: str, series: dict[str, Sequence[float]], marks: Sequence[int], n: int):
    from rich.text import Text

    text = Text(f"{title}\n", style="bold")
    for label, cells in line_chart(series, marks=marks, x_count=n):
        text.append(f"{label:>8} │", style="dim")
        for ch, style in cells:
            text.append(ch, style=style or None)
        text.append("\n")
    return text


def render(snap: dict[str, Any], title: str = "") -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    n = max(len(snap["train_loss"]), 1)
    parts: list[Any] = []
    head = Text(title + "  ", style="bold")
    if snap["epoch"] >= snap["epochs"]:
        head.append(f"epoch {snap['epochs']}/{snap['epochs']} done  ")
    elif snap["stopped"]:
        head.append(f"stopped after epoch {snap['epoch']}/{snap['epochs']}  ")
    else:  # the epoch in progress, counted as events and logs count it
        head.append(f"epoch {snap['epoch'] + 1}/{snap['epochs']}  step {snap['step']}/{snap['steps']}  ")
    head.append(f"lr {snap['lr']:.3g}", style="green")
    if snap["seconds"] is not None:
        head.append(f"  {snap['seconds']:.2f} s/epoch")
    if snap["paused"]:
        head.append("  PAUSED", style="bold yellow")
    parts.append(head)
    if snap["train_loss"]:
        parts.append(_chart_text("loss  ● train  ○ validation  ▲ event", {"train": snap["train_loss"], "val": snap["val_loss"]},
                                 snap["marks"], n))
        if snap["val_acc"]:
            parts.append(_chart_text("accuracy", {"train": snap["train_acc"], "val": snap["val_acc"]}, snap["marks"], n))
        last = Text(f"train loss {snap['train_loss'][-1]:.4f}  val loss {snap['val_loss'][-1]:.4f}  gap {snap['gap']:+.4f}")
        if snap["val_acc"]:
            last.append(f"  val acc {snap['val_acc'][-1]:.4f}")
        parts.append(last)
    if snap["overfitting"]:
        parts.append(Text(f"overfitting: validation loss rose while train loss fell for {snap['overfit_epochs']} epochs",
                          style="bold red"))
    if snap["plateau_wait"] is not None:
        wait, patience = snap["plateau_wait"]
        parts.append(Text(f"plateau: {wait}/{patience} epochs without a lower validation loss", style="dim"))
    for e in snap["events"]:
        value = "" if e.get("value") is None else f" {e['value']:.3g}" if isinstance(e["value"], float) else f" {e['value']}"
        parts.append(Text(f"▲ epoch {e['epoch']} step {e['step']}: {e['what']}{value} -> lr {e['lr']:.3g}", style="yellow"))
    return Group(*parts)


class View:
    """A rich Live view of one trainer (disabled: does nothing)."""

    def __init__(self, title: str, *, console: Console | None = None, enabled: bool = True) -> None:
        self.title = title
        self.enabled = enabled
        self._live = None
        if enabled:
            from rich.live import Live

            self._live = Live(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> View:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            if not self._live.console.is_interactive:  # rich leaves a log's last line open there
                self._live.console.line()

    def refresh(self, trainer: Trainer) -> None:
        if self._live is not None:
            self._live.update(render(snapshot(trainer), self.title), refresh=True)

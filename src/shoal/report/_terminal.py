"""The report's findings as rich tables, for a terminal without a browser."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.report._html import best_table_rows, fmt, gap_summary, timing_rows

if TYPE_CHECKING:
    from rich.console import Console

    from shoal.report._data import ReportData

__all__ = ["print_report"]


def print_report(d: ReportData, console: Console, *, top: int = 5) -> None:
    """Print the history summary, importance, best configurations, gap flags, stages and timing."""
    from rich.table import Table

    states = ", ".join(f"{n} {s}" for s, n in sorted(d.states.items()))
    console.print(f"[bold]{d.study_name}[/]: {sum(d.states.values())} trials ({states}); {d.metric}, {d.direction}d")
    h = d.history
    if h.numbers:
        i = h.values.index(h.best[-1])
        first_within = next(k for k, b in enumerate(h.best) if abs(b - h.best[-1]) <= 0.01 * abs(h.best[-1]) + 1e-12)
        console.print(f"best {d.metric} [green]{fmt(h.best[-1])}[/] at trial {h.numbers[i]}; within 1% of it "
                      f"from trial {h.numbers[first_within]} on ({first_within + 1} of {len(h.numbers)} complete trials)")
    else:
        console.print("[yellow]No complete trial yet.[/]")

    if d.importance.values:
        table = Table(title=f"parameter importance ({d.importance.evaluator})")
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        table.add_column("")
        for name, v in list(d.importance.values.items())[:10]:
            table.add_row(name, f"{v:.3f}", "#" * max(1, round(v * 30)) if v > 0 else "")
        console.print(table)
    else:
        console.print(f"[dim]importance: {d.importance.reason}[/]")

    if d.best:
        header, rows = best_table_rows(d)
        keep = [0, 1, 2] + list(range(5, min(len(header), 11)))  # #, value, val_acc, then key parameters
        table = Table(title=f"best {min(top, len(rows))} configurations")
        for i in keep:
            table.add_column(header[i], justify="right", no_wrap=True, min_width=min(len(header[i]), 8))
        for row in rows[:top]:
            table.add_row(*[row[i] for i in keep])
        console.print(table)

    if d.gaps:
        console.print(gap_summary(d))
        flagged = [g for g in d.gaps if g.flag][:top]
        if flagged:
            table = Table(title="flagged trials")
            for col in ("#", "flag", "train loss", "val loss", "gap", "train acc"):
                table.add_column(col, justify="right")
            for g in flagged:
                style = "red" if g.flag == "overfit" else "blue"
                table.add_row(str(g.number), f"[{style}]{g.flag}[/]", fmt(g.train_loss), fmt(g.val_loss), fmt(g.gap),
                              fmt(g.train_acc))
            console.print(table)

    if d.stages:
        table = Table(title="stages")
        for col in ("stage", "trials", "complete", f"best {d.metric}", "best trial"):
            table.add_column(col, justify="right")
        for s in d.stages:
            table.add_row(str(s.stage), str(s.trials), str(s.complete), fmt(s.best_value), fmt(s.best_number))
        console.print(table)
    if d.lineage:
        console.print(f"{len(d.lineage.edges)} forked trials (PBT or babysitting lineage); see the HTML report.")

    rows = timing_rows(d)
    if rows:
        table = Table(title="timing")
        table.add_column("")
        table.add_column("", justify="right")
        for k, v in rows:
            table.add_row(k, v)
        console.print(table)

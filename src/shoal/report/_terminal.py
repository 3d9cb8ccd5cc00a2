"""The report's findings as rich tables, for a terminal without a browser."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.report._html import (FEW_FOR_IMPORTANCE, best_table_rows, constraints_summary, fmt, front_table_rows,
                                gap_summary, infeasible_table_rows, objectives_text, stage_plan_rows, timing_rows,
                                warm_rows, warm_summary)
from shoal.report._sections import param_label

if TYPE_CHECKING:
    from rich.console import Console

    from shoal.report._data import ReportData

__all__ = ["print_report"]


def print_report(d: ReportData, console: Console, *, top: int = 5, front: int = 20) -> None:
    """Print the history summary, the Pareto front (multi-objective), importance, best configurations,
    infeasible trials (constrained), gap flags, stages and timing."""
    from rich.table import Table

    states = ", ".join(f"{n} {s}" for s, n in sorted(d.states.items()))
    console.print(f"[bold]{d.study_name}[/]: {sum(d.states.values())} trials ({states}); {objectives_text(d)}")
    h = d.history
    best = [b for b in h.best if b is not None]
    if best and d.best:
        feasible = "feasible " if d.constrained else ""
        first = d.metric + (" (the first objective)" if d.multi else "")
        tol = 0.01 * abs(best[-1]) + 1e-12
        first_within = next(k for k, b in enumerate(h.best) if b is not None and abs(b - best[-1]) <= tol)
        console.print(f"best {feasible}{first} [green]{fmt(best[-1])}[/] at trial {d.best[0].number}; the search was "
                      f"within 1% of it after {first_within + 1} of its {len(h.numbers)} complete trials (trial "
                      f"{h.numbers[first_within]})")
    elif h.numbers:
        console.print("[yellow]No complete trial is feasible yet.[/]")
    else:
        console.print("[yellow]No complete trial yet.[/]")

    if d.pareto is not None:
        header, rows = front_table_rows(d)
        if rows:
            n_values = 1 + len(d.objectives) + sum(h.endswith(" std") for h in header)
            keep = list(range(min(len(header), n_values + 6)))  # #, objectives (and spreads), key parameters
            shown = min(front, len(rows))
            more = f", {shown} shown" if shown < len(rows) else ""
            console.print(_table(f"Pareto front: {len(rows)} trials{more} (best {d.objectives[0]} first)",
                                 header, rows[:shown], keep))
        else:
            console.print("[yellow]No Pareto front yet: no feasible complete trial with finite values.[/]")

    if d.constrained or d.constraints:
        console.print(constraints_summary(d))
        header, rows = infeasible_table_rows(d)
        if rows:
            console.print(_table("infeasible trials" + _of(min(top, len(rows)), len(rows)), header, rows[:top]))

    if d.warm:
        console.print(warm_summary(d), highlight=False)
        header, rows = warm_rows(d.warm, d.metric)
        console.print(_table("warm start: the earlier best configurations here", header, rows))

    per = {o: imp for o, imp in d.objective_importance.items() if imp.values}
    if len(per) > 1:
        table = Table(title=f"parameter importance per objective ({d.importance.evaluator})")
        table.add_column("parameter")
        for o in per:
            table.add_column(o, justify="right")
        names = list(dict.fromkeys(k for imp in per.values() for k in imp.values))
        for name in names[:10]:
            table.add_row(param_label(name), *[fmt(imp.values.get(name)) if name in imp.values else "-"
                                               for imp in per.values()])
        console.print(table)
    elif d.importance.values:
        table = Table(title=f"parameter importance ({d.importance.evaluator})")
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        table.add_column("")
        for name, v in list(d.importance.values.items())[:10]:
            table.add_row(param_label(name), f"{v:.3f}", "#" * max(1, round(v * 30)) if v > 0 else "")
        console.print(table)
    else:
        console.print(f"[dim]importance: {d.importance.reason}[/]")
    n_complete = len(d.history.numbers)
    if (per or d.importance.values) and n_complete < FEW_FOR_IMPORTANCE:
        console.print(f"[dim]importance from {n_complete} complete trials only: a hint, not a ranking "
                      f"(fewer than {FEW_FOR_IMPORTANCE})[/]")

    if d.best:
        header, rows = best_table_rows(d)
        keep = [i for i, h in enumerate(header) if h not in ("wall s", "epochs")][:9]  # #, values, key parameters
        by = f" by {d.metric}" if d.multi else ""
        console.print(_table(f"best {min(top, len(rows))} {'feasible ' if d.constrained else ''}configurations{by}",
                             header, rows[:top], keep))

    if d.gaps:
        console.print(gap_summary(d))
        every = [g for g in d.gaps if g.flag]
        flagged = every[:top]
        if flagged:
            table = Table(title="flagged trials" + _of(len(flagged), len(every)))
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
    if d.rungs:
        table = Table(title="successive halving: rungs")
        for col in ("bracket", "rung (epoch)", "reached", "kept", f"best {d.metric}"):
            table.add_column(col, justify="right")
        for r in d.rungs:
            table.add_row(fmt(r[0]), str(r[1]), str(r[2]), str(r[3]), fmt(r[4]))
        console.print(table)
    if d.stage_plan:
        table = Table(title="what each stage searched")
        for col in ("stage", "strategy", "trials", "parameter", "searched"):
            table.add_column(col)
        for row in stage_plan_rows(d):
            table.add_row(*row)
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


def _table(title: str, header: list[str], rows: list[list[str]], keep: list[int] | None = None):
    """A right-aligned rich table of ``rows`` (only the columns ``keep``, when given)."""
    from rich.table import Table

    keep = list(range(len(header))) if keep is None else keep
    table = Table(title=title)
    for i in keep:
        table.add_column(header[i], justify="right", no_wrap=True, min_width=min(len(header[i]), 8))
    for row in rows:
        table.add_row(*[row[i] for i in keep])
    return table


def _of(shown: int, total: int) -> str:
    """A table title's note when it lists only some rows (the HTML report lists them all)."""
    return f" ({shown} of {total}; the HTML report lists all)" if shown < total else ""

"""A comparison as one offline HTML page and as terminal tables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.report._compare import LR_RANGE
from shoal.report._html import PALETTE, _layout, _note, _table, fmt, page

if TYPE_CHECKING:
    from rich.console import Console

    from shoal.report._compare import ComparisonData

__all__ = ["COMPARE_SECTIONS", "print_comparison", "render_comparison", "summary_rows", "write_comparison"]

COMPARE_SECTIONS = (
    ("curves", "Validation loss over epochs (mean and spread over seeds)"),
    ("speed", "Convergence: epochs and seconds to the target loss"),
    ("accuracy", "Final validation accuracy with 95% confidence intervals"),
    ("tuning", "Learning-rate search per value"),
)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else None


def _colors(d: ComparisonData) -> dict[str, str]:
    return {str(v): PALETTE[i % len(PALETTE)] for i, v in enumerate(d.values)}


def summary_rows(d: ComparisonData) -> tuple[list[str], list[list[str]]]:
    """One row per (value, lr mode): the numbers the terminal and the page both show."""
    header = [d.param, "lr", "runs", "val loss", "val acc, 95% CI", "epochs to target", "s to target", "s/run"]
    rows = []
    for g in d.groups:
        reached = [e for e in g.epochs_to_target if e is not None]
        acc = "-" if g.acc_mean is None else f"{g.acc_mean:.4f}"
        if g.acc_ci:
            acc += f" ± {(g.acc_ci[1] - g.acc_ci[0]) / 2:.4f}"
        rows.append([
            str(g.value), f"{g.lr_mode} {g.lr:.3g}", f"{g.runs - g.failed}" + (f"+{g.failed} failed" if g.failed else ""),
            fmt(g.final_loss_mean), acc,
            f"{fmt(_mean(reached))} ({len(reached)}/{len(g.epochs_to_target)})" if g.epochs_to_target else "-",
            fmt(_mean(g.seconds_to_target)), fmt(_mean(g.seconds_total)),
        ])
    return header, rows


def _curves_fig(d: ComparisonData) -> dict:
    colors = _colors(d)
    traces = []
    for g in d.groups:
        if not g.epochs:
            continue
        c = colors.get(str(g.value), PALETTE[0])
        dash = "solid" if g.lr_mode == "tuned" else "dot"
        upper = [m + s for m, s in zip(g.val_loss_mean, g.val_loss_std)]
        # (the axis is log: a band edge at or below 0 would break the band; a tenth of the mean stands in)
        lower = [max(m - s, m / 10) for m, s in zip(g.val_loss_mean, g.val_loss_std)]
        traces.append({"type": "scatter", "mode": "lines", "x": g.epochs + g.epochs[::-1], "y": upper + lower[::-1],
                       "fill": "toself",
                       "fillcolor": _rgba(c, 0.15), "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False,
                       "legendgroup": g.label})
        traces.append({"type": "scatter", "mode": "lines+markers", "x": g.epochs, "y": g.val_loss_mean,
                       "name": g.label, "legendgroup": g.label, "line": {"color": c, "dash": dash},
                       "marker": {"size": 4}})
    shapes = []
    if d.target_loss is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": d.target_loss, "y1": d.target_loss,
                       "line": {"dash": "dash", "color": "#888", "width": 1}})
    most = max((len(g.epochs) for g in d.groups), default=0)
    xaxis = {"title": {"text": "epoch"}, **({"dtick": 1} if most <= 20 else {})}  # whole epochs, not 1.5
    return {"data": traces, "layout": _layout(height=480, shapes=shapes, xaxis=xaxis,
                                              yaxis={"title": {"text": "validation loss"}, "type": "log",
                                                     "dtick": 1})}


def _speed_fig(d: ComparisonData) -> dict:
    colors = _colors(d)
    groups = [g for g in d.groups if g.epochs]
    labels = [g.label for g in groups]
    e = [_mean(g.epochs_to_target) for g in groups]
    s = [_mean(g.seconds_to_target) for g in groups]
    return {"data": [{"type": "bar", "x": labels, "y": e, "name": "epochs", "yaxis": "y",
                      "marker": {"color": [colors.get(str(g.value), PALETTE[0]) for g in groups]}, "offsetgroup": 0},
                     {"type": "bar", "x": labels, "y": s, "name": "seconds", "yaxis": "y2", "offsetgroup": 1,
                      "marker": {"color": "#bbbbbb"}}],
            "layout": _layout(height=420, barmode="group", yaxis={"title": {"text": "epochs to target (mean)"}},
                              yaxis2={"title": {"text": "seconds to target (mean)"}, "overlaying": "y",
                                      "side": "right"}, legend={"orientation": "h"})}


def _accuracy_fig(d: ComparisonData) -> dict:
    colors = _colors(d)
    groups = [g for g in d.groups if g.acc_mean is not None]
    traces = [{"type": "scatter", "mode": "markers", "x": [g.label for g in groups], "y": [g.acc_mean for g in groups],
               "name": "mean", "marker": {"size": 10, "color": [colors.get(str(g.value), PALETTE[0]) for g in groups]},
               "error_y": {"type": "data", "symmetric": False,
                           # an accuracy is at most 1: so is the interval's upper end
                           "array": [(min(g.acc_ci[1], 1.0) - g.acc_mean) if g.acc_ci else 0 for g in groups],
                           "arrayminus": [(g.acc_mean - g.acc_ci[0]) if g.acc_ci else 0 for g in groups]}}]
    xs, ys = [], []
    for g in groups:
        xs += [g.label] * len(g.final_acc)
        ys += g.final_acc
    traces.append({"type": "scatter", "mode": "markers", "x": xs, "y": ys, "name": "each seed",
                   "marker": {"size": 5, "color": "#555", "symbol": "circle-open"}})
    return {"data": traces, "layout": _layout(height=420, yaxis={"title": {"text": "final validation accuracy"}})}


def _tuning_fig(d: ComparisonData) -> dict | None:
    if not d.tuning:
        return None
    colors = _colors(d)
    tuned = d.settings.get("tuned_lr") or {}
    traces = []
    for v, pts in d.tuning.items():
        c = colors.get(v, PALETTE[0])
        traces.append({"type": "scatter", "mode": "markers", "x": [p[0] for p in pts], "y": [p[1] for p in pts],
                       "name": v, "marker": {"color": c, "size": 7}})
        if v in tuned:
            best = min(pts, key=lambda p: p[1]) if pts else None
            if best:
                traces.append({"type": "scatter", "mode": "markers", "x": [best[0]], "y": [best[1]], "showlegend": False,
                               "marker": {"color": c, "size": 14, "symbol": "star"}, "name": f"{v} chosen"})
    return {"data": traces, "layout": _layout(height=420, xaxis={"title": {"text": "learning rate"}, "type": "log",
                                                                 "dtick": 1},
                                              yaxis={"title": {"text": "validation loss"}, "type": "log",
                                                     "dtick": 1})}


def render_comparison(d: ComparisonData) -> str:
    s = d.settings
    header, rows = summary_rows(d)
    target = "-" if d.target_loss is None else f"{d.target_loss:.4g}"
    figs = {"cmp-curves": _curves_fig(d), "cmp-speed": _speed_fig(d), "cmp-accuracy": _accuracy_fig(d)}
    tuning = _tuning_fig(d)
    body = {
        "curves": _note("Lines: mean over seeds; bands: mean +- one standard deviation; solid: tuned learning "
                        f"rate, dotted: the shared default ({fmt(s.get('default_lr'))}). Dashed grey: the target "
                        f"loss {target}.") + "{{fig:cmp-curves}}",
        "speed": _note(f"First epoch whose validation loss is at or below {target} (mean over the seeds that reach "
                       "it; reached/runs in brackets), and the training seconds up to it. Each final run trains "
                       "alone, so its seconds are its own.") + "{{fig:cmp-speed}}" + _table(header, rows),
        "accuracy": _note("Validation accuracy after the last epoch: mean with a 95% Student-t confidence "
                          "interval over the seeds; open circles are the single runs.") + "{{fig:cmp-accuracy}}",
        "tuning": (_note(f"Each value's learning rate searched with {s.get('budget')} trials (quasi-random, log "
                         f"scale, {LR_RANGE[0]:g} to {LR_RANGE[1]:g}); the star is the one used as 'tuned'.") + "{{fig:cmp-tuning}}")
        if tuning else _note("No learning-rate search (budget 0): every value ran at the default only."),
    }
    if tuning:
        figs["cmp-tuning"] = tuning
    sections = [(sid, head, body[sid]) for sid, head in COMPARE_SECTIONS]
    subtitle = (f"{s.get('param')} compared on {s.get('data')}: MLP preset with its default architecture, "
                f"{s.get('epochs')} epochs, {s.get('seeds')} seeds per setting; study {d.study_name}.")
    return page(f"shoal comparison: {s.get('param')}", subtitle, sections, figs)


def write_comparison(d: ComparisonData, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_comparison(d), encoding="utf-8")
    return out


def print_comparison(d: ComparisonData, console: Console) -> None:
    from rich.table import Table

    header, rows = summary_rows(d)
    target = "-" if d.target_loss is None else f"{d.target_loss:.4g}"
    table = Table(title=f"{d.param}: {d.settings.get('data')}, {d.settings.get('seeds')} seeds, target loss {target}")
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i in (1, 4))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    ranked = sorted((g for g in d.groups if g.acc_mean is not None), key=lambda g: -g.acc_mean)
    if ranked:
        best = ranked[0]
        overlap = [g.label for g in ranked[1:] if g.acc_ci and best.acc_ci and g.acc_ci[1] >= best.acc_ci[0]]
        tail = ""
        if len(ranked) > 1 and best.acc_ci is None:  # one seed per group: no interval to compare
            tail = "; with one seed per group there is no interval to tell it from the others (use --seeds 3 or more)"
        elif len(ranked) > 1:
            tail = (f"; its 95% interval overlaps {', '.join(overlap)}" if overlap else
                    "; no other interval overlaps its 95% interval")
        console.print(f"highest mean accuracy: [green]{best.label}[/] {best.acc_mean:.4f}{tail}")

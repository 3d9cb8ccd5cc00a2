"""The HTML report: plotly figures from a ``ReportData``, in one file that works offline.

plotly.js is embedded once in the page's head; each figure is a ``<div>`` plus a call to
``Plotly.newPlot``. Large studies stay fast: figures of many points use WebGL traces (``scattergl``;
small ones SVG, see ``WEBGL_FROM_POINTS``) and the learning curves of a colour group share one
trace, separated by gaps (None).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal._errors import MissingDependencyError
from shoal.report._sections import param_label

if TYPE_CHECKING:
    from shoal.report._data import ReportData

__all__ = ["fmt", "front_table_rows", "page", "render_html", "write_html", "write_report"]

SECTIONS = (
    ("history", "Optimization history"),
    ("curves", "Learning curves"),
    ("parallel", "Parallel coordinates"),
    ("slice", "Slice plots"),
    ("contour", "Contour of the two most important parameters"),
    ("importance", "Parameter importance"),
    ("best", "Best configurations"),
    ("gap", "Train-validation gap: over- and underfitting"),
    ("stages", "Stages, rungs and lineage"),
    ("timing", "Timing"),
)
# Plotly's default qualitative palette, so categories look the same in every figure.
PALETTE = ("#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880", "#FF97FF",
           "#FECB52")
VIRIDIS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
           "#fde725")
STATE_COLORS = {"complete": "#636efa", "pruned": "#FFA15A", "fail": "#EF553B", "running": "#aaaaaa",
                "waiting": "#dddddd"}
INFEASIBLE = "#b0b0b0"  # trials that broke a constraint, in every figure
FRONT = "#EF553B"  # the Pareto front
# Shown only when they apply: the front of a multi-objective study (first), the constraints of a
# constrained one (after the best configurations).
PARETO_SECTION = ("pareto", "Pareto front")
CONSTRAINTS_SECTION = ("constraints", "Constraints: infeasible trials")
WARM_SECTION = ("warm", "Warm start: did the earlier best settings survive?")
CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 2em; color: #222; }
nav a { margin-right: 1em; } h1 { margin-bottom: .2em; } section { margin-top: 2.5em; }
.note { color: #555; } .empty { color: #a33; font-style: italic; }
table { border-collapse: collapse; font-size: 90%; } td, th { border-bottom: 1px solid #ddd; padding: 3px 8px;
       text-align: right; white-space: nowrap; } th { background: #f4f4f4; } .scroll { overflow-x: auto; } .overfit { color: #c0392b; } .underfit { color: #2c6fbb; }
"""


def _plotly():
    try:
        import plotly.io as pio
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise MissingDependencyError(
            "The HTML report needs plotly. Install it with: pip install 'shoal[report]' "
            "(or use --no-html for the terminal tables only)."
        ) from None
    return pio, get_plotlyjs


def fmt(v: Any) -> str:
    """A short, readable number (or the value as text)."""
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        return f"{v:.2e}" if (abs(v) < 1e-3 or abs(v) >= 1e5) else f"{v:.4g}"
    return str(v)


# ------------------------------------------------------------------------------------------ figures
def _layout(title: str = "", **kw: Any) -> dict:
    base = {"title": {"text": title}, "height": 420, "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
            "legend": {"orientation": "v"}}
    base.update(kw)
    return base


def _history_fig(d: ReportData) -> dict | None:
    h = d.history
    if not h.numbers and not h.other_numbers:
        return None
    traces: list[dict] = []
    ok = [k for k in range(len(h.numbers)) if not h.feasible or h.feasible[k]]
    stages = [s for s in dict.fromkeys(repr(h.stages[k]) for k in ok if h.stages[k] is not None)]
    if stages:
        for i, st in enumerate(stages):
            idx = [k for k in ok if repr(h.stages[k]) == st]
            traces.append({"type": "scattergl", "mode": "markers", "name": f"stage {st.strip(chr(39))}",
                           "x": [h.numbers[k] for k in idx], "y": [h.values[k] for k in idx],
                           "marker": {"size": 5, "color": PALETTE[i % len(PALETTE)]}})
    elif ok:
        traces.append({"type": "scattergl", "mode": "markers", "name": "trial value", "x": [h.numbers[k] for k in ok],
                       "y": [h.values[k] for k in ok], "marker": {"size": 5, "color": STATE_COLORS["complete"]}})
    bad = [k for k, ok in enumerate(h.feasible) if not ok]
    if bad:  # drawn over the others, in grey: they count for nothing in the best so far
        traces.append({"type": "scattergl", "mode": "markers", "name": "infeasible", "x": [h.numbers[k] for k in bad],
                       "y": [h.values[k] for k in bad], "marker": {"size": 6, "color": INFEASIBLE, "symbol": "x"}})
    traces.append({"type": "scatter", "mode": "lines", "name": "best feasible so far" if bad else "best so far",
                   "x": h.numbers, "y": h.best, "line": {"shape": "hv", "color": "#222"}})
    shown = list(h.values)
    if h.other_numbers:
        # a pruned trial at the last value it reported (where it stopped); a failed one, which has
        # none, at the top of the plot (the worst end for a minimized value), not on the best line
        curves = {t.number: t.curves.get(d.metric) or [] for t in d.trials}
        worst_end = (min(h.values) if d.direction == "maximize" else max(h.values)) if h.values else 0.0
        colors = {**STATE_COLORS, "infeasible": INFEASIBLE}
        for state, label in (("pruned", "pruned (last value)"), ("fail", "fail (no value)"),
                             ("infeasible", "infeasible before training (no value)")):
            xs = [n for n, s in zip(h.other_numbers, h.other_states) if s == state]
            if not xs:
                continue
            ys = []
            for n in xs:
                last = [v for v in curves.get(n, []) if isinstance(v, (int, float)) and math.isfinite(v)]
                ys.append(last[-1] if state == "pruned" and last else worst_end)
            shown += ys
            traces.append({"type": "scattergl", "mode": "markers", "name": label, "x": xs, "y": ys,
                           "marker": {"symbol": "x", "size": 6, "color": colors[state]}})
    yaxis = {"title": {"text": d.metric}}
    if _positive_spread(shown):
        yaxis = {"title": {"text": d.metric + " (log)"}, "type": "log", "dtick": 1}
    return {"data": traces, "layout": _layout(xaxis={"title": {"text": "trial"}}, yaxis=yaxis)}


def _joined(curves: list) -> tuple[list, list, list]:
    """Many curves as one trace: epochs and values with a None between curves, and each point's
    trial number (the hover text)."""
    xs: list = []
    ys: list = []
    text: list = []
    for c in curves:
        xs.extend(range(1, len(c.values) + 1))
        ys.extend(c.values)
        text.extend([f"trial {c.number}"] * len(c.values))
        xs.append(None)
        ys.append(None)
        text.append(None)
    return xs, ys, text


def _line(name: str, curves: list, color: str, opacity: float) -> dict:
    xs, ys, text = _joined(curves)
    return {"type": "scattergl", "mode": "lines", "name": name, "x": xs, "y": ys, "text": text,
            "hovertemplate": "%{text}, epoch %{x}: %{y:.4g}<extra>" + html.escape(name) + "</extra>",
            "line": {"width": 1, "color": color}, "opacity": opacity}


def _curves_fig(d: ReportData) -> dict | None:
    cs = d.curves
    if not cs.curves:
        return None
    traces = []
    distinct = sorted({c.color for c in cs.curves if c.color is not None}, key=lambda v: (str(type(v)), v)) \
        if cs.color_kind == "numeric" else []
    if cs.color_kind == "categorical":
        cats = list(dict.fromkeys(str(c.color) for c in cs.curves if c.color is not None))
        for i, cat in enumerate(cats):
            traces.append(_line(f"{cs.color_by}={cat}", [c for c in cs.curves if str(c.color) == cat],
                                PALETTE[i % len(PALETTE)], 0.7))
    elif cs.color_kind == "numeric" and len(distinct) <= len(VIRIDIS) and all(float(v).is_integer() for v in distinct):
        # a few whole values (depth, batch size): one colour each, named by its value
        for i, v in enumerate(distinct):
            color = VIRIDIS[round(i * (len(VIRIDIS) - 1) / max(1, len(distinct) - 1))]
            traces.append(_line(f"{cs.color_by}={fmt(v)}", [c for c in cs.curves if c.color == v], color, 0.8))
    elif cs.color_kind == "numeric":
        vals = [c.color for c in cs.curves if c.color is not None]
        tr = (lambda v: math.log10(v)) if cs.color_log else float
        lo, hi = tr(min(vals)), tr(max(vals))
        nb = len(VIRIDIS)
        width = (hi - lo) / nb or 1.0
        for b in range(nb):
            group = [c for c in cs.curves if c.color is not None
                     and min(nb - 1, int((tr(c.color) - lo) / width)) == b]
            if not group:
                continue
            a, z = lo + b * width, lo + (b + 1) * width
            label = f"{10 ** a:.2g}-{10 ** z:.2g}" if cs.color_log else f"{a:.3g}-{z:.3g}"
            traces.append(_line(f"{cs.color_by} {label}", group, VIRIDIS[b], 0.8))
    else:
        traces.append(_line(cs.metric, cs.curves, PALETTE[0], 0.6))
    if cs.color_kind:
        missing = [c for c in cs.curves if c.color is None]
        if missing:
            traces.append(_line(f"no {cs.color_by}", missing, "#bbbbbb", 0.6))
    values = [v for c in cs.curves for v in c.values]
    yaxis = {"title": {"text": cs.metric + (" (log)" if _positive_spread(values) else "")}}
    if _positive_spread(values):
        yaxis.update(type="log", dtick=1)  # a label per decade, not 2 and 5 between
    return {"data": traces, "layout": _layout(xaxis={"title": {"text": "epoch"}}, yaxis=yaxis)}


def _train_val_fig(d: ReportData) -> dict | None:
    """Train and validation loss per epoch of the best few trials: where they part, it overfits."""
    by_number = {t.number: t for t in d.trials}
    shown = [by_number[b.number] for b in d.best[:5] if b.number in by_number]
    shown = [t for t in shown if t.curves.get("train_loss") and t.curves.get("val_loss")]
    if not shown:
        return None
    traces = []
    values: list = []
    for i, t in enumerate(shown):
        color = PALETTE[i % len(PALETTE)]
        for key, dash, label in (("val_loss", "solid", "validation"), ("train_loss", "dot", "train")):
            ys = [v if v is None or math.isfinite(v) else None for v in t.curves[key]]
            values += ys
            traces.append({"type": "scatter", "mode": "lines", "name": f"trial {t.number} {label}",
                           "legendgroup": str(t.number), "x": list(range(1, len(ys) + 1)), "y": ys,
                           "line": {"width": 1.5, "color": color, "dash": dash}})
    yaxis = {"title": {"text": "loss" + (" (log)" if _positive_spread(values) else "")}}
    if _positive_spread(values):
        yaxis.update(type="log", dtick=1)  # a label per decade, not 2 and 5 between
    return {"data": traces, "layout": _layout(xaxis={"title": {"text": "epoch"}}, yaxis=yaxis)}


def _dimension(d: ReportData, name: str, values: list) -> dict:
    kind, log = d.params.kinds[name], d.params.logs[name]
    if kind == "categorical":
        cats = sorted({str(v) for v in values})
        return {"label": name, "values": [cats.index(str(v)) for v in values], "tickvals": list(range(len(cats))),
                "ticktext": cats}
    if log:
        from shoal.report._sections import log10_or_off

        vals, off = log10_or_off(values)
        lo, hi = math.floor(min(vals)), math.ceil(max(vals))
        ticks = list(range(lo, hi + 1))
        text = ["off" if off is not None and t == off else f"1e{t}" for t in ticks]
        return {"label": f"{name} (log)", "values": vals, "tickvals": ticks, "ticktext": text}
    return {"label": name, "values": [float(v) for v in values]}


def _parallel_fig(d: ReportData) -> tuple[dict | None, str]:
    usable = d.params.present_in_all()
    if len(d.params.numbers) < 2 or not usable:
        return None, "needs at least 2 complete trials and a parameter that varied in all of them"
    order = [p for p in d.importance.values if p in usable] + [p for p in usable if p not in d.importance.values]
    shown = order[:8]
    dims = [_dimension(d, p, d.params.values[p]) for p in shown]
    dims.append({"label": d.metric, "values": d.params.objective})
    reverse = d.direction == "maximize"
    fig = {"data": [{"type": "parcoords", "dimensions": dims,
                     "line": {"color": d.params.objective, "colorscale": "Viridis", "reversescale": not reverse,
                              "showscale": True}}],
           "layout": _layout(margin={"l": 80, "r": 80, "t": 60, "b": 30})}
    note = "" if len(order) <= 8 else f"The 8 most important of {len(order)} parameters are shown."
    return fig, note


def _pow2(values: list) -> bool:
    """Whole powers of two over two doublings or more (batch size, width): a log2 axis spaces them."""
    present = [v for v in values if v is not None]
    return len(set(present)) > 2 and all(isinstance(v, int) and v > 0 and v & (v - 1) == 0 for v in present)


SLICE_ROW_PX = 300  # one row of slice plots: the plot, its tick labels and its title below


def _slice_fig(d: ReportData) -> dict | None:
    names = d.params.names
    if not names or not d.params.numbers:
        return None
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    height = SLICE_ROW_PX * rows
    traces, layout = [], _layout(height=height + 90, showlegend=False)
    for i, name in enumerate(names):
        ax = "" if i == 0 else str(i + 1)
        r, c = divmod(i, cols)
        pairs = [(v, y) for v, y in zip(d.params.values[name], d.params.objective) if v is not None]
        categorical = d.params.kinds[name] == "categorical"
        off = 0
        if d.params.logs[name] and not categorical:  # its "off" value, 0, has no place on a log axis
            off = sum(1 for v, _ in pairs if v == 0)
            pairs = [(v, y) for v, y in pairs if v != 0]
        xs = [str(v) for v, _ in pairs] if categorical else [v for v, _ in pairs]
        traces.append({"type": "scattergl", "mode": "markers", "x": xs, "y": [y for _, y in pairs], "xaxis": f"x{ax}",
                       "yaxis": f"y{ax}", "marker": {"size": 4, "color": PALETTE[0], "opacity": 0.6}, "name": name,
                       "hovertemplate": f"{html.escape(name)} %{{x}}: %{{y:.4g}}<extra></extra>"})
        gap = 0.06
        xaxis = {"domain": [c / cols + gap / 2, (c + 1) / cols - gap / 2], "anchor": f"y{ax}",
                 "title": {"text": name + (f" ({off} off, not drawn)" if off else ""), "standoff": 4},
                 "automargin": False,
                 "type": "log" if d.params.logs[name] else ("category" if categorical else "linear")}
        if not categorical and not d.params.logs[name] and _pow2(d.params.values[name]):
            ticks = sorted({v for v, _ in pairs})
            xaxis.update(type="log", tickvals=ticks, ticktext=[str(v) for v in ticks])
        if categorical:  # a few names side by side; more, slanted (the room below holds them and the title)
            xaxis["tickangle"] = 0 if len({x for x in xs}) <= 4 else -30
        layout[f"xaxis{ax}"] = xaxis
        # each row keeps ~85 px under its plot for tick labels and the axis title, which otherwise
        # sat on the plot below and read as its title
        bottom = 1 - (r + 1) / rows + 85 / height
        layout[f"yaxis{ax}"] = {"domain": [bottom, 1 - r / rows - 10 / height], "anchor": f"x{ax}",
                                "title": {"text": d.metric if c == 0 else ""}}
    return {"data": traces, "layout": layout}


def _contour_fig(d: ReportData) -> dict | None:
    c = d.contour
    if c is None:
        return None

    def axis(name, log, ticks, grid):
        if ticks:
            return {"title": {"text": name}, "tickvals": list(range(len(ticks))), "ticktext": ticks}
        if log:
            lo, hi = math.floor(min(grid)), math.ceil(max(grid))
            return {"title": {"text": f"{name} (log)"}, "tickvals": list(range(lo, hi + 1)),
                    "ticktext": [f"1e{t}" for t in range(lo, hi + 1)]}
        return {"title": {"text": name}}

    data = [{"type": "contour", "x": c.grid_x, "y": c.grid_y, "z": c.z, "colorscale": "Viridis",
             "reversescale": d.direction == "minimize", "colorbar": {"title": {"text": d.metric}},
             "connectgaps": False, "contours": {"coloring": "heatmap"}},
            {"type": "scattergl", "mode": "markers", "x": c.points_x, "y": c.points_y, "name": "trials",
             "marker": {"size": 5, "color": "#ffffff", "line": {"width": 1, "color": "#333"}},
             "text": [fmt(v) for v in c.points_value], "hovertemplate": f"{d.metric} %{{text}}<extra></extra>"}]
    return {"data": data, "layout": _layout(height=480, xaxis=axis(c.x, c.x_log, c.x_ticks, c.grid_x),
                                            yaxis=axis(c.y, c.y_log, c.y_ticks, c.grid_y), showlegend=False)}


def _hover(d: ReportData, number: int, values: list[float], html_text: bool) -> str:
    """A point's hover text: trial, every objective, the key parameters (escaped for plotly's
    pseudo-HTML, one per line; or plain, on one line, for a caller that escapes the figure itself)."""
    from shoal.report._data import KEY_PARAMS

    config = d.pareto.configs.get(number, {}) if d.pareto else {}
    names = sorted(config, key=lambda n: KEY_PARAMS.index(n) if n in KEY_PARAMS else len(KEY_PARAMS))[:8]
    parts = [f"trial {number}"] + [f"{o} {fmt(v)}" for o, v in zip(d.objectives, values)]
    parts += [f"{n}={fmt(config[n])}" for n in names]
    return "<br>".join(html.escape(x, quote=False) for x in parts) if html_text else "; ".join(parts)


def _objective_axis(name: str, values: list[float]) -> dict:
    axis = {"title": {"text": name}}
    if values and min(values) > 0 and max(values) / min(values) >= 100:  # seconds or sizes over decades
        axis["type"] = "log"
    return axis


def _pareto_fig(d: ReportData, html_text: bool = True) -> dict | None:
    """The first objective (y) against the second (x): feasible trials, infeasible ones in grey, and
    the front as a step line (the best first objective reachable at each value of the second)."""
    p = d.pareto
    if p is None or not p.numbers:
        return None
    on_front = set(p.front)
    at = {n: i for i, n in enumerate(p.numbers)}

    def points(numbers: list[int], name: str, marker: dict, mode: str = "markers", **extra: Any) -> dict:
        return {"type": "scatter", "mode": mode, "name": name, "x": [p.values[at[n]][1] for n in numbers],
                "y": [p.values[at[n]][0] for n in numbers], "marker": marker,
                "text": [_hover(d, n, p.values[at[n]], html_text) for n in numbers],
                "hovertemplate": "%{text}<extra></extra>", **extra}

    traces = []
    rest = [n for n, ok in zip(p.numbers, p.feasible) if ok and n not in on_front]
    bad = [n for n, ok in zip(p.numbers, p.feasible) if not ok]
    if rest:
        traces.append(points(rest, "other feasible trials", {"size": 7, "color": PALETTE[0], "opacity": 0.6}))
    if bad:
        traces.append(points(bad, "infeasible", {"size": 7, "color": INFEASIBLE, "symbol": "x"}))
    if p.front:
        front = sorted(p.front, key=lambda n: (p.values[at[n]][1], n))
        if len(p.objectives) == 2:
            # x minimized: each front point holds until the next, cheaper-to-better step ("hv"); maximized: "vh".
            shape = "hv" if p.directions[1] == "minimize" else "vh"
            traces.append(points(front, f"Pareto front ({len(front)})", {"size": 10, "color": FRONT},
                                 mode="lines+markers", line={"shape": shape, "color": FRONT, "width": 2}))
        else:  # a front in 3+ objectives is no staircase in two of them: points only
            traces.append(points(front, f"Pareto front ({len(front)}, all objectives)", {"size": 10, "color": FRONT}))
    xs = [v[1] for v in p.values]
    ys = [v[0] for v in p.values]
    return {"data": traces, "layout": _layout(
        height=480, xaxis=_objective_axis(f"{p.objectives[1]} ({p.directions[1]})", xs),
        yaxis=_objective_axis(f"{p.objectives[0]} ({p.directions[0]})", ys), hovermode="closest")}


def _pareto_matrix_fig(d: ReportData, html_text: bool = True) -> dict | None:
    """Three or more objectives: every pair as a scatter matrix, the front in red, infeasible in grey."""
    p = d.pareto
    if p is None or len(p.objectives) < 3 or not p.numbers:
        return None
    on_front = set(p.front)
    groups = (("other feasible trials", [i for i, n in enumerate(p.numbers) if p.feasible[i] and n not in on_front],
               {"size": 5, "color": PALETTE[0], "opacity": 0.6}),
              ("infeasible", [i for i, ok in enumerate(p.feasible) if not ok], {"size": 5, "color": INFEASIBLE}),
              ("Pareto front", [i for i, n in enumerate(p.numbers) if n in on_front], {"size": 8, "color": FRONT}))
    traces = []
    for name, idx, marker in groups:
        if idx:
            traces.append({"type": "splom", "name": name, "marker": marker, "showupperhalf": False,
                           "diagonal": {"visible": False},
                           "dimensions": [{"label": o, "values": [p.values[i][k] for i in idx]}
                                          for k, o in enumerate(p.objectives)],
                           "text": [_hover(d, p.numbers[i], p.values[i], html_text) for i in idx],
                           "hovertemplate": "%{text}<extra></extra>"})
    size = 220 * len(p.objectives)
    return {"data": traces, "layout": _layout(height=max(480, size), dragmode="select", hovermode="closest")}


FEW_FOR_IMPORTANCE = 20  # complete trials below which importance is flagged as a hint


def _importance_fig(d: ReportData) -> dict | None:
    per = {o: imp for o, imp in d.objective_importance.items() if imp.values}
    if len(per) > 1:  # one bar per objective and parameter, parameters in the first objective's order
        order = list(dict.fromkeys([k for imp in per.values() for k in imp.values]))[::-1]
        traces = [{"type": "bar", "orientation": "h", "name": o, "x": [imp.values.get(k, 0.0) for k in order],
                   "y": [param_label(k) for k in order], "marker": {"color": PALETTE[i % len(PALETTE)]}}
                  for i, (o, imp) in enumerate(per.items())]
        return {"data": traces, "layout": _layout(height=max(250, 22 * len(order) * len(per) + 80), barmode="group",
                                                  xaxis={"title": {"text": "importance"}})}
    if not d.importance.values:
        return None
    items = list(d.importance.values.items())[::-1]
    return {"data": [{"type": "bar", "orientation": "h", "x": [v for _, v in items], "y": [param_label(k) for k, _ in items],
                      "marker": {"color": PALETTE[0]}}],
            "layout": _layout(height=max(250, 28 * len(items) + 80), xaxis={"title": {"text": "importance"}})}


def _gap_fig(d: ReportData) -> dict | None:
    if not d.gaps:
        return None
    traces = []
    for flag, color, name in (("", "#888888", "no flag"), ("overfit", "#c0392b", "overfitting"),
                              ("underfit", "#2c6fbb", "underfitting")):
        rows = [r for r in d.gaps if r.flag == flag]
        if rows:
            traces.append({"type": "scattergl", "mode": "markers", "name": name, "x": [r.val_loss for r in rows],
                           "y": [r.gap for r in rows], "text": [f"trial {r.number}" for r in rows],
                           "marker": {"size": 6, "color": color, "opacity": 0.7}})
    return {"data": traces, "layout": _layout(xaxis={"title": {"text": "final validation loss"}},
                                              yaxis={"title": {"text": "val loss - train loss"}})}


def _pbt_fig(d: ReportData) -> dict | None:
    """PBT by epoch: each member's curve from the epoch it started (a copy at its exploit step),
    a dashed line from its parent's value at that epoch, and the best member's own path in red."""
    members = {t.number: t for t in d.trials if isinstance(t.user_attrs.get("pbt"), dict)
               and isinstance(t.curves.get(d.metric), list) and t.curves[d.metric]}
    if not members:
        return None
    seg_x: list = []
    seg_y: list = []
    copy_x: list = []
    copy_y: list = []
    text: list = []
    for t in members.values():
        curve = t.curves[d.metric]
        start = int(t.user_attrs["pbt"].get("start_epoch") or 0)
        xs = list(range(start + 1, len(curve) + 1))
        seg_x += xs + [None]
        seg_y += curve[start:] + [None]
        text += [f"trial {t.number}"] * len(xs) + [None]
        parent = members.get(t.parent) if t.parent is not None else None
        if parent is not None and start >= 1 and len(parent.curves[d.metric]) >= start and len(curve) > start:
            copy_x += [start, start + 1, None]
            copy_y += [parent.curves[d.metric][start - 1], curve[start], None]
    traces = [{"type": "scattergl", "mode": "lines", "name": "member (from the epoch it started)", "x": seg_x,
               "y": seg_y, "text": text, "hovertemplate": "%{text}, epoch %{x}: %{y:.4g}<extra></extra>",
               "line": {"width": 1, "color": "#7f8fbf"}, "opacity": 0.7},
              {"type": "scattergl", "mode": "lines", "name": "copy (from its parent)", "x": copy_x, "y": copy_y,
               "line": {"width": 1, "color": "#999", "dash": "dot"}}]
    best = d.best[0].number if d.best and d.best[0].number in members else None
    if best is not None:
        path, n = [], best
        while n in members:  # the best member and its ancestors, each over the epochs it trained
            path.append(members[n])
            n = members[n].parent
        xs, ys = [], []
        for t in reversed(path):
            start = int(t.user_attrs["pbt"].get("start_epoch") or 0)
            end = len(t.curves[d.metric])
            nxt = next((c for c in path if c.parent == t.number), None)
            stop = int(nxt.user_attrs["pbt"].get("start_epoch") or end) if nxt is not None else end
            xs += list(range(start + 1, stop + 1))
            ys += t.curves[d.metric][start:stop]
        traces.append({"type": "scatter", "mode": "lines", "name": f"best member's path (trial {best})", "x": xs,
                       "y": ys, "line": {"width": 2.5, "color": FRONT}})
    values = [v for v in seg_y if v is not None]
    yaxis = {"title": {"text": d.metric + (" (log)" if _positive_spread(values) else "")}}
    if _positive_spread(values):
        yaxis.update(type="log", dtick=1)
    return {"data": traces, "layout": _layout(xaxis={"title": {"text": "epoch"}}, yaxis=yaxis)}


def _lineage_fig(d: ReportData) -> dict | None:
    lin = d.lineage
    if lin is None:
        return None
    pbt = _pbt_fig(d)
    if pbt is not None:
        return pbt
    xs: list = []
    ys: list = []
    for parent, child in lin.edges:
        pv, cv = lin.values.get(parent), lin.values.get(child)
        if pv is None or cv is None:
            continue
        xs += [parent, child, None]
        ys += [pv, cv, None]
    nodes = [(n, v) for n, v in lin.values.items() if v is not None]
    return {"data": [{"type": "scattergl", "mode": "lines", "x": xs, "y": ys, "name": "parent -> child",
                      "line": {"width": 1, "color": "#999"}},
                     {"type": "scattergl", "mode": "markers", "x": [n for n, _ in nodes], "y": [v for _, v in nodes],
                      "name": "trial", "marker": {"size": 5, "color": PALETTE[0]}}],
            "layout": _layout(xaxis={"title": {"text": "trial"}}, yaxis={"title": {"text": d.metric}})}


def _timeline_fig(d: ReportData) -> dict | None:
    t = d.timing
    if t is None:
        return None
    traces = []
    for state, color in STATE_COLORS.items():
        segs = [s for s in t.segments if s[3] == state]
        if not segs:
            continue
        xs: list = []
        ys: list = []
        for number, start, end, _ in segs:
            xs += [start, end, None]
            ys += [number, number, None]
        traces.append({"type": "scattergl", "mode": "lines", "name": state, "x": xs, "y": ys,
                       "line": {"width": 2, "color": color}})
    return {"data": traces, "layout": _layout(xaxis={"title": {"text": "seconds since the first trial started"}},
                                              yaxis={"title": {"text": "trial"}})}


# ------------------------------------------------------------------------------------------- tables
def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    # wide tables (many parameters) scroll inside their box, not the whole page
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def best_table_rows(d: ReportData) -> tuple[list[str], list[list[str]]]:
    names: list[str] = []
    for b in d.best:
        names += [k for k in b.config if k not in names]
    from shoal.report._data import KEY_PARAMS

    names.sort(key=lambda n: KEY_PARAMS.index(n) if n in KEY_PARAMS else len(KEY_PARAMS))
    # Every objective of a multi-objective study; val_acc (val_r2 for regression) as well unless it is one of them.
    objectives = d.objectives if d.multi else [d.metric]
    also = d.best[0].also if d.best else "val_acc"
    acc = [] if also in objectives or all(b.val_acc is None for b in d.best) else [also]
    header = ["#", *objectives, *acc, "wall s", "epochs", *names]  # the trial's wall time (show's "train s": its training)
    rows = [[str(b.number), *([fmt(v) for v in b.values] if d.multi else [fmt(b.value)]),
             *([fmt(b.val_acc)] if acc else []), fmt(b.seconds), fmt(b.epochs_run),
             *[fmt(b.config.get(n)) for n in names]] for b in d.best]
    return header, rows


def front_table_rows(d: ReportData) -> tuple[list[str], list[list[str]]]:
    """The Pareto front as a table: trial, every objective, then the parameters (key ones first)."""
    from shoal.report._data import KEY_PARAMS

    p = d.pareto
    if p is None:
        return [], []
    values = p.front_values()
    names: list[str] = []
    for n in p.front:
        names += [k for k in p.configs.get(n, {}) if k not in names]
    names.sort(key=lambda n: KEY_PARAMS.index(n) if n in KEY_PARAMS else len(KEY_PARAMS))
    # With k-fold, an objective's spread over folds follows its mean.
    spread = [o for o in p.objectives if any(o in s for s in p.spread.values())]
    header = ["#"]
    for o in p.objectives:
        header += [o] + ([f"{o} std"] if o in spread else [])
    header += names
    rows = []
    for n in p.front:
        row = [str(n)]
        for o, v in zip(p.objectives, values[n]):
            row += [fmt(v)] + ([fmt(p.spread.get(n, {}).get(o))] if o in spread else [])
        rows.append(row + [fmt(p.configs[n].get(k)) for k in names])
    return header, rows


def infeasible_table_rows(d: ReportData) -> tuple[list[str], list[list[str]]]:
    header = ["#", *d.objectives, "broken limits", "never trained because"]
    rows = [[str(r.number), *[fmt(v) if v is not None else "not finite" for v in r.values]
             + ["-"] * (len(d.objectives) - len(r.values)),
             ", ".join(f"{k} (over by {fmt(v)})" for k, v in r.violations.items()) or "-", r.reason or "-"]
            for r in d.infeasible]
    return header, rows


def constraints_summary(d: ReportData) -> str:
    complete = d.states.get("complete", 0)
    before = sum(1 for r in d.infeasible if r.reason)
    limits = f" (limits: {', '.join(d.constraints)})" if d.constraints else ""
    text = (f"{len(d.infeasible)} of {complete} complete trials broke a limit{limits}; "
            f"{before} of them {'was' if before == 1 else 'were'} stopped before training.")
    return text + " Best configurations, the best so far and the Pareto front count feasible trials only."


def objectives_text(d: ReportData) -> str:
    """"val_acc, maximized" or "val_acc (maximize), train_seconds (minimize)"."""
    if not d.multi:
        return f"{d.metric}, {d.direction}d"
    return ", ".join(f"{o} ({w})" for o, w in zip(d.objectives, d.directions))


def gap_summary(d: ReportData) -> str:
    r = d.gap_rules
    over = sum(1 for g in d.gaps if g.flag == "overfit")
    under = sum(1 for g in d.gaps if g.flag == "underfit")
    return (f"{over} of {len(d.gaps)} trials flagged overfitting (gap above {r.overfit_ratio:g} x the final "
            f"validation loss and validation loss {r.rise:.0%} above its minimum at the end), " + (
                f"{under} underfitting (a complete trial's final train accuracy below {r.underfit_share:.0%} of the "
                f"study's best; pruned trials stopped early and are not judged)." if any(g.train_acc is not None for g in d.gaps)
                else "underfitting not judged (it compares train accuracies; this study records none)."))


def _narrowed(change: Any) -> str:
    """One override of a coarse-to-fine stage, as a reader wants it: the values kept or the range."""
    if isinstance(change, list):
        return ", ".join(str(v) for v in change)
    if isinstance(change, dict):
        if "value" in change:
            return f"fixed at {fmt(change['value'])}"
        parts = []
        if "low" in change or "high" in change:
            parts.append(f"{fmt(change.get('low'))} to {fmt(change.get('high'))}")
        if "off" in change and change["off"] is None:
            parts.append("always on")
        return ", ".join(parts) or str(change)
    return fmt(change)


def stage_plan_rows(d: ReportData) -> list[list[str]]:
    """Coarse-to-fine: per stage, its strategy and size, then each parameter it narrowed."""
    rows = []
    for i, st in enumerate(d.stage_plan):
        head = [str(i), str(st.get("strategy", "?")), str(st.get("trials", "?"))]
        changes = st.get("overrides")
        if changes is None:
            rows.append(head + ["", "not started"])
        elif not changes:
            rows.append(head + ["", "the whole space" if i == 0 else "nothing narrowed"])
        for k, (name, change) in enumerate((changes or {}).items()):
            rows.append((head if k == 0 else ["", "", ""]) + [name, _narrowed(change)])
    return rows


def warm_rows(warm: list[dict[str, Any]], metric: str) -> tuple[list[str], list[list[str]]]:
    """The earlier study's best configurations side by side (rows of ``shoal.study._warm.compare``):
    old rank and value, new value and rank."""
    header = ["earlier trial", "earlier rank", f"earlier {metric}", "trial here", f"{metric} here", "rank here"]
    rows = [[str(r["old_trial"]), str(r["old_rank"]), fmt(r["old_value"]),
             "-" if r["new_trial"] is None else str(r["new_trial"]),
             "not run" if r["new_trial"] is None else "did not complete" if r["new_value"] is None else fmt(r["new_value"]),
             "-" if r["new_rank"] is None else f"{r['new_rank']} of {r['of']}"] for r in warm]
    return header, rows


def warm_summary(d: ReportData) -> str:
    """One sentence: where the study started from and how the earlier best fared."""
    src = d.warm_source or {}
    text = (f"This study started from study {src.get('study')!r} ({src.get('from')}): its {len(d.warm)} best "
            f"configurations ran first here ({src.get('queued', len(d.warm))} queued).")
    top = d.warm[0] if d.warm else None
    if top is not None and top["new_rank"] is not None:
        text += f" The earlier best (trial {top['old_trial']}) ranks {top['new_rank']} of {top['of']} here."
    elif top is not None:
        text += f" The earlier best (trial {top['old_trial']}) has no complete result here yet."
    return text


def timing_rows(d: ReportData) -> list[tuple[str, str]]:
    t = d.timing
    if t is None:
        return []
    wall = ("wall time (first start to last end)" if t.runs == 1 else
            f"wall time of its {t.runs} runs (first start to last end, less {t.between_runs_seconds:.0f} s between "
            f"runs with nothing training)")
    return [
        ("finished trials", str(t.finished)),
        (wall, f"{t.wall_seconds:.1f} s"),
        ("configs per second", fmt(t.configs_per_second)),
        ("time with some trial running", f"{t.busy_seconds:.1f} s"),
        ("time with none running (sampling, bookkeeping)", f"{t.idle_seconds:.1f} s"),
        ("training seconds summed over trials", f"{t.trial_seconds:.1f} s"),
        ("mean seconds per trial", fmt(t.mean_trial_seconds)),
        ("trials training at once, on average", fmt(t.trial_seconds / t.wall_seconds) if t.wall_seconds > 0 else "-"),
    ]


# --------------------------------------------------------------------------------------------- page
# A figure with fewer points than this draws them as SVG (``scatter``), not WebGL: a browser keeps
# only so many WebGL contexts per page (Chromium: 16, fewer on some machines) and drops the oldest
# figure's when a report has more, which left its plot empty.
WEBGL_FROM_POINTS = 5000


def _svg_when_small(fig: dict) -> dict:
    points = sum(len(t.get("x") or []) for t in fig["data"])
    if points < WEBGL_FROM_POINTS:
        for t in fig["data"]:
            if t.get("type") == "scattergl":
                t["type"] = "scatter"
    return fig


def _positive_spread(values: list) -> bool:
    """Whether ``values`` are all positive and span two decades or more: a log axis reads them."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= 100


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]], figures: dict[str, dict]) -> str:
    """One self-contained page: ``sections`` are (id, heading, inner html); a ``{{fig:NAME}}`` marker
    in the inner html is replaced by the figure NAME (plotly.js is embedded once)."""
    pio, get_plotlyjs = _plotly()
    template = pio.templates["plotly_white"].to_plotly_json()
    nav = " ".join(f'<a href="#{sid}">{html.escape(head)}</a>' for sid, head, _ in sections)
    parts = []
    for sid, head, inner in sections:
        for name, fig in figures.items():
            marker = f"{{{{fig:{name}}}}}"
            if marker in inner:
                fig = _svg_when_small(fig)
                fig["layout"].setdefault("template", template)
                div = pio.to_html(fig, full_html=False, include_plotlyjs=False, validate=False,
                                  default_height=f"{fig['layout'].get('height', 420)}px",
                                  config={"displaylogo": False, "responsive": True}, div_id=f"fig-{name}")
                inner = inner.replace(marker, div)
        parts.append(f'<section id="{sid}"><h2>{html.escape(head)}</h2>{inner}</section>')
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"note\">{html.escape(subtitle)}</p><nav>{nav}</nav>"
            + "".join(parts) + "</body></html>")


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>' if text else ""


def _empty(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


def render_html(d: ReportData) -> str:
    """The whole report as one HTML string."""
    figs: dict[str, dict] = {}
    body: dict[str, str] = {}

    def put(sid: str, fig: dict | None, note: str, why_empty: str) -> None:
        if fig is None:
            body[sid] = _empty(why_empty)
            return
        figs[sid] = fig
        body[sid] = _note(note) + f"{{{{fig:{sid}}}}}"

    n_complete = len(d.history.numbers)
    states = ", ".join(f"{n} {s}" for s, n in sorted(d.states.items()))
    # Sections that need one value use the first objective of a multi-objective study, and say so.
    first = (f" This study has {len(d.objectives)} objectives: this section shows the first, {d.metric}."
             if d.multi else "")
    if d.multi:
        p = d.pareto
        inner = _note(f"Each complete trial by {p.objectives[0]} and {p.objectives[1]}; the Pareto front ("
                      f"{len(p.front)} trials: feasible, and no other feasible trial is as good in every objective and "
                      "better in one) is joined as a step line" + (", infeasible trials are grey" if not all(p.feasible)
                                                                     else "") + ". Hover a point for its parameters."
                      + (f" Complete trials with no finite value (stopped before training), not drawn: {p.dropped}."
                         if p.dropped else ""))
        fig = _pareto_fig(d)
        if fig is not None:
            figs["pareto"] = fig
            inner += "{{fig:pareto}}"
            matrix = _pareto_matrix_fig(d)
            if matrix is not None:
                figs["pareto_matrix"] = matrix
                inner += _note("Every pair of objectives (scatter matrix).") + "{{fig:pareto_matrix}}"
            header, rows = front_table_rows(d)
            inner += _note(f"The front, best {p.objectives[0]} first.") + _table(header, rows)
        else:
            inner += _empty("No complete trial with finite values yet.")
        body["pareto"] = inner
    if d.constrained or d.constraints:
        header, rows = infeasible_table_rows(d)
        body["constraints"] = _note(constraints_summary(d)) + (_table(header, rows) if rows else "")
    put("history", _history_fig(d), f"{d.metric} of each complete trial ({d.direction}) and the best so far; "
        "pruned trials are crosses at the last value they reported, failed ones (no value) crosses at the worst end." + (
            " Infeasible trials are grey crosses." if not all(d.history.feasible) else "") + first,
        "No trial has finished yet.")
    failed = [t for t in d.trials if t.state == "fail"]
    if failed and "history" in figs:
        body["history"] += _note(f"{len(failed)} failed trial{'s' if len(failed) != 1 else ''}; "
                                 f"the last reason{'s' if len(failed) != 1 else ''}:") + _table(
            ["#", "reason"], [[str(t.number), (t.fail_reason or "?")[:160]] for t in failed[-10:]])
    cs = d.curves
    color = f", coloured by {cs.color_by}" if cs.color_by else ""
    curves = _curves_fig(d)
    put("curves", curves, f"{cs.metric} per epoch for {len(cs.curves)} of {cs.total} trials{color}"
        + (", on a log axis" if curves and curves["layout"]["yaxis"].get("type") == "log" else "")
        + (f"; failed trials (diverged) left out: {cs.failed}" if cs.failed else "") + ". Hover a line for its trial. "
        + cs.note, "No trial recorded learning curves (user objectives record none unless they return them).")
    train_val = _train_val_fig(d)
    if train_val is not None and "curves" in figs:
        figs["train_val"] = train_val
        body["curves"] += _note("Train (dotted) and validation (solid) loss of the best trials: where the "
                                "validation loss turns up while the train loss goes on down, the trial overfits.") \
            + "{{fig:train_val}}"
    fig, note = _parallel_fig(d)
    put("parallel", fig, note + first, "Parallel coordinates need at least 2 complete trials and a varying parameter.")
    put("slice", _slice_fig(d), f"{d.metric} against each parameter that varied (complete trials).{first}",
        "No parameter varied among the complete trials.")
    how = ("Linear interpolation of {m} between the trials (white dots); blank outside them." if d.contour is None
           or d.contour.method == "linear" else "Mean {m} of the trials (white dots) in each cell; blank: no trial.")
    put("contour", _contour_fig(d), how.format(m=d.metric) + first, f"No contour: {d.contour_reason}.")
    imp = d.importance
    per = [o for o, i in d.objective_importance.items() if i.values]
    put("importance", _importance_fig(d), f"Optuna's {imp.evaluator} importance over the sampled parameters "
        "that varied in every complete trial" + (f", for each objective ({', '.join(per)})." if len(per) > 1 else ".")
        + (f" From {n_complete} complete trials only: with fewer than {FEW_FOR_IMPORTANCE}, a parameter can look "
           "important by chance; read it as a hint." if n_complete < FEW_FOR_IMPORTANCE else ""),
        f"No importance: {imp.reason}.")
    if d.best:
        header, rows = best_table_rows(d)
        feasible = " feasible" if d.constrained else ""
        body["best"] = _note(f"The {len(d.best)} best{feasible} of {n_complete} complete trials by {d.metric}. "
                             "wall s: from the trial's start to its end, sharing the machine with the trials "
                             "beside it (`shoal show`'s train s is its share of the training time)."
                             + (" See the Pareto front for the trade-offs between objectives." if d.multi else "")
                             ) + _table(header, rows)
    else:
        body["best"] = _empty("No complete trial yet.")
    if d.gaps:
        flagged = [g for g in d.gaps if g.flag][:30]
        table = _table(["#", "state", "train loss", "val loss", "gap", "val rising", "train acc", "flag"],
                       [[str(g.number), g.state, fmt(g.train_loss), fmt(g.val_loss), fmt(g.gap),
                         "yes" if g.val_rising else "no", fmt(g.train_acc), g.flag] for g in flagged],
                       [g.flag for g in flagged]) if flagged else ""
        figs["gap"] = _gap_fig(d)
        body["gap"] = _note(gap_summary(d)) + "{{fig:gap}}" + table
    else:
        body["gap"] = _empty("No trial recorded both train and validation loss curves.")
    if d.stages or d.lineage or d.rungs:
        inner = ""
        if d.rungs:
            brackets = len({r[0] for r in d.rungs})
            inner += _note("Successive halving" + (f" in {brackets} Hyperband brackets" if brackets > 1 else "") +
                           ": at each rung (epoch) the trials that reached it were ranked together; those kept "
                           "went on training, the others stopped and their slots were refilled.") + _table(
                ["bracket", "rung (epoch)", "trials reached it", "kept", f"best {d.metric} there"],
                [[fmt(r[0]), str(r[1]), str(r[2]), str(r[3]), fmt(r[4])] for r in d.rungs])
        if d.stage_plan:
            inner += _note("Coarse-to-fine: what each stage searched. A later stage narrows the space around the "
                           "best configurations so far: the values it kept, the ranges it searched.") + _table(
                ["stage", "strategy", "trials", "parameter", "searched"], stage_plan_rows(d))
        if d.stages:
            inner += _table(["stage", "trials", "complete", f"best {d.metric}", "best trial", "trials from", "to"],
                            [[str(s.stage), str(s.trials), str(s.complete), fmt(s.best_value), fmt(s.best_number),
                              str(s.first), str(s.last)] for s in d.stages])
        if d.lineage:
            figs["lineage"] = _lineage_fig(d)
            pbt = any(isinstance(t.user_attrs.get("pbt"), dict) for t in d.trials)
            inner += _note(f"{len(d.lineage.edges)} copies at PBT's exploit steps: each member's {d.metric} from the "
                           "epoch it started, a dotted line from the parent it copied (weights and optimizer state; "
                           "hyperparameters perturbed), the best member's path in red. `shoal schedule` prints its "
                           "hyperparameters epoch by epoch." if pbt else
                           f"{len(d.lineage.edges)} forks: each line joins a trial to the one it started "
                           "from (weights copied, hyperparameters perturbed).") + "{{fig:lineage}}"
        body["stages"] = inner
    else:
        body["stages"] = _empty("This study has no stages, no rungs and no forked trials (no 'stage', 'rungs', "
                                "'pbt_parent' or 'lineage' trial attribute).")
    if d.timing:
        figs["timing"] = _timeline_fig(d)
        body["timing"] = _table(["", ""], [list(r) for r in timing_rows(d)]) + \
            _note("Each line is one trial, from its start to its end.") + "{{fig:timing}}"
    else:
        body["timing"] = _empty("No finished trial has start and end times.")
    if d.warm:
        header, rows = warm_rows(d.warm, d.metric)
        body["warm"] = _note(warm_summary(d)) + _table(header, rows)
    order = [PARETO_SECTION] if "pareto" in body else []
    for sid, head in SECTIONS:
        order.append((sid, head))
        if sid == "best" and "constraints" in body:
            order.append(CONSTRAINTS_SECTION)
        if sid == "best" and "warm" in body:
            order.append(WARM_SECTION)
    sections = [(sid, head, body[sid]) for sid, head in order]
    return page(f"shoal report: {d.study_name}", f"{sum(d.states.values())} trials ({states}); "
                f"{objectives_text(d)}.", sections, figs)


def write_html(d: ReportData, path: str | Path) -> Path:
    """Write the report of ``d`` to ``path`` (one self-contained HTML file); returns the path."""
    out = Path(path)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(d), encoding="utf-8")
    return out


def write_report(storage: str | None, study: str | None = None, path: str | Path = "report.html",
                 **options: Any) -> Path:
    """Load a stored study and write its HTML report.

    Args:
        storage: SQLite file, journal file or SQLAlchemy URL (None: ./shoal.db).
        study: the study name (None when the storage holds one study).
        path: the HTML file to write.
        **options: passed to ``build_report`` (color_by, max_curves, top, rules).

    Returns:
        The path written.

    Example:
        >>> write_report("shoal.db", "digits-mlp", "report.html", color_by="lr")  # doctest: +SKIP
    """
    from shoal.report._load import load_report

    _plotly()  # fail on a missing plotly before reading the study
    return write_html(load_report(storage, study, **options), path)

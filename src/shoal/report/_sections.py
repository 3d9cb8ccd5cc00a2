"""Each report section computed from the trials: history, curves, parameters, importance, contour,
best configurations, train-validation gaps, stages, lineage and timing."""

from __future__ import annotations

import math
from typing import Any

from shoal.report._data import (
    KEY_PARAMS,
    BestRow,
    Contour,
    Curve,
    CurveSet,
    GapRow,
    GapRules,
    History,
    Importance,
    InfeasibleRow,
    LineageData,
    ParamData,
    ParetoData,
    StageRow,
    Timing,
    TrialInfo,
    _float,
)
from shoal.study._runner import INTERRUPTED


def history(trials: list[TrialInfo], maximize: bool) -> History:
    numbers, values, best, stages, other, other_states, feasible = [], [], [], [], [], [], []
    current: float | None = None
    for t in sorted(trials, key=lambda t: t.number):
        if t.value is None:
            if t.state in ("pruned", "fail"):
                other.append(t.number)
                other_states.append(t.state)
            elif t.state == "complete":  # no finite value: stopped before training (a broken limit)
                other.append(t.number)
                other_states.append("infeasible")
            continue
        ok = t.feasible is not False
        if ok:
            current = t.value if current is None else (max(current, t.value) if maximize else min(current, t.value))
        numbers.append(t.number)
        values.append(t.value)
        best.append(current)
        stages.append(t.stage)
        feasible.append(ok)
    return History(numbers, values, best, stages, other, other_states, feasible)


def pareto_mask(values: list[list[float]], directions: list[str]) -> list[bool]:
    """Which points no other point dominates (as good in every objective, better in one); equal
    points do not dominate each other, so both stay, as in Optuna's ``best_trials``."""
    import numpy as np

    if not values:
        return []
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    # Every objective minimized; distinct points in lexicographic order (a point's copies share its fate).
    loss, inverse = np.unique(np.asarray(values, float) * signs, axis=0, return_inverse=True)
    on_front = np.zeros(len(loss), bool)
    remaining = np.arange(len(loss))
    while remaining.size:
        # The first remaining point is on the front: anything dominating it comes before it in
        # lexicographic order and would have removed it. Drop every point it dominates.
        i = remaining[0]
        on_front[i] = True
        remaining = remaining[np.any(loss[remaining] < loss[i], axis=1)]
    return on_front[inverse.reshape(-1)].tolist()


def pareto_data(trials: list[TrialInfo], objectives: list[str], directions: list[str]) -> ParetoData:
    """Complete trials in objective space (those with every objective finite) and the feasible front."""
    complete = [t for t in trials if t.state == "complete" and len(t.values) == len(directions)]
    points = [t for t in complete if all(v is not None for v in t.values)]
    feasible = [t.feasible is not False for t in points]
    ok = [t for t, f in zip(points, feasible) if f]
    mask = pareto_mask([list(t.values) for t in ok], directions)
    sign = -1.0 if directions[0] == "maximize" else 1.0
    front = sorted((t for t, m in zip(ok, mask) if m), key=lambda t: (sign * t.values[0], t.number))
    spread = {}
    for t in front:  # with k-fold, each objective's spread over folds (measures "<name>_std")
        m = t.user_attrs.get("measures")
        found = {o: _float(m.get(f"{o}_std")) for o in objectives} if isinstance(m, dict) else {}
        if any(v is not None for v in found.values()):
            spread[t.number] = {o: v for o, v in found.items() if v is not None}
    return ParetoData(list(objectives), list(directions), [t.number for t in points], [list(t.values) for t in points],
                      feasible, [t.number for t in front], {t.number: dict(t.config) for t in points},
                      len(complete) - len(points), spread)


def infeasible_rows(trials: list[TrialInfo]) -> list[InfeasibleRow]:
    """Complete trials that broke a constraint, in trial order, with the constraints they broke."""
    rows = []
    for t in trials:
        if t.state != "complete" or t.feasible is not False:
            continue
        broken = {k: v for k, v in (t.constraints or {}).items() if not v <= 0.0}
        recorded = t.user_attrs.get("violations")
        if not broken and isinstance(recorded, dict):  # every limit's value: above 0 broke it
            broken = {str(k): float(v) for k, v in recorded.items() if (_float(v) or 0.0) > 0}
        reason = t.user_attrs.get("infeasible_before_training")
        rows.append(InfeasibleRow(t.number, list(t.values), broken, str(reason) if reason else ""))
    return rows


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def param_data(complete: list[TrialInfo]) -> ParamData:
    seen: dict[str, list[Any]] = {}
    for t in complete:
        for k in t.config:
            seen.setdefault(k, [])
    for k in seen:
        seen[k] = [t.config.get(k) for t in complete]
    names, kinds, logs, constant = [], {}, {}, {}
    for k, vals in seen.items():
        present = [v for v in vals if v is not None]
        distinct = {repr(v) for v in present}
        if len(distinct) <= 1:
            if present:
                constant[k] = present[0]
            continue
        names.append(k)
        numeric = all(_is_number(v) for v in present)
        kinds[k] = "numeric" if numeric else "categorical"
        positive = numeric and all(v > 0 for v in present)
        # the space's own scale where the study recorded it (eps, lr); else a wide positive range
        sampled_log = any(getattr(t.distributions.get(k), "log", False) for t in complete if t.distributions)
        logs[k] = bool(positive and (sampled_log or max(present) / min(present) >= 100))
        # a log parameter with an "off" value, 0 (weight_decay, l1): log for the values it took when on
        if numeric and not logs[k] and sampled_log and all(v >= 0 for v in present) and any(v > 0 for v in present):
            logs[k] = True
    names.sort(key=lambda n: KEY_PARAMS.index(n) if n in KEY_PARAMS else len(KEY_PARAMS))
    return ParamData([t.number for t in complete], [t.value for t in complete], names,
                     {n: seen[n] for n in names}, kinds, logs, constant)


class _TrialsView:
    """The read-only part of ``optuna.Study`` that importance evaluators use, over loaded trials.

    Copying 5,000 trials into an in-memory study costs seconds (deep copies); this costs none.
    """

    def __init__(self, complete: list[TrialInfo], names: list[str], direction: str, objective: int = 0) -> None:
        from optuna.study import StudyDirection
        from optuna.trial import FrozenTrial, TrialState

        self.directions = [StudyDirection[direction.upper()]]
        self.direction = self.directions[0]
        self._trials = [
            FrozenTrial(number=t.number, state=TrialState.COMPLETE, value=t.values[objective] if objective else t.value,
                        datetime_start=None,
                        datetime_complete=None, params={p: t.params[p] for p in names},
                        distributions={p: t.distributions[p] for p in names}, user_attrs={}, system_attrs={},
                        intermediate_values={}, trial_id=t.number)
            for t in complete
        ]

    def _is_multi_objective(self) -> bool:
        return False

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return [t for t in self._trials if states is None or t.state in states]


def param_label(name: str) -> str:
    """How a report names an Optuna parameter: an "off" switch (``l1_on``, sampled before the value
    it guards, see ``shoal.space.Float``) as "l1 on/off"."""
    return f"{name[:-3]} on/off" if name.endswith("_on") and len(name) > 3 else name


def param_importance(complete: list[TrialInfo], direction: str, objective: int = 0) -> Importance:
    """Optuna's importance over the parameters every complete trial sampled and that varied.

    The evaluator reads the trials already loaded (through ``_TrialsView``), not the storage again.
    ``objective`` picks the objective of a multi-objective study (trials without a finite value for
    it are left out).
    """
    import warnings

    import optuna

    if objective:
        complete = [t for t in complete if len(t.values) > objective and t.values[objective] is not None]
    n = len(complete)
    if n < 2:
        return Importance("", {}, f"importance needs at least 2 complete trials; this study has {n}")
    sampled = set.intersection(*(set(t.params) for t in complete))
    names = sorted(p for p in sampled if len({repr(t.params[p]) for t in complete}) > 1)
    if not names:
        return Importance("", {}, "no sampled parameter took more than one value in the complete trials")
    # fANOVA's forest is accurate but slow (about a minute at 1,000 trials on a small CPU);
    # PED-ANOVA is built for large studies and takes well under a second.
    if n <= 200:
        evaluator, label = optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0), "fANOVA"
    else:
        evaluator, label = optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            view = _TrialsView(complete, names, direction, objective)
            raw = optuna.importance.get_param_importances(view, evaluator=evaluator, params=names)
    except (ValueError, RuntimeError) as exc:
        return Importance(label, {}, f"{label} could not rank the parameters: {exc}")
    values = {k: float(v) for k, v in sorted(raw.items(), key=lambda kv: -float(kv[1]))}
    return Importance(label, values)


def log10_or_off(values: list[Any]) -> tuple[list[float], float | None]:
    """log10 of each value; 0 (a parameter's "off" value, such as weight_decay's) one decade below
    the smallest value it took when on. Returns the numbers and that position (None: no 0)."""
    on = [math.log10(v) for v in values if v > 0]
    off = (math.floor(min(on)) - 1.0) if on and any(v == 0 for v in values) else None
    return [math.log10(v) if v > 0 else off for v in values], off


def _axis(values: list[Any], kind: str, log: bool) -> tuple[list[float], list[str] | None]:
    """Numbers for an axis: log10 for log parameters (0, "off", a decade below), category index for
    categorical ones."""
    if kind == "categorical":
        cats = sorted({str(v) for v in values})
        return [float(cats.index(str(v))) for v in values], cats
    return (log10_or_off(values)[0] if log else [float(v) for v in values]), None


# Up to this many complete trials the contour interpolates linearly between them; above, it shows the
# mean value per grid cell.
INTERPOLATE_UP_TO = 300


def contour_data(params: ParamData, imp: Importance, size: int = 30) -> tuple[Contour | None, str]:
    if len(params.numbers) < 4:
        return None, f"a contour needs at least 4 complete trials; this study has {len(params.numbers)}"
    usable = params.present_in_all()
    ranked = [p for p in imp.values if p in usable] or usable
    # numbers only: between two categories (relu and tanh) there is nothing to interpolate
    ranked = [p for p in ranked if params.kinds[p] == "numeric"]
    if len(ranked) < 2:
        return None, ("a contour needs two numeric parameters that varied in every complete trial (categorical "
                      "ones, such as the optimizer, are compared in the slice plots)")
    import numpy as np
    from scipy.interpolate import griddata

    x, y = ranked[:2]
    xs, xt = _axis(params.values[x], params.kinds[x], params.logs[x])
    ys, yt = _axis(params.values[y], params.kinds[y], params.logs[y])
    objective = np.asarray(params.objective, float)
    method = "linear"
    if len(xs) <= INTERPOLATE_UP_TO:
        gx = np.linspace(min(xs), max(xs), size)
        gy = np.linspace(min(ys), max(ys), size)
        mx, my = np.meshgrid(gx, gy)
        pts = np.column_stack([xs, ys])
        try:
            z = griddata(pts, objective, (mx, my), method="linear")
        except Exception:  # all points on a line (qhull): nearest neighbour still shows the trend
            z = griddata(pts, objective, (mx, my), method="nearest")
    else:
        # Many trials: the mean value of the trials in each cell (a Delaunay triangulation of
        # thousands of points on a few distinct values takes seconds, and the mean is plainer).
        ex = np.linspace(min(xs), max(xs), size + 1)
        ey = np.linspace(min(ys), max(ys), size + 1)
        total, _, _ = np.histogram2d(xs, ys, bins=(ex, ey), weights=objective)
        count, _, _ = np.histogram2d(xs, ys, bins=(ex, ey))
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (total / count).T  # rows follow y
        gx, gy = (ex[:-1] + ex[1:]) / 2, (ey[:-1] + ey[1:]) / 2
        method = "cell mean"
    grid = [[None if not np.isfinite(v) else float(v) for v in row] for row in z]
    return Contour(x, y, params.logs[x], params.logs[y], [float(v) for v in gx], [float(v) for v in gy], grid,
                   xs, ys, list(params.objective), xt, yt, method), ""


def _pick_curves(with_curve: list[TrialInfo], ranked: list[TrialInfo], limit: int) -> list[TrialInfo]:
    if len(with_curve) <= limit:
        return with_curve
    have = {t.number for t in with_curve}
    chosen = [t.number for t in ranked if t.number in have][: limit // 4]
    rest = [t for t in with_curve if t.number not in set(chosen)]
    k = limit - len(chosen)
    step = len(rest) / k
    chosen_set = set(chosen) | {rest[int(i * step)].number for i in range(k)}
    return [t for t in with_curve if t.number in chosen_set]


def curve_set(trials: list[TrialInfo], ranked: list[TrialInfo], metric: str, color_by: str | None,
              max_curves: int) -> CurveSet:
    name = metric if any(metric in t.curves for t in trials) else "val_loss"
    with_curve = [t for t in trials if isinstance(t.curves.get(name), list) and t.curves[name]]
    failed = sum(t.state == "fail" for t in with_curve)
    with_curve = [t for t in with_curve if t.state != "fail"]
    drawn = _pick_curves(with_curve, ranked, max_curves)
    colors = [t.config.get(color_by) for t in drawn] if color_by else []
    present = [c for c in colors if c is not None]
    kind, log = None, False
    if color_by and present:
        kind = "numeric" if all(_is_number(c) for c in present) else "categorical"
        log = kind == "numeric" and min(present) > 0 and max(present) / min(present) >= 100
    curves = [Curve(t.number, t.state, [_float(v) for v in t.curves[name]], t.config.get(color_by) if color_by else None)
              for t in drawn]
    note = ""
    if len(drawn) < len(with_curve):
        note = (f"{len(drawn)} of {len(with_curve)} curves drawn: the {max_curves // 4} best trials, then "
                "trials spread evenly over the study.")
    return CurveSet(name, color_by if kind else None, kind, log, curves, len(with_curve), note, failed)


def best_row(t: TrialInfo) -> BestRow:
    # beside the value: the accuracy, or R^2 for regression (where accuracy means nothing)
    also = "val_r2" if not t.curves.get("val_acc") and t.curves.get("val_r2") else "val_acc"
    acc = t.curves.get(also) or []
    return BestRow(t.number, t.value, _float(acc[-1]) if acc else None, t.seconds, t.epochs_run, dict(t.config),
                   list(t.values), also)


def gap_rows(trials: list[TrialInfo], rules: GapRules) -> list[GapRow]:
    rows = []
    for t in trials:
        tl, vl = t.curves.get("train_loss") or [], t.curves.get("val_loss") or []
        if not tl or not vl or t.state not in ("complete", "pruned"):
            continue
        last_t, last_v = _float(tl[-1]), _float(vl[-1])
        if last_t is None or last_v is None:
            continue
        finite = [v for v in (_float(x) for x in vl) if v is not None]
        rising = len(finite) > 1 and last_v > min(finite) * (1 + rules.rise)
        acc = t.curves.get("train_acc") or []
        rows.append(GapRow(t.number, t.state, last_t, last_v, last_v - last_t, rising, _float(acc[-1]) if acc else None, ""))
    accs = [r.train_acc for r in rows if r.train_acc is not None]
    best_acc = max(accs) if accs else None
    for r in rows:
        if r.gap > rules.overfit_ratio * abs(r.val_loss) and r.val_rising:
            r.flag = "overfit"
        elif r.state == "complete" and best_acc and r.train_acc is not None and r.train_acc < rules.underfit_share * best_acc:
            r.flag = "underfit"  # (a pruned trial stopped early by design: low accuracy is no verdict on it)
    return rows


def stage_rows(trials: list[TrialInfo], maximize: bool) -> list[StageRow]:
    rows: dict[str, StageRow] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.stage is None or t.fail_reason == INTERRUPTED:  # its retry is the stage's trial
            continue
        key = repr(t.stage)
        row = rows.setdefault(key, StageRow(t.stage, 0, 0, None, None, t.number, t.number))
        row.trials += 1
        row.last = t.number
        if t.value is not None:
            row.complete += 1
            if row.best_value is None or (t.value > row.best_value if maximize else t.value < row.best_value):
                row.best_value, row.best_number = t.value, t.number
    return list(rows.values())


def lineage_data(trials: list[TrialInfo]) -> LineageData | None:
    edges = [(t.parent, t.number) for t in trials if t.parent is not None]
    if not edges:
        return None
    value = {t.number: t.value for t in trials}
    nodes = {n for e in edges for n in e}
    return LineageData(edges, {n: value.get(n) for n in sorted(nodes)})


# Nothing running for longer than this is a pause between runs of the study (a study run again
# later, or resumed after a crash), not time a run spent: sampling a trial takes well under a second.
RUN_GAP_S = 60.0


def timing(trials: list[TrialInfo]) -> Timing | None:
    done = [t for t in trials if t.start is not None and t.end is not None and t.state in ("complete", "pruned", "fail")]
    if not done:
        return None
    # an interrupted trial's time was spent (it is drawn), but it finished nothing: it runs again
    counted = [t for t in done if getattr(t, "fail_reason", None) != INTERRUPTED]
    segments = sorted((t.start, t.end) for t in done)
    busy, pauses, runs, cur_s, cur_e = 0.0, 0.0, 1, None, None
    for s, e in segments:  # union of the intervals during which some trial was running
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
                if s - cur_e > RUN_GAP_S:
                    pauses += s - cur_e
                    runs += 1
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    wall = max(e for _, e in segments) - segments[0][0] - pauses
    secs = [t.seconds for t in counted if t.seconds is not None]
    return Timing(
        finished=len(counted), wall_seconds=wall, busy_seconds=busy, idle_seconds=max(0.0, wall - busy),
        trial_seconds=float(sum(secs)), configs_per_second=len(counted) / wall if wall > 0 else None,
        mean_trial_seconds=sum(secs) / len(secs) if secs else None,
        segments=[(t.number, t.start, t.end, t.state) for t in sorted(done, key=lambda t: t.number)],
        runs=runs, between_runs_seconds=pauses,
    )


def rung_rows(trials: list[TrialInfo], maximize: bool) -> list[list[Any]]:
    """Successive halving / Hyperband as the population engine decided it: per bracket and rung
    (epoch), the trials that reached it, how many went on, and the best value there. Empty when no
    trial recorded ``rungs``."""
    table: dict[tuple, dict[str, Any]] = {}
    for t in trials:
        rungs = t.user_attrs.get("rungs")
        if not isinstance(rungs, list):
            continue
        bracket = t.user_attrs.get("bracket")
        for r in rungs:
            if not isinstance(r, dict) or "epoch" not in r:
                continue
            row = table.setdefault((bracket if isinstance(bracket, int) else -1, int(r["epoch"])),
                                   {"reached": 0, "kept": 0, "best": None})
            row["reached"] += 1
            row["kept"] += bool(r.get("kept"))
            v = _float(r.get("value"))
            if v is not None and (row["best"] is None or (v > row["best"] if maximize else v < row["best"])):
                row["best"] = v
    return [[b if b >= 0 else None, e, row["reached"], row["kept"], row["best"]]
            for (b, e), row in sorted(table.items())]

"""Reading a stored study into a ``ReportData``: every trial once, then each section."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.report._data import GapRules, Importance, ReportData, TrialInfo, _float
from shoal.report._sections import (
    best_row,
    contour_data,
    curve_set,
    gap_rows,
    history,
    infeasible_rows,
    lineage_data,
    param_data,
    param_importance,
    pareto_data,
    rung_rows,
    stage_rows,
    timing,
)

if TYPE_CHECKING:
    import optuna

__all__ = ["build_report", "load_report", "objective_names", "open_stored_study", "read_trials"]


# ---------------------------------------------------------------------------------------------- load
def open_stored_study(storage: str | None, study: str | None) -> optuna.Study:
    """Open a study that ``shoal tune`` (or anything Optuna) stored; pick the only one if unnamed."""
    from shoal.study._experiment import open_stored

    return open_stored(storage, study)


def load_report(storage: str | None, study: str | None = None, **options: Any) -> ReportData:
    """``build_report`` for a study named in a storage (file path or URL).

    Example:
        >>> data = load_report("runs.db", "digits-mlp", color_by="lr")  # doctest: +SKIP
        >>> data.best[0].config["lr"]  # doctest: +SKIP
    """
    from shoal.study import resolve_storage

    url = resolve_storage(storage)
    return build_report(open_stored_study(storage, study), url=url if isinstance(url, str) else None, **options)


def _parent(attrs: dict[str, Any]) -> int | None:
    """The trial a forked trial started from: a PBT copy's ``pbt.parent`` (``pbt_parent`` in older
    records), or ``lineage`` as a dict (``parent_trial``), a list of ancestors (the last is the
    parent) or a list of such dicts."""
    p = (attrs.get("pbt") or {}).get("parent") if isinstance(attrs.get("pbt"), dict) else None
    if p is None:
        p = attrs.get("pbt_parent")
    if isinstance(p, int) and not isinstance(p, bool):
        return p
    lineage = attrs.get("lineage")
    if isinstance(lineage, list) and lineage:
        lineage = lineage[-1]
    if isinstance(lineage, dict):
        lineage = lineage.get("parent_trial", lineage.get("parent", lineage.get("trial")))
    if isinstance(lineage, int) and not isinstance(lineage, bool):
        return lineage
    return None


def read_trials(study: optuna.Study, url: str | None = None) -> list[TrialInfo]:
    """Every trial of the study as ``TrialInfo``, read in one pass (plain SQL when ``url`` is an
    SQL storage, else Optuna's ``get_trials``)."""
    from shoal.report._sql import RawTrial, constraints_from, read_sql_trials

    raw = read_sql_trials(url, study.study_name) if url else None
    if raw is None:
        raw = []
        for t in study.get_trials(deepcopy=False):
            r = RawTrial(t.number, t.state.name.lower())
            r.start, r.end = t.datetime_start, t.datetime_complete
            r.values = list(t.values) if t.values is not None else None
            r.params, r.distributions, r.user_attrs = t.params, t.distributions, t.user_attrs
            r.constraints = constraints_from(t.system_attrs)
            raw.append(r)
    starts = [r.start for r in raw if r.start is not None]
    t0 = min(starts) if starts else None
    out = []
    for r in raw:
        a = r.user_attrs
        config = a.get("config")
        curves = a.get("curves")
        epochs = a.get("epochs_run")
        values = [_float(v) for v in r.values or []] if r.state == "complete" else []
        out.append(TrialInfo(
            number=r.number, state=r.state, value=values[0] if values else None,
            config=config if isinstance(config, dict) else dict(r.params),
            curves=curves if isinstance(curves, dict) else {}, seconds=_float(a.get("seconds")),
            start=(r.start - t0).total_seconds() if t0 is not None and r.start else None,
            end=(r.end - t0).total_seconds() if t0 is not None and r.end else None,
            epochs_run=epochs if isinstance(epochs, int) else None, stage=a.get("stage"), parent=_parent(a),
            fail_reason=str(a["fail_reason"]) if a.get("fail_reason") is not None else None,
            params=r.params, distributions=r.distributions, user_attrs=a, values=values,
            constraints=r.constraints, feasible=_feasible(r.constraints, a),
        ))
    return out


def _feasible(constraints: dict[str, float] | None, attrs: dict[str, Any]) -> bool | None:
    """Optuna's rule (feasible when every constraint value is <= 0; NaN is not), else the trial's own
    ``feasible`` record; a trial stopped before training for breaking a limit is never feasible."""
    if attrs.get("infeasible_before_training"):
        return False
    if constraints:
        return all(v <= 0.0 for v in constraints.values())
    f = attrs.get("feasible")
    return f if isinstance(f, bool) else None


# --------------------------------------------------------------------------------------------- build
def build_report(study: optuna.Study, *, color_by: str | None = None, max_curves: int = 200, top: int = 10,
                 importance: bool = True, rules: GapRules | None = None, url: str | None = None) -> ReportData:
    """Compute every section of a report from a study.

    Args:
        study: an Optuna study, single- or multi-objective. Sections that need one value (history,
            curves, slice, contour, best configurations) use the first objective; a multi-objective
            study also gets its Pareto front and an importance per objective.
        color_by: the hyperparameter colouring the learning curves (default: the most important
            one, else ``lr``).
        max_curves: at most this many learning curves are drawn (the best trials, then evenly spread).
        top: how many best configurations to list (feasible trials only, when there are constraints).
        importance: compute parameter importance (fANOVA up to 200 complete trials, PED-ANOVA above).
        rules: thresholds for the over- and underfitting flags.
        url: the study's SQL storage URL, when known: its trials are then read with plain SQL.

    Returns:
        The report's data.
    """
    settings = dict(study.user_attrs.get("shoal", {}) or {})
    directions = [d.name.lower() for d in study.directions]
    objectives = objective_names(settings, len(directions))
    direction, metric = directions[0], objectives[0]
    trials = read_trials(study, url)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state] = states.get(t.state, 0) + 1
    complete = [t for t in trials if t.value is not None]
    maximize = direction == "maximize"
    # The best configurations are feasible ones: a trial that broke a limit is no answer.
    ranked = sorted((t for t in complete if t.feasible is not False), key=lambda t: -t.value if maximize else t.value)
    params = param_data(complete)
    imp = param_importance(complete, direction) if importance else Importance("", {}, "importance was not computed")
    per_objective: dict[str, Importance] = {}
    if len(directions) > 1:
        per_objective[objectives[0]] = imp
        for k in range(1, len(directions)):
            per_objective[objectives[k]] = (param_importance(complete, directions[k], objective=k) if importance
                                            else Importance("", {}, "importance was not computed"))
    if color_by is None:
        # The most important parameter that configs hold (not an on/off switch such as weight_decay_on).
        color_by = next((p for p in imp.values if p in params.values), None) or (
            "lr" if "lr" in params.values or "lr" in params.constant else None)
    rules = rules or GapRules()
    contour, reason = contour_data(params, imp)
    limits = settings.get("constraints")
    return ReportData(
        study_name=study.study_name, direction=direction, metric=metric, settings=settings, states=states,
        trials=trials, history=history(trials, maximize), curves=curve_set(trials, ranked, metric, color_by, max_curves),
        params=params, importance=imp, contour=contour, contour_reason=reason,
        best=[best_row(t) for t in ranked[:top]], gaps=gap_rows(trials, rules), gap_rules=rules,
        stages=stage_rows(trials, maximize), lineage=lineage_data(trials), timing=timing(trials),
        objectives=objectives, directions=directions,
        pareto=pareto_data(trials, objectives, directions) if len(directions) > 1 else None,
        objective_importance=per_objective,
        constraints=[str(c) for c in limits] if isinstance(limits, (list, tuple)) else [],
        constrained=any(t.feasible is not None for t in trials), infeasible=infeasible_rows(trials),
        stage_plan=[dict(s) for s in study.user_attrs.get("stages") or [] if isinstance(s, dict)],
        rungs=rung_rows(trials, maximize),
        **_warm_start(study),
    )


def _warm_start(study: optuna.Study) -> dict[str, Any]:
    """A warm-started study's source and the earlier best configurations' old and new results."""
    info = study.user_attrs.get("warm_start")
    if not info:
        return {}
    from shoal.study._warm import compare

    return {"warm_source": dict(info), "warm": compare(study)}


def objective_names(settings: dict[str, Any], n: int) -> list[str]:
    """The objectives' names, in the order of the values: the study's ``objectives`` setting, else its
    ``metric`` (studies from before multi-objective runs), else ``value`` / ``value 0``, ``value 1``..."""
    names = settings.get("objectives")
    if isinstance(names, (list, tuple)) and len(names) == n and all(isinstance(x, str) and x for x in names):
        return list(names)
    first = str(settings.get("metric", "value"))
    if n == 1:
        return [first]
    return [first if "metric" in settings else "value 0"] + [f"value {k}" for k in range(1, n)]

"""What the dashboard shows, as plain JSON-ready dicts read from a study storage.

Built on the reports' data layer (``read_trials`` and the section functions of ``shoal.report``): the
dashboard adds what a live view needs and a finished report does not: the progress of running trials
(their intermediate values), the population's slots and decisions, and a babysat trial's events,
checkpoints and liveness. Nothing here imports a web framework; ``_app`` serves these dicts.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal._errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from shoal.report import TrialInfo

__all__ = ["NotFound", "Source", "clean", "population_view", "study_list", "study_view", "trial_view"]


def clean(obj: Any) -> Any:
    """``obj`` with every non-finite float turned into None and tuples into lists (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def escape_figure(fig: Any) -> Any:
    """A plotly figure with its text escaped: plotly renders a subset of HTML in names, titles and
    tick labels, so a parameter value such as ``<b>`` must reach it as ``&lt;b&gt;`` (shown as typed)."""
    if isinstance(fig, dict):
        out = {}
        for k, v in fig.items():
            if k in ("name", "text", "ticktext", "hovertext") and isinstance(v, str):
                out[k] = html.escape(v, quote=False)
            elif k in ("text", "ticktext", "hovertext") and isinstance(v, list):
                out[k] = [html.escape(x, quote=False) if isinstance(x, str) else x for x in v]
            else:
                out[k] = escape_figure(v)
        return out
    if isinstance(fig, list):
        return [escape_figure(v) for v in fig]
    return fig


class NotFound(LookupError):
    """No study or trial of that name or number in the storage (the API answers 404)."""


class Source:
    """One storage the dashboard reads: opened once, studies loaded by name.

    Args:
        storage: the ``-s`` value (SQLite file, journal file or SQLAlchemy URL; None: ./shoal.db).
            Unlike ``shoal tune``, a file that does not exist is an error: the dashboard never
            creates a storage.
    """

    def __init__(self, storage: str | None) -> None:
        import optuna

        from shoal.study import resolve_storage

        if storage is None and not Path("shoal.db").exists():
            raise ConfigError("No storage given and no shoal.db in this folder. Pass --storage FILE_OR_URL.")
        if storage is not None and "://" not in storage and not Path(storage.removeprefix("journal:")).exists():
            raise ConfigError(f"Storage file not found: {storage!r}. Check the path (studies are created by "
                              "`shoal tune` or `shoal babysit`).")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec = storage  # what panda's control functions take, as the user gave it
        described = resolve_storage(storage, create=False)
        # SQL storages are read with plain SQL by the report layer (fast for large studies).
        self.url = described if isinstance(described, str) and not described.startswith("journal:") else None
        resolved = resolve_storage(storage)
        self.storage = optuna.storages.get_storage(resolved) if isinstance(resolved, str) else resolved

    def names(self) -> list[str]:
        import optuna

        return optuna.get_all_study_names(self.storage)

    def study(self, name: Any) -> optuna.Study:
        import optuna

        if not isinstance(name, str) or not name:
            raise ConfigError("Name a study: ?study=NAME.")
        if name not in self.names():
            raise NotFound(f"No study named {name!r} in this storage.")
        return optuna.load_study(study_name=name, storage=self.storage)


# ------------------------------------------------------------------------------------------ helpers
def _running_values(study: optuna.Study) -> dict[int, list[float | None]]:
    """The intermediate values (one per epoch) of running trials: their live curve before the trial
    writes its ``curves`` attribute (population trials write it when they end)."""
    return {n: v for n, (v, _) in _running(study).items()}


def _running(study: optuna.Study) -> dict[int, tuple[list[float | None], float | None]]:
    """Running trials: their intermediate values and how many seconds they have been running."""
    import datetime as dt

    from optuna.trial import TrialState

    out = {}
    now = dt.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        iv = t.intermediate_values
        age = (now - t.datetime_start).total_seconds() if t.datetime_start else None
        out[t.number] = ([iv[k] for k in sorted(iv)], age)
    return out


def _trials(src: Source, study: optuna.Study) -> tuple[list[TrialInfo], dict[int, list]]:
    from shoal.report import read_trials

    trials = read_trials(study, src.url)
    live = _running_values(study)
    return trials, live


def _metric(study: optuna.Study) -> str:
    return _objectives(study)[0]


def _objectives(study: optuna.Study) -> list[str]:
    """The objectives' names in the order of the values (the first is the "metric")."""
    from shoal.report._load import objective_names

    settings = study.user_attrs.get("shoal") or {}
    return objective_names(settings if isinstance(settings, dict) else {}, len(study.directions))


def _standing(trials: list, directions: list[str]) -> tuple[int | None, float | None, int | None]:
    """From Optuna's trials: the best feasible trial and its value (one objective), or the size of the
    feasible Pareto front (several): what ``best_trial`` / ``best_trials`` answer, without reading the
    storage again. (A study summary's best trial ignores constraints.)"""
    from shoal.report._load import _feasible
    from shoal.report._sections import pareto_mask
    from shoal.report._sql import constraints_from

    points = []
    for t in trials:
        if t.state.name != "COMPLETE" or t.values is None or not all(math.isfinite(v) for v in t.values):
            continue
        if _feasible(constraints_from(t.system_attrs), t.user_attrs) is not False:
            points.append(t)
    if len(directions) > 1:
        return None, None, sum(pareto_mask([list(t.values) for t in points], directions))
    if not points:
        return None, None, None
    sign = -1.0 if directions[0] == "maximize" else 1.0
    best = min(points, key=lambda t: (sign * t.values[0], t.number))
    return best.number, best.values[0], None


def _parent(t: TrialInfo) -> int | None:
    """A forked trial's parent: babysitting forks (``lineage``) via the report layer, PBT copies via ``pbt.parent``."""
    if t.parent is not None:
        return t.parent
    pbt = t.user_attrs.get("pbt")
    p = pbt.get("parent") if isinstance(pbt, dict) else None
    return p if isinstance(p, int) and not isinstance(p, bool) else None


def _epoch_of(t: TrialInfo, live: dict[int, list]) -> int:
    if t.number in live and live[t.number]:
        return len(live[t.number])
    if t.epochs_run is not None:
        return t.epochs_run
    for v in t.curves.values():
        if isinstance(v, list):
            return len(v)
    return 0


# ------------------------------------------------------------------------------------------- views
def study_list(src: Source) -> list[dict[str, Any]]:
    """Every study of the storage: name, direction, trial counts by state, best value and its trial."""
    import optuna

    out = []
    for s in optuna.get_all_study_summaries(src.storage, include_best_trial=False):
        study = optuna.load_study(study_name=s.study_name, storage=src.storage)
        states: dict[str, int] = {}
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        directions = [d.name.lower() for d in s.directions]
        objectives = _objectives(study)
        best_trial, best_value, front = _standing(trials, directions)
        out.append({
            "name": s.study_name, "direction": ", ".join(directions), "directions": directions,
            "trials": s.n_trials, "states": states, "metric": ", ".join(objectives), "objectives": objectives,
            "best_value": best_value, "best_trial": best_trial, "front_size": front,
            "mode": (study.user_attrs.get("shoal") or {}).get("mode") if isinstance(study.user_attrs.get("shoal"), dict) else None,
            "started": s.datetime_start.isoformat() if s.datetime_start else None,
        })
    return clean(out)


def study_view(src: Source, name: Any, max_curves: int = 200) -> dict[str, Any]:
    """One study: states, best so far, the history and learning-curve figures (running trials' curves
    from their intermediate values), the best configurations, stages, and the running trials; with
    several objectives the Pareto front (figure and table), with limits the infeasible trials. Bests
    count feasible trials only; one-value views use the first objective."""
    from shoal.report._data import GapRules, Importance, ParamData, ReportData
    from shoal.report._html import _curves_fig, _history_fig, _lineage_fig, _pareto_fig, _pareto_matrix_fig
    from shoal.report._sections import (best_row, curve_set, history, infeasible_rows, lineage_data, pareto_data,
                                        stage_rows)

    study = src.study(name)
    # A multi-objective study: its front, plus everything else by the first objective.
    directions = [d.name.lower() for d in study.directions]
    objectives = _objectives(study)
    metric, direction = objectives[0], directions[0]
    maximize = direction == "maximize"
    trials, live = _trials(src, study)
    for t in trials:  # a running trial's curve so far: its reported metric per epoch
        if t.number in live and metric not in t.curves and live[t.number]:
            t.curves = {**t.curves, metric: live[t.number]}
    states: dict[str, int] = {}
    for t in trials:
        states[t.state] = states.get(t.state, 0) + 1
    complete = [t for t in trials if t.value is not None]
    ranked = sorted((t for t in complete if t.feasible is not False), key=lambda t: -t.value if maximize else t.value)
    color_by = "lr" if any("lr" in t.config for t in trials) else None
    curves = curve_set(trials, ranked, metric, color_by, max_curves)
    for t in trials:
        t.parent = _parent(t)
    settings = dict(study.user_attrs.get("shoal") or {})
    limits = settings.get("constraints")
    data = ReportData(
        study_name=study.study_name, direction=direction, metric=metric, settings=settings, states=states,
        trials=trials, history=history(trials, maximize), curves=curves,
        params=ParamData([], [], [], {}, {}, {}, {}), importance=Importance("", {}, "not computed live"),
        contour=None, contour_reason="", best=[best_row(t) for t in ranked[:10]], gaps=[], gap_rules=GapRules(),
        stages=stage_rows(trials, maximize), lineage=lineage_data(trials), timing=None,
        objectives=objectives, directions=directions,
        pareto=pareto_data(trials, objectives, directions) if len(directions) > 1 else None,
        constraints=[str(c) for c in limits] if isinstance(limits, (list, tuple)) else [],
        constrained=any(t.feasible is not None for t in trials), infeasible=infeasible_rows(trials),
    )
    figures = {}
    # Plain hover text (html_text=False): escape_figure escapes every text of the figure.
    for key, make in (("history", _history_fig), ("curves", _curves_fig), ("lineage", _lineage_fig),
                      ("pareto", lambda d: _pareto_fig(d, html_text=False)),
                      ("pareto_matrix", lambda d: _pareto_matrix_fig(d, html_text=False))):
        fig = make(data)
        if fig is not None:
            figures[key] = escape_figure(fig)
    p = data.pareto
    front = [] if p is None else [{"number": n, "values": v, "config": p.configs.get(n, {}), "spread": p.spread.get(n)}
                                  for n, v in p.front_values().items()]
    h = data.history
    best = ranked[0] if ranked else None
    running = [{"number": t.number, "epoch": _epoch_of(t, live), "config": t.config,
                "last": (live.get(t.number) or [None])[-1], "babysat": "panda" in t.user_attrs}
               for t in trials if t.state == "running"]
    return clean({
        "name": study.study_name, "direction": direction, "metric": metric, "states": states,
        "objectives": objectives, "directions": directions,
        "trials": len(trials), "settings": data.settings,
        "best": None if best is None else {"number": best.number, "value": best.value, "values": best.values,
                                           "config": best.config},
        "best_so_far": {"numbers": h.numbers, "values": h.best},
        "front": front,
        "constrained": data.constrained, "constraints": data.constraints,
        "infeasible": [{"number": r.number, "values": r.values, "violations": r.violations, "reason": r.reason}
                       for r in data.infeasible],
        "top": [{"number": b.number, "value": b.value, "values": b.values, "val_acc": b.val_acc, "seconds": b.seconds,
                 "epochs": b.epochs_run, "config": b.config} for b in data.best],
        "stages": [{"stage": s.stage, "trials": s.trials, "complete": s.complete, "best_value": s.best_value,
                    "best_trial": s.best_number} for s in data.stages],
        "running": running,
        "curves_note": f"{curves.metric} per epoch for {len(curves.curves)} of {curves.total} trials" + (
            f", coloured by {curves.color_by}" if curves.color_by else "") + (f". {curves.note}" if curves.note else ""),
        "figures": figures,
        "updated": time.time(),
    })


def _lanes(trials: list[TrialInfo]) -> dict[int, int]:
    """Slots rebuilt from start and end times: each trial takes the lowest slot free when it started
    (the population engine refills a freed slot at once, so this is the slot it trained in)."""
    free_at: list[float] = []  # end time of the trial in each lane (inf while running)
    out = {}
    for t in sorted((t for t in trials if t.start is not None), key=lambda t: (t.start, t.number)):
        end = t.end if t.end is not None else math.inf
        lane = next((i for i, e in enumerate(free_at) if e <= t.start), None)
        if lane is None:
            lane = len(free_at)
            free_at.append(end)
        else:
            free_at[lane] = end
        out[t.number] = lane
    return out


def population_view(src: Source, name: Any) -> dict[str, Any]:
    """The population: which member trains in which slot, at which epoch; successive-halving rung
    decisions and PBT copies.

    PBT records each member's slot (``pbt.slot``); for other population studies the slots are
    rebuilt from start and end times (``_lanes``). Rows are members (trials), newest last.
    """
    from shoal.report import read_trials

    study = src.study(name)
    trials = read_trials(study, src.url)
    running = _running(study)
    live = {n: v for n, (v, _) in running.items()}
    for t in trials:  # a running trial's bar reaches now
        age = running.get(t.number, (None, None))[1]
        if t.end is None and t.start is not None and age is not None:
            t.end = t.start + age
    attrs = study.user_attrs
    pbt_study = attrs.get("pbt") if isinstance(attrs.get("pbt"), dict) else None
    is_pbt = pbt_study is not None or any(isinstance(t.user_attrs.get("pbt"), dict) for t in trials)
    lanes = {} if is_pbt else _lanes(trials)
    members, rungs, copies = [], [], []
    for t in trials:
        a = t.user_attrs
        pbt = a.get("pbt") if isinstance(a.get("pbt"), dict) else {}
        start = int(pbt.get("start_epoch", 0) or 0) if pbt else 0
        epoch = _epoch_of(t, live)
        members.append({
            "number": t.number, "state": t.state, "slot": pbt.get("slot", lanes.get(t.number)),
            "from_epoch": start, "epoch": epoch, "value": t.value, "parent": _parent(t),
            "replaced_by": pbt.get("replaced_by"), "bracket": a.get("bracket"), "stage": t.stage,
            "start": t.start, "end": t.end, "config": t.config,
        })
        for r in a.get("rungs") or []:
            if isinstance(r, dict):
                rungs.append({"number": t.number, "bracket": a.get("bracket"), **r})
        if pbt.get("replaced_by") is not None:
            copies.append({"epoch": pbt.get("at_epoch"), "replaced": t.number, "slot": pbt.get("slot"),
                           "child": pbt.get("replaced_by")})
    for c in copies:  # the child names the member it copied
        child = next((m for m in members if m["number"] == c["child"]), None)
        c["parent"] = child["parent"] if child else None
    rungs.sort(key=lambda r: (r.get("epoch", 0), r["number"]))
    kind = "pbt" if is_pbt else ("halving" if rungs or any(m["bracket"] is not None for m in members) else
                                 ("population" if isinstance(attrs.get("population"), dict) else "trials"))
    return clean({
        "name": study.study_name, "kind": kind, "population": attrs.get("population"), "pbt": pbt_study,
        "stages": attrs.get("stages"), "members": members, "rungs": rungs, "copies": copies,
        "running": sum(1 for m in members if m["state"] == "running"),
        "figure": escape_figure(_slots_fig(members, copies, is_pbt)), "updated": time.time(),
    })


def _slots_fig(members: list[dict], copies: list[dict], by_epoch: bool) -> dict | None:
    """Each member as a bar in its slot: over epochs (PBT) or over seconds (other populations)."""
    from shoal.report._html import STATE_COLORS, _layout

    traces = []
    for state, color in STATE_COLORS.items():
        xs: list = []
        ys: list = []
        text: list = []
        for m in members:
            if m["state"] != state or m["slot"] is None:
                continue
            if by_epoch:
                a, b = m["from_epoch"], max(m["epoch"], m["from_epoch"])
            elif m["start"] is not None:
                a, b = m["start"], m["end"] if m["end"] is not None else m["start"]
            else:
                continue
            xs += [a, b, None]
            ys += [m["slot"], m["slot"], None]
            text += [f"trial {m['number']}", f"trial {m['number']}", None]
        if xs:
            traces.append({"type": "scatter", "mode": "lines+markers", "name": state, "x": xs, "y": ys, "text": text,
                           "hoverinfo": "text+x", "line": {"width": 6, "color": color}, "marker": {"size": 4}})
    if by_epoch and copies:
        slot = {m["number"]: m["slot"] for m in members}
        xs, ys = [], []
        for c in copies:
            p = slot.get(c["parent"])
            if p is not None and c["epoch"] is not None:
                xs += [c["epoch"], c["epoch"], None]
                ys += [p, c["slot"], None]
        if xs:
            traces.append({"type": "scatter", "mode": "lines", "name": "copy (parent -> slot)", "x": xs, "y": ys,
                           "line": {"width": 1, "dash": "dot", "color": "#333"}})
    if not traces:
        return None
    return {"data": traces, "layout": _layout(
        xaxis={"title": {"text": "epoch" if by_epoch else "seconds since the first trial started"}},
        yaxis={"title": {"text": "slot"}, "dtick": 1})}


def trial_view(src: Source, name: Any, number: Any) -> dict[str, Any]:
    """One trial: state, value, config, curves (figure), events, lineage (ancestors and children),
    checkpoints (babysat trials, through panda's own functions), rungs, PBT schedule, liveness."""
    from shoal.panda._checkpoint import list_checkpoints
    from shoal.panda._control import is_alive

    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ConfigError(f"The trial number must be a whole number >= 0. Got {number!r} instead.")
    study = src.study(name)
    trials, live = _trials(src, study)
    by_number = {t.number: t for t in trials}
    if number not in by_number:
        raise NotFound(f"No trial {number} in study {study.study_name!r}.")
    t = by_number[number]
    a = t.user_attrs
    frozen = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
    iv = frozen.intermediate_values
    ancestors, p = [], _parent(t)
    while p is not None and p not in ancestors and p in by_number:
        ancestors.append(p)
        p = _parent(by_number[p])
    children = [c.number for c in trials if _parent(c) == number]
    panda = a.get("panda") if isinstance(a.get("panda"), dict) else None
    checkpoints = []
    if panda is not None and isinstance(panda.get("folder"), str):
        # The folder comes from the trial's own record, written by `shoal babysit`; the request only
        # names a trial number, so no request text ever reaches the filesystem.
        for epoch, step, path in list_checkpoints(Path(panda["folder"])):
            checkpoints.append({"epoch": epoch, "step": step, "name": path.name, "bytes": path.stat().st_size})
    events = [e for e in a.get("events") or [] if isinstance(e, dict)]
    curves = {k: v for k, v in t.curves.items() if isinstance(v, list)}
    return clean({
        "study": study.study_name, "number": number, "state": t.state, "value": t.value,
        "metric": _metric(study), "objectives": _objectives(study), "values": t.values, "feasible": t.feasible,
        "constraints": t.constraints, "measures": a.get("measures") if isinstance(a.get("measures"), dict) else None,
        "infeasible_before_training": a.get("infeasible_before_training"), "config": t.config, "params": t.params,
        "seed": a.get("seed"),
        "seconds": t.seconds, "epochs_run": t.epochs_run, "epoch": _epoch_of(t, live), "device": a.get("device"),
        "engine": a.get("engine"), "stage": t.stage, "fail_reason": t.fail_reason,
        "intermediate": {"epochs": sorted(iv), "values": [iv[k] for k in sorted(iv)]},
        "curves": curves, "events": events,
        "lineage": {"parent": _parent(t), "ancestors": ancestors, "children": children,
                    "fork": a.get("lineage") if isinstance(a.get("lineage"), dict) else None,
                    "pbt": a.get("pbt") if isinstance(a.get("pbt"), dict) else None},
        "schedule": a.get("schedule"), "rungs": a.get("rungs"), "bracket": a.get("bracket"),
        "babysat": panda is not None, "alive": is_alive(frozen) if panda is not None else False,
        "checkpoints": checkpoints, "checkpoint_folder": panda.get("folder") if panda else None,
        "figure": escape_figure(_trial_fig(curves, iv, events, _metric(study))),
        "updated": time.time(),
    })


def _trial_fig(curves: dict[str, list], iv: dict[int, float], events: list[dict], metric: str) -> dict | None:
    """Losses (left axis) and accuracies (right axis) per epoch, the learning rate on its own log axis
    below, and the applied commands as marks on the epoch they happened in."""
    from shoal.report._html import PALETTE, _layout

    traces = []
    colors = {"train_loss": PALETTE[0], "val_loss": PALETTE[1], "train_acc": PALETTE[2], "val_acc": PALETTE[3]}
    for key, color in colors.items():
        ys = curves.get(key)
        if ys:
            traces.append({"type": "scatter", "mode": "lines+markers", "name": key, "x": list(range(1, len(ys) + 1)),
                           "y": ys, "line": {"color": color}, "yaxis": "y2" if key.endswith("acc") else "y"})
    if not traces and iv:
        keys = sorted(iv)
        traces.append({"type": "scatter", "mode": "lines+markers", "name": metric, "x": keys, "y": [iv[k] for k in keys]})
    if curves.get("lr"):
        lr = curves["lr"]
        traces.append({"type": "scatter", "mode": "lines+markers", "name": "lr", "x": list(range(1, len(lr) + 1)),
                       "y": lr, "yaxis": "y3", "line": {"color": PALETTE[4]}})
    marks = [e for e in events if isinstance(e.get("epoch"), (int, float))]
    if marks:
        traces.append({"type": "scatter", "mode": "markers", "name": "events", "yaxis": "y3" if curves.get("lr") else "y",
                       "x": [e["epoch"] + (e.get("step") or 0) * 1e-3 for e in marks],
                       "y": [e.get("lr") for e in marks] if curves.get("lr") else [None] * len(marks),
                       "text": [f"{e.get('what')} {e.get('value') if e.get('value') is not None else ''}" for e in marks],
                       "marker": {"symbol": "diamond", "size": 9, "color": "#222"}})
    if not traces:
        return None
    return {"data": traces, "layout": _layout(
        height=520, xaxis={"title": {"text": "epoch"}},
        yaxis={"title": {"text": "loss"}, "domain": [0.38, 1]},
        yaxis2={"title": {"text": "accuracy"}, "overlaying": "y", "side": "right", "tickformat": ".2f"},
        yaxis3={"title": {"text": "lr"}, "type": "log", "domain": [0, 0.28], "tickformat": ".1e", "nticks": 4})}

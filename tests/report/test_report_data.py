"""The report's data layer on a known study: every number checked, no rendering."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from shoal._errors import ConfigError
from shoal.report import GapRules, build_report, load_report, read_trials
from tests.conftest import subprocess_env


def test_history_best_so_far_and_unfinished_marks(known_db):
    d = load_report(str(known_db))
    assert d.study_name == "known" and d.metric == "val_loss" and d.direction == "minimize"
    assert d.states == {"complete": 4, "pruned": 1, "fail": 1}
    assert d.history.numbers == [0, 1, 2, 5]
    assert d.history.values == [0.5, 0.3, 0.9, 0.2]
    assert d.history.best == [0.5, 0.3, 0.3, 0.2]
    assert list(zip(d.history.other_numbers, d.history.other_states)) == [(3, "pruned"), (4, "fail")]
    assert d.history.stages == ["coarse", "coarse", "coarse", "fine"]


def test_best_configs_in_order_with_their_accuracy(known_db):
    d = load_report(str(known_db), top=3)
    assert [b.number for b in d.best] == [5, 1, 0]
    assert d.best[0].config == {"optimizer": "adam", "lr": 0.003, "width": 128}
    assert d.best[0].val_acc == 0.95 and d.best[0].epochs_run == 3 and d.best[0].seconds == 3.0


def test_gaps_flag_overfitting_and_underfitting(known_db):
    d = load_report(str(known_db))
    rows = {g.number: g for g in d.gaps}
    assert sorted(rows) == [0, 1, 2, 3, 5]  # the failed trial has no curves
    assert rows[1].gap == pytest.approx(0.25) and rows[1].val_rising and rows[1].flag == "overfit"
    assert rows[2].train_acc == 0.3 and rows[2].flag == "underfit"
    assert rows[5].gap == pytest.approx(0.05) and not rows[5].val_rising and rows[5].flag == ""
    # trial 3 was pruned after one epoch at a low train accuracy: stopped by design, not judged
    assert rows[0].flag == "" and rows[3].state == "pruned" and rows[3].flag == ""
    # Stricter rules flag more: trial 5's gap (0.05) is above 0.2 x 0.2 once a rise is not required.
    strict = load_report(str(known_db), rules=GapRules(overfit_ratio=0.2, rise=-1.0, underfit_share=0.1))
    assert {g.number: g.flag for g in strict.gaps}[5] == "overfit"
    assert {g.number: g.flag for g in strict.gaps}[2] == ""


def test_stages_lineage_and_timing(known_db):
    d = load_report(str(known_db))
    coarse, fine = d.stages
    assert (coarse.stage, coarse.trials, coarse.complete, coarse.best_value, coarse.best_number) == ("coarse", 4, 3, 0.3, 1)
    assert (fine.stage, fine.trials, fine.complete, fine.best_value, fine.best_number) == ("fine", 2, 1, 0.2, 5)
    assert d.lineage.edges == [(0, 5)] and d.lineage.values == {0: 0.5, 5: 0.2}
    t = d.timing
    assert t.finished == 6
    assert t.wall_seconds == pytest.approx(53.0)  # trial 0 starts at 0 s, trial 5 ends at 53 s
    assert t.busy_seconds == pytest.approx(5 * 3 + 1)  # no two trials overlap; the failed one ran 1 s
    assert t.idle_seconds == pytest.approx(53 - 16)
    assert t.trial_seconds == pytest.approx(16.0)
    assert t.configs_per_second == pytest.approx(6 / 53)
    assert [s[0] for s in t.segments] == list(range(6)) and t.segments[4][3] == "fail"


def test_curves_coloured_by_a_parameter_and_downsampled(known_db):
    d = load_report(str(known_db), color_by="lr")
    cs = d.curves
    assert cs.metric == "val_loss" and cs.total == 5 and cs.color_by == "lr"
    assert cs.color_kind == "numeric" and cs.color_log  # 0.001 .. 0.1 spans two decades
    assert {c.number: c.values for c in cs.curves}[1] == [1.0, 0.25, 0.3]
    assert {c.number: c.color for c in cs.curves} == {0: 0.01, 1: 0.1, 2: 0.001, 3: 0.05, 5: 0.003}
    small = load_report(str(known_db), color_by="optimizer", max_curves=4)
    assert small.curves.color_kind == "categorical"
    assert len(small.curves.curves) == 4 and "4 of 5 curves drawn" in small.curves.note
    assert 5 in {c.number for c in small.curves.curves}  # the best trial is always drawn
    assert load_report(str(known_db), color_by="no_such_param").curves.color_by is None


def test_params_importance_and_contour(known_db):
    d = load_report(str(known_db))
    p = d.params
    assert p.numbers == [0, 1, 2, 5] and p.objective == [0.5, 0.3, 0.9, 0.2]
    assert p.names == ["optimizer", "lr", "width"]
    assert p.values["lr"] == [0.01, 0.1, 0.001, 0.003] and p.kinds["optimizer"] == "categorical"
    assert p.logs["lr"] and not p.logs["width"]
    assert d.importance.evaluator == "fANOVA" and set(d.importance.values) == {"optimizer", "lr", "width"}
    assert sum(d.importance.values.values()) == pytest.approx(1.0)
    assert list(d.importance.values.values()) == sorted(d.importance.values.values(), reverse=True)
    c = d.contour
    # the two most important numeric parameters: nothing lies between two optimizers to interpolate
    assert [c.x, c.y] == [n for n in d.importance.values if p.kinds[n] == "numeric"][:2]
    assert len(c.z) == len(c.grid_y) == 30 and len(c.z[0]) == len(c.grid_x) == 30
    finite = [v for row in c.z for v in row if v is not None]
    assert finite and 0.2 - 1e-9 <= min(finite) and max(finite) <= 0.9 + 1e-9  # interpolation stays in range
    assert d.contour_reason == ""
    skipped = load_report(str(known_db), importance=False)
    assert skipped.importance.values == {} and skipped.importance.reason == "importance was not computed"
    assert skipped.contour is not None  # the contour falls back to the parameters in table order


def test_sql_fast_path_reads_what_optuna_reads(known_db):
    study = optuna.load_study(study_name="known", storage=f"sqlite:///{known_db}")
    fast = read_trials(study, url=f"sqlite:///{known_db}")
    slow = read_trials(study)
    assert [vars(t) for t in fast] == [vars(t) for t in slow]
    assert fast[3].state == "pruned" and fast[4].fail_reason == "training diverged at epoch 1"


def test_small_studies_say_why_sections_are_empty(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="empty")
    d = build_report(study)
    assert d.history.numbers == [] and d.best == [] and d.timing is None and d.curves.curves == []
    assert "at least 2 complete trials" in d.importance.reason and "at least 4" in d.contour_reason
    dist = {"lr": FloatDistribution(1e-4, 1.0, log=True)}
    for v in (0.4, 0.6, 0.5):  # lr never varies: nothing to rank
        study.add_trial(create_trial(value=v, params={"lr": 0.01}, distributions=dist))
    d = build_report(study)
    assert "no sampled parameter took more than one value" in d.importance.reason
    assert d.params.names == [] and d.params.constant == {"lr": 0.01}
    assert d.history.best == [0.4, 0.4, 0.4]


def test_missing_storage_or_study_is_a_clear_error(known_db, workdir):
    with pytest.raises(ConfigError, match="No storage given and no shoal.db"):
        load_report(None)
    with pytest.raises(ConfigError, match="Storage file not found"):
        load_report("nope.db")
    with pytest.raises(ConfigError, match="No study named 'other'.*Studies here: known"):
        load_report(str(known_db), "other")


def test_data_layer_imports_without_plotly():
    code = ("import sys, shoal.report; from shoal.report import load_report, build_report; "
            "print('plotly' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), check=True)
    assert out.stdout.strip() == "False"


def test_contour_of_a_large_study_is_the_mean_per_cell():
    from shoal.report import Importance, ParamData
    from shoal.report._sections import INTERPOLATE_UP_TO, contour_data

    n = INTERPOLATE_UP_TO + 100
    xs = [i / (n - 1) for i in range(n)]
    ys = [(i * 7 % n) / (n - 1) for i in range(n)]
    params = ParamData(list(range(n)), [10 * x for x in xs], ["a", "b"], {"a": xs, "b": ys},
                       {"a": "numeric", "b": "numeric"}, {"a": False, "b": False}, {})
    c, reason = contour_data(params, Importance("fANOVA", {"b": 0.6, "a": 0.4}), size=10)
    assert reason == "" and c.method == "cell mean" and (c.x, c.y) == ("b", "a")
    # The value is 10 x a, and a is the y axis: each row's cells hold means within that row's band.
    for row, (lo, hi) in zip(c.z, [(k / 10, (k + 1) / 10) for k in range(10)]):
        for v in row:
            assert v is None or 10 * lo - 1e-9 <= v <= 10 * hi + 1e-9
    assert sum(v is not None for row in c.z for v in row) > 50


def test_an_off_switch_is_named_after_the_parameter_it_guards():
    from shoal.report._sections import param_label

    assert param_label("l1_on") == "l1 on/off" and param_label("weight_decay_on") == "weight_decay on/off"
    assert param_label("lr") == "lr" and param_label("_on") == "_on"


def test_timing_leaves_out_the_pauses_between_runs_of_a_study():
    from types import SimpleNamespace

    from shoal.report._sections import RUN_GAP_S, timing

    def trial(number, start, end):
        return SimpleNamespace(number=number, start=start, end=end, state="complete", seconds=end - start)

    # two runs: 0-10 s (two trials at once from 2 to 8 s), then, an hour later, 3600-3605 s
    t = timing([trial(0, 0.0, 8.0), trial(1, 2.0, 10.0), trial(2, 3600.0, 3605.0)])
    assert t.runs == 2 and t.between_runs_seconds == pytest.approx(3590.0)
    assert t.wall_seconds == pytest.approx(15.0) and t.busy_seconds == pytest.approx(15.0)
    assert t.idle_seconds == pytest.approx(0.0) and t.configs_per_second == pytest.approx(3 / 15)
    # a pause no longer than RUN_GAP_S is a run's own idle time
    short = timing([trial(0, 0.0, 8.0), trial(1, 8.0 + RUN_GAP_S, 10.0 + RUN_GAP_S)])
    assert short.runs == 1 and short.idle_seconds == pytest.approx(RUN_GAP_S)


def test_the_terminal_report_says_when_it_lists_only_some_flagged_trials(known_db):
    import io

    from rich.console import Console

    from shoal.report._terminal import print_report

    d = load_report(str(known_db))
    assert sum(bool(g.flag) for g in d.gaps) == 2
    for top, title in ((1, "flagged trials (1 of 2; the HTML report lists all)"), (5, "flagged trials")):
        console = Console(file=io.StringIO(), width=140)
        print_report(d, console, top=top)
        out = console.file.getvalue()
        assert title in out and (top == 1 or "of 2;" not in out), out


def test_a_log_parameter_is_drawn_on_a_log_axis_even_over_a_narrow_range(tmp_path):
    # eps sampled on a log scale but within 10x: the recorded distribution decides, not the spread
    url = f"sqlite:///{tmp_path / 'eps.db'}"
    study = optuna.create_study(storage=url, study_name="eps")
    dists = {"eps": FloatDistribution(1e-8, 1e-7, log=True), "x": FloatDistribution(1.0, 5.0)}
    for i, (eps, x) in enumerate(((1e-8, 1.0), (3e-8, 2.0), (9e-8, 4.0))):
        study.add_trial(create_trial(value=float(i), params={"eps": eps, "x": x}, distributions=dists))
    p = load_report(str(tmp_path / "eps.db")).params
    assert p.logs["eps"] and not p.logs["x"]


def test_a_coarse_to_fine_report_shows_what_each_stage_searched(workdir):
    import shoal
    from shoal.report._html import fmt, render_html, stage_plan_rows

    result = shoal.tune(data="digits", strategy="coarse-to-fine", stages="random:6,tpe", trials=10, epochs=1,
                        storage="c.db", progress=False, params={"width": 32, "depth": 1})
    d = load_report("c.db")
    narrowed = result.study.user_attrs["stages"][1]["overrides"]
    rows = stage_plan_rows(d)
    assert rows[0] == ["0", "random", "6", "", "the whole space"]
    assert narrowed and rows[1][:3] == ["1", "tpe", "4"]
    assert [r[3] for r in rows[1:]] == list(narrowed)  # one row per narrowed parameter, in order
    for r in rows[1:]:
        change = narrowed[r[3]]
        if isinstance(change, dict) and "low" in change:
            assert r[4].startswith(f"{fmt(change['low'])} to {fmt(change['high'])}")
        elif isinstance(change, list):
            assert r[4] == ", ".join(str(v) for v in change)
    assert "Coarse-to-fine: what each stage searched" in render_html(d)


def test_interrupted_trials_are_drawn_in_the_timeline_but_not_counted_as_finished(tmp_path):
    from shoal.report._data import TrialInfo
    from shoal.report._sections import stage_rows, timing

    def trial(n, state, start, end, reason=None, stage=None):
        return TrialInfo(n, state, 0.5 if state == "complete" else None, {}, {}, seconds=end - start, start=start,
                         end=end, fail_reason=reason, stage=stage)

    trials = [trial(0, "complete", 0.0, 2.0, stage=0), trial(1, "fail", 0.0, 1.0, "interrupted", stage=0),
              trial(2, "complete", 3.0, 5.0, stage=0)]  # trial 2 is trial 1's retry
    t = timing(trials)
    assert t.finished == 2 and t.configs_per_second == pytest.approx(2 / 5.0)
    assert [s[0] for s in t.segments] == [0, 1, 2]  # its time was spent: it is drawn
    assert stage_rows(trials, maximize=False)[0].trials == 2  # the stage ran 2 configurations, not 3


def test_rungs_of_successive_halving_are_summed_per_bracket_and_epoch():
    from shoal.report._data import TrialInfo
    from shoal.report._sections import rung_rows

    def trial(n, bracket, rungs):
        return TrialInfo(n, "pruned", None, {}, {}, user_attrs={"bracket": bracket, "rungs": [
            {"epoch": e, "value": v, "rank": 1, "of": 1, "kept": k} for e, v, k in rungs]})

    trials = [trial(0, 0, [(1, 0.9, False)]), trial(1, 0, [(1, 0.5, True), (3, 0.4, False)]),
              trial(2, 0, [(1, 0.6, True), (3, 0.3, True)]), trial(3, 1, [(3, 0.35, True)]),
              TrialInfo(4, "complete", 0.2, {}, {})]  # no rungs (another strategy's trial): left out
    assert rung_rows(trials, maximize=False) == [[0, 1, 3, 2, 0.5], [0, 3, 2, 1, 0.3], [1, 3, 1, 1, 0.35]]
    assert rung_rows(trials, maximize=True)[0][4] == 0.9

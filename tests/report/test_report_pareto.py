"""Multi-objective and constrained studies in reports: the Pareto front (checked against Optuna's own
``best_trials``), infeasible trials, objectives by name, importance per objective, the HTML section and
the terminal table."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import create_trial

from shoal.report import build_report, load_report, read_trials, render_html
from shoal.report._html import PARETO_SECTION, _history_fig, _importance_fig, _pareto_fig, _pareto_matrix_fig
from shoal.report._load import objective_names
from shoal.report._sections import pareto_mask
from tests.report.conftest import LIMIT, MULTI, MULTI_FRONT, build_multi_study


def test_front_is_optunas_best_trials_best_first(multi_db):
    d = load_report(str(multi_db))
    study = optuna.load_study(study_name="multi", storage=f"sqlite:///{multi_db}")
    p = d.pareto
    assert d.multi and d.objectives == ["val_acc", "train_seconds"] and d.directions == ["maximize", "minimize"]
    assert d.metric == "val_acc" and d.direction == "maximize"  # the first objective drives one-value sections
    assert p.front == MULTI_FRONT
    assert sorted(p.front) == sorted(t.number for t in study.best_trials)
    # Trial 5 stopped before training (-inf, +inf): not a point; trial 4 trained but broke the limit.
    assert p.numbers == [0, 1, 2, 3, 4, 6, 7, 10, 11] and p.dropped == 1
    assert dict(zip(p.numbers, p.feasible)) == {n: n != 4 for n in p.numbers}
    assert p.front_values()[11] == [0.92, 8.0] and p.front_values()[3] == [0.7, 1.0]
    assert p.configs[2] == {"optimizer": "sgd", "lr": 0.1, "width": 64}


def test_best_and_history_count_feasible_trials_only(multi_db):
    d = load_report(str(multi_db), top=3)
    # Trial 4 has the highest accuracy (0.95) but 150,000 parameters: it is never the best.
    assert [b.number for b in d.best] == [11, 1, 6]
    assert d.best[0].values == [0.92, 8.0]
    h = d.history
    assert h.numbers == [0, 1, 2, 3, 4, 6, 7, 10, 11]
    assert h.best == [0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.92]
    assert [n for n, ok in zip(h.numbers, h.feasible) if not ok] == [4]
    assert list(zip(h.other_numbers, h.other_states)) == [(5, "infeasible"), (8, "pruned"), (9, "fail")]
    assert d.constrained and d.constraints == [f"params<={LIMIT}"]
    rows = {r.number: r for r in d.infeasible}
    assert sorted(rows) == [4, 5]
    assert rows[4].violations == {"params": 50_000.0} and rows[4].values == [0.95, 9.0] and rows[4].reason == ""
    assert rows[5].values == [None, None] and rows[5].reason == f"params 400000 > {LIMIT}"


def test_importance_per_objective(multi_db):
    d = load_report(str(multi_db))
    assert list(d.objective_importance) == ["val_acc", "train_seconds"]
    for imp in d.objective_importance.values():
        assert imp.evaluator == "fANOVA" and set(imp.values) == {"optimizer", "lr", "width"}
        assert sum(imp.values.values()) == pytest.approx(1.0)
    assert d.objective_importance["val_acc"] is d.importance
    # The two objectives are different functions of the parameters: their rankings differ.
    assert d.objective_importance["val_acc"].values != d.objective_importance["train_seconds"].values
    assert load_report(str(multi_db), importance=False).objective_importance["train_seconds"].values == {}


def test_sql_fast_path_and_journal_read_every_objective_and_constraint(multi_db, tmp_path):
    study = optuna.load_study(study_name="multi", storage=f"sqlite:///{multi_db}")
    fast = read_trials(study, url=f"sqlite:///{multi_db}")
    slow = read_trials(study)
    assert [vars(t) for t in fast] == [vars(t) for t in slow]
    by = {t.number: t for t in fast}
    assert by[4].constraints == {"params": 50_000.0} and by[4].feasible is False and by[0].feasible is True
    assert by[5].values == [None, None] and by[5].value is None and by[8].values == []
    log = tmp_path / "multi.log"
    build_multi_study(log)
    assert load_report(f"journal:{log}").pareto.front == MULTI_FRONT


@pytest.mark.parametrize("directions", [["minimize", "minimize"], ["maximize", "minimize", "minimize"],
                                        ["maximize", "maximize", "minimize", "maximize"]])
def test_pareto_mask_agrees_with_optuna_on_random_points(directions):
    rng = random.Random(len(directions))
    study = optuna.create_study(directions=directions)
    points = []
    for _ in range(150):
        v = [round(rng.random(), 1) for _ in directions]  # rounded: many ties and equal points
        points.append(v)
        study.add_trial(create_trial(values=v))
    mask = pareto_mask(points, directions)
    front = {t.number for t in study.best_trials}
    assert {i for i, m in enumerate(mask) if m} == front and 1 < len(front) < 150
    assert pareto_mask([], directions) == [] and pareto_mask([points[0]], directions) == [True]


def test_three_objectives_front_and_scatter_matrix(tmp_path):
    go = pytest.importorskip("plotly.graph_objects")
    path = tmp_path / "three.db"
    build_multi_study(path, "three", ("val_acc", "train_seconds", "params"), ("maximize", "minimize", "minimize"))
    d = load_report(str(path))
    study = optuna.load_study(study_name="three", storage=f"sqlite:///{path}")
    assert sorted(d.pareto.front) == sorted(t.number for t in study.best_trials)
    assert d.pareto.front_values()[3] == [0.7, 1.0, 20_000.0]
    fig = _pareto_matrix_fig(d)
    go.Figure(fig)
    front = next(t for t in fig["data"] if t["name"] == "Pareto front")
    assert [dim["label"] for dim in front["dimensions"]] == ["val_acc", "train_seconds", "params"]
    assert len(front["dimensions"][0]["values"]) == len(d.pareto.front)
    assert list(d.objective_importance) == ["val_acc", "train_seconds", "params"]


def test_pareto_figure_front_step_line_grey_infeasible_and_hover(multi_db):
    go = pytest.importorskip("plotly.graph_objects")
    d = load_report(str(multi_db))
    fig = _pareto_fig(d)
    go.Figure(fig)
    traces = {t["name"]: t for t in fig["data"]}
    front = traces["Pareto front (6)"]
    assert front["mode"] == "lines+markers" and front["line"]["shape"] == "hv"  # x (seconds) is minimized
    assert front["x"] == [1.0, 2.0, 2.0, 3.0, 5.0, 8.0] and front["y"] == [0.7, 0.8, 0.8, 0.85, 0.9, 0.92]
    assert traces["infeasible"]["x"] == [9.0] and traces["infeasible"]["marker"]["color"] == "#b0b0b0"
    assert sorted(traces["other feasible trials"]["y"]) == [0.6, 0.88]
    assert front["text"][0].startswith("trial 3<br>val_acc 0.7<br>train_seconds 1<br>optimizer=sgd<br>lr=0.03")
    assert all(math.isfinite(v) for t in fig["data"] for v in t["x"] + t["y"])  # trial 5's infinities dropped
    assert _pareto_matrix_fig(d) is None  # two objectives: the scatter is enough
    hist = _history_fig(d)
    go.Figure(hist)
    names = [t["name"] for t in hist["data"]]
    assert "best feasible so far" in names and "infeasible before training (no value)" in names
    imp = _importance_fig(d)
    assert [t["name"] for t in imp["data"]] == ["val_acc", "train_seconds"]


def test_html_report_has_the_front_section_first_and_says_which_objective(multi_db):
    page = render_html(load_report(str(multi_db)))
    assert page.index('<section id="pareto">') < page.index('<section id="history">')
    assert f'<a href="#{PARETO_SECTION[0]}">' in page and 'id="fig-pareto"' in page
    assert "val_acc (maximize), train_seconds (minimize)" in page
    assert "this section shows the first, val_acc" in page
    assert '<section id="constraints">' in page and "2 of 10 complete trials broke a limit" in page
    assert "params 400000 &gt; 100000" in page  # the reason trial 5 never trained


def test_constrained_single_objective_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = optuna.create_study(storage=url, study_name="c", direction="maximize")
    study.set_user_attr("shoal", {"metric": "val_acc", "constraints": ["epoch_seconds<=2"]})
    for acc, secs in ((0.9, 1.5), (0.97, 3.0), (0.8, 0.5), (0.95, 2.5), (0.93, 2.0)):
        t = study.ask()
        t.suggest_float("lr", 1e-3, 1.0, log=True)
        t.set_constraint("epoch_seconds", secs - 2)
        study.tell(t, acc)
    d = build_report(study)
    assert not d.multi and d.pareto is None and d.objective_importance == {}
    assert d.best[0].number == study.best_trial.number == 4  # 0.93 at exactly the limit; 0.97 and 0.95 broke it
    assert [b.number for b in d.best] == [4, 0, 2]
    assert [r.number for r in d.infeasible] == [1, 3] and d.infeasible[0].violations == {"epoch_seconds": 1.0}
    assert d.history.best == [0.9, 0.9, 0.9, 0.9, 0.93]
    page = render_html(d)
    assert '<section id="constraints">' in page and '<section id="pareto">' not in page
    assert "2 of 5 complete trials broke a limit (limits: epoch_seconds&lt;=2)" in page


def test_objective_names_fall_back_for_older_studies():
    assert objective_names({"metric": "val_loss"}, 1) == ["val_loss"]
    assert objective_names({"metric": "val_acc", "objectives": ["val_acc", "params"]}, 2) == ["val_acc", "params"]
    assert objective_names({"metric": "val_acc"}, 2) == ["val_acc", "value 1"]
    assert objective_names({}, 3) == ["value 0", "value 1", "value 2"]
    assert objective_names({"objectives": ["a"]}, 2) == ["value 0", "value 1"]  # wrong length: not trusted


def test_unconstrained_single_objective_report_is_unchanged(known_db):
    d = load_report(str(known_db))
    assert not d.multi and not d.constrained and d.infeasible == [] and d.pareto is None
    page = render_html(d)
    assert '<section id="pareto">' not in page and '<section id="constraints">' not in page


def test_cli_report_prints_the_front(multi_db, workdir, monkeypatch, capsys):
    from tests.cli.test_cli import run_cli

    assert run_cli(monkeypatch, "report", "-s", str(multi_db), "--no-html") == 0
    out = capsys.readouterr().out
    assert "Pareto front: 6 trials (best val_acc first)" in out
    lines = [ln for ln in out.splitlines() if ln.startswith("│") and ln.split("│")[1].strip().isdigit()]
    front_rows = [ln.split("│")[1].strip() for ln in lines][: len(MULTI_FRONT)]
    assert front_rows == [str(n) for n in MULTI_FRONT]
    assert "2 of 10 complete trials broke a limit" in out and "infeasible trials" in out
    assert "best feasible val_acc (the first objective) 0.92 at trial 11" in out
    assert "parameter importance per objective" in out
    assert MULTI[4][1][0] == 0.95 and "0.95" in out  # the infeasible trial is listed with its value


def test_tuned_multi_objective_study_end_to_end(workdir, monkeypatch, capsys):
    """`shoal tune` with two objectives and a limit, then the report and the dashboard's view of it."""
    from shoal.dashboard import Source, study_view
    from tests.cli.test_cli import run_cli

    # Digits MLPs of one hidden layer: width 32 has 2,410 parameters, width 64 has 4,810 (over the limit,
    # so those trials stop before training with the worst values).
    args = ["tune", "--data", "digits", "--preset", "mlp", "--epochs", "2", "-p", "width=32,64", "-p", "depth=1",
            "--strategy", "random", "--trials", "6", "--seed", "0", "--metric", "val_acc,train_seconds",
            "-c", "params<=3000", "-s", "mo.log", "-q", "--engine", "single"]
    assert run_cli(monkeypatch, *args) == 0
    capsys.readouterr()
    d = load_report("mo.log", importance=False)
    study = optuna.load_study(study_name=d.study_name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend("mo.log")))
    assert d.objectives == ["val_acc", "train_seconds"] and d.directions == ["maximize", "minimize"]
    assert sorted(d.pareto.front) == sorted(t.number for t in study.best_trials) and d.pareto.front
    wide = {t.number for t in study.trials if t.user_attrs["config"]["width"] == 64}
    assert wide and len(wide) < 6  # the seed draws both widths
    assert {r.number for r in d.infeasible} == wide and all(r.reason and r.values == [None, None] for r in d.infeasible)
    assert d.pareto.dropped == len(wide) and not set(d.pareto.front) & wide
    assert [n for n, s in zip(d.history.other_numbers, d.history.other_states) if s == "infeasible"] == sorted(wide)
    assert {b.number for b in d.best}.isdisjoint(wide)
    view = study_view(Source("mo.log"), d.study_name)
    assert [f["number"] for f in view["front"]] == d.pareto.front and "pareto" in view["figures"]
    assert run_cli(monkeypatch, "report", "-s", "mo.log", "--no-html") == 0
    out = capsys.readouterr().out
    assert f"Pareto front: {len(d.pareto.front)} trials" in out and "infeasible trials" in out


def test_front_table_shows_the_spread_over_folds():
    from shoal.report._html import front_table_rows

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("shoal", {"objectives": ["val_acc", "params"]})
    for acc, params, std in ((0.9, 5000.0, 0.02), (0.8, 2000.0, 0.05), (0.7, 6000.0, 0.01)):
        study.add_trial(create_trial(values=[acc, params], user_attrs={
            "config": {"width": params / 100}, "measures": {"val_acc": acc, "val_acc_std": std, "params": params}}))
    d = build_report(study, importance=False)
    assert d.pareto.front == [0, 1] and d.pareto.spread == {0: {"val_acc": 0.02}, 1: {"val_acc": 0.05}}
    header, rows = front_table_rows(d)
    assert header == ["#", "val_acc", "val_acc std", "params", "width"]
    assert rows == [["0", "0.9", "0.02", "5000", "50"], ["1", "0.8", "0.05", "2000", "20"]]


def test_empty_and_all_infeasible_multi_objective_studies_render(tmp_path):
    import io

    from rich.console import Console

    from shoal.dashboard import Source, study_list, study_view
    from shoal.report._terminal import print_report

    url = f"sqlite:///{tmp_path / 'edge.db'}"
    optuna.create_study(storage=url, study_name="empty", directions=["maximize", "minimize"])
    bad = optuna.create_study(storage=url, study_name="bad", directions=["maximize", "minimize"])
    for v in ([0.5, 1.0], [0.6, 2.0], [-math.inf, math.inf]):
        bad.add_trial(create_trial(values=v, system_attrs={"constraints:x": 1.0}, user_attrs={"config": {"lr": v[1]}}))
    for name, infeasible in (("empty", 0), ("bad", 3)):
        d = build_report(optuna.load_study(study_name=name, storage=url))
        assert d.pareto.front == [] and d.best == [] and len(d.infeasible) == infeasible
        page = render_html(d)
        assert '<section id="pareto">' in page
        console = Console(file=io.StringIO(), width=120)
        print_report(d, console)
        assert "No Pareto front yet" in console.file.getvalue()
        v = study_view(Source(str(tmp_path / "edge.db")), name)
        assert v["front"] == [] and v["best"] is None
    assert _pareto_fig(build_report(bad))["data"][0]["name"] == "infeasible"
    assert {s["name"]: s["front_size"] for s in study_list(Source(str(tmp_path / "edge.db")))} == {"empty": 0, "bad": 0}

"""Comparisons: the stored runs' statistics checked exactly, and one small real run on digits."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats

from shoal._errors import ConfigError
from shoal.report._compare import load_comparison, run_comparison, t_interval
from shoal.report._compare_view import COMPARE_SECTIONS, render_comparison
from tests.report.test_report_html import external_references

# (value, lr mode, lr, replicate) -> (val_loss curve, final val_acc); seconds are 1 per epoch
RUNS = {
    ("sgd", "default", 0.01, 0): ([2.0, 1.5, 1.2], 0.60),
    ("sgd", "default", 0.01, 1): ([2.1, 1.6, 1.0], 0.64),
    ("sgd", "default", 0.01, 2): ([2.2, 1.4, 1.1], 0.62),
    ("adam", "default", 0.01, 0): ([1.0, 0.8, 0.3], 0.90),
    ("adam", "default", 0.01, 1): ([0.9, 0.6, 0.4], 0.92),
    ("adam", "default", 0.01, 2): ([1.1, 0.4, 0.2], 0.94),
}


def _hand_made(path) -> str:
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name="cmp")
    study.set_user_attr("compare", {"param": "optimizer", "values": ["sgd", "adam"], "data": "digits", "seeds": 3,
                                    "budget": 0, "epochs": 3, "default_lr": 0.01, "tuned_lr": {},
                                    "tuning_studies": {}})
    dists = {"optimizer": CategoricalDistribution(["sgd", "adam"]), "lr": FloatDistribution(1e-6, 10, log=True)}
    for (v, mode, lr, r), (curve, acc) in RUNS.items():
        study.add_trial(create_trial(value=curve[-1], params={"optimizer": v, "lr": lr}, distributions=dists,
                                     user_attrs={"compare": {"value": v, "lr_mode": mode, "lr": lr, "replicate": r},
                                                 "config": {"optimizer": v, "lr": lr},
                                                 "curves": {"val_loss": curve, "val_acc": [0.0, 0.0, acc],
                                                            "train_loss": [c * 0.9 for c in curve],
                                                            "seconds": [1.0, 1.0, 1.0]}}))
    # A failed run counts as a run of its setting but adds no numbers.
    study.add_trial(create_trial(state=TrialState.FAIL, params={"optimizer": "sgd", "lr": 0.01}, distributions=dists,
                                 user_attrs={"compare": {"value": "sgd", "lr_mode": "default", "lr": 0.01,
                                                         "replicate": 3}, "fail_reason": "diverged"}))
    return url


def test_stored_runs_give_means_spreads_intervals_and_convergence(tmp_path):
    _hand_made(tmp_path / "c.db")
    d = load_comparison(str(tmp_path / "c.db"), "cmp")
    sgd, adam = d.groups
    assert (sgd.value, sgd.lr_mode, sgd.runs, sgd.failed) == ("sgd", "default", 4, 1)
    assert sgd.epochs == [1, 2, 3]
    assert sgd.val_loss_mean == pytest.approx([2.1, 1.5, 1.1])
    assert sgd.val_loss_std == pytest.approx([0.1, 0.1, 0.1])
    assert sgd.val_loss_min == pytest.approx([2.0, 1.4, 1.0]) and sgd.val_loss_max == pytest.approx([2.2, 1.6, 1.2])
    # Default target: the median of each setting's lowest mean loss (1.1 and 0.3) -> 0.7.
    assert d.target_loss == pytest.approx(0.7)
    assert adam.val_loss_mean == pytest.approx([1.0, 0.6, 0.3])
    assert adam.epochs_to_target == [3, 2, 2] and adam.seconds_to_target == [3.0, 2.0, 2.0]
    assert sgd.epochs_to_target == [None, None, None]
    accs = [0.90, 0.92, 0.94]
    half = stats.t.ppf(0.975, 2) * np.std(accs, ddof=1) / math.sqrt(3)
    assert adam.acc_mean == pytest.approx(0.92) and adam.acc_ci == pytest.approx((0.92 - half, 0.92 + half))
    assert adam.seconds_total == [3.0, 3.0, 3.0]
    fixed = load_comparison(str(tmp_path / "c.db"), "cmp", target_loss=1.5)
    assert fixed.groups[0].epochs_to_target == [2, 3, 2] and fixed.groups[0].seconds_to_target == [2.0, 3.0, 2.0]
    assert t_interval([1.0]) is None


def test_a_plain_study_is_not_a_comparison(known_db):
    with pytest.raises(ConfigError, match="not a comparison"):
        load_comparison(str(known_db), "known")


@pytest.mark.parametrize("kwargs, message", [
    ({"param": "lr"}, "must be one of"),
    ({"param": "activation", "values": ["relu", "swish"]}, "not a choice of 'activation'"),
    ({"param": "init", "values": ["he"]}, "at least 2 values"),
    ({"seeds": 0}, "'seeds' setting must be an integer >= 1"),
    ({"search_engine": "ray"}, "'search_engine' must be 'population' or 'single'"),
])
def test_bad_comparison_settings_are_clear_errors(workdir, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        run_comparison(**kwargs, progress=False)
    assert not (workdir / "shoal.db").exists()  # nothing written


def test_small_real_comparison_is_stored_and_reused(workdir):
    d = run_comparison("activation", values=["relu", "tanh"], data="digits", seeds=2, budget=2, epochs=1,
                       storage="cmp.db", search_engine="single", progress=False)
    url = "sqlite:///cmp.db"
    assert sorted(optuna.get_all_study_names(url)) == ["compare-activation-digits", "compare-activation-digits/lr-relu",
                                                      "compare-activation-digits/lr-tanh"]
    final = optuna.load_study(study_name="compare-activation-digits", storage=url)
    trials = final.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2 * 2 * 2
    assert len({t.user_attrs["seed"] for t in trials}) == 8  # every run has its own seed
    assert {t.user_attrs["engine"] for t in trials} == {"single"}
    for value in ("relu", "tanh"):
        search = optuna.load_study(study_name=f"compare-activation-digits/lr-{value}", storage=url)
        assert len(search.trials) == 2 and {t.user_attrs["config"]["activation"] for t in search.trials} == {value}
        assert d.settings["tuned_lr"][value] == search.best_trial.user_attrs["config"]["lr"]
    assert [(g.value, g.lr_mode, g.runs) for g in d.groups] == [
        ("relu", "tuned", 2), ("relu", "default", 2), ("tanh", "tuned", 2), ("tanh", "default", 2)]
    # Each group's mean curve is the mean of its stored runs.
    relu = [t for t in trials if t.user_attrs["compare"]["value"] == "relu" and t.user_attrs["compare"]["lr_mode"] == "default"]
    assert all(t.user_attrs["config"]["lr"] == 0.01 and t.user_attrs["config"]["width"] == 128 for t in relu)
    expected = np.mean([t.user_attrs["curves"]["val_loss"] for t in relu], axis=0)
    assert d.groups[1].val_loss_mean == pytest.approx(list(expected))
    assert d.groups[1].final_acc == pytest.approx([t.user_attrs["curves"]["val_acc"][-1] for t in relu])

    again = run_comparison("activation", values=["relu", "tanh"], data="digits", seeds=2, budget=2, epochs=1,
                           storage="cmp.db", search_engine="single", progress=False)
    assert len(optuna.load_study(study_name="compare-activation-digits", storage=url).trials) == 8  # nothing re-run
    assert again.groups[1].val_loss_mean == d.groups[1].val_loss_mean

    page = render_comparison(d)
    for sid, _ in COMPARE_SECTIONS:
        assert f'<section id="{sid}">' in page
    assert external_references(page) == []


def test_comparison_figures_are_valid_plotly_and_the_page_is_offline(tmp_path):
    go = pytest.importorskip("plotly.graph_objects")
    from shoal.report._compare_view import _accuracy_fig, _curves_fig, _speed_fig, summary_rows

    _hand_made(tmp_path / "c.db")
    d = load_comparison(str(tmp_path / "c.db"), "cmp")
    for fig in (_curves_fig(d), _speed_fig(d), _accuracy_fig(d)):
        go.Figure(fig)
    header, rows = summary_rows(d)
    assert rows[0][:3] == ["sgd", "default 0.01", "3+1 failed"] and rows[0][5] == "- (0/3)"
    assert rows[1][5] == "2.333 (3/3)" and rows[1][6] == "2.333"  # epochs 3, 2, 2 at one second each
    assert rows[1][4].startswith("0.9200 ± ")
    page = render_comparison(d)
    assert external_references(page) == [] and "budget 0" in page


def test_cli_compare_with_a_bad_param_exits_2(workdir, monkeypatch, capsys):
    from tests.cli.test_cli import run_cli

    assert run_cli(monkeypatch, "compare", "--param", "dropout", "--no-html") == 2
    assert "must be one of ['optimizer', 'activation'" in capsys.readouterr().err
    assert run_cli(monkeypatch, "compare-optimizers", "--values", "adam,lion", "--no-html") == 2
    assert "not a choice of 'optimizer'" in capsys.readouterr().err
    assert not (workdir / "shoal.db").exists()


def test_the_summary_line_makes_no_interval_claim_with_one_seed(workdir):
    import io

    from rich.console import Console

    from shoal.report._compare_view import print_comparison

    d = run_comparison("activation", values=["relu", "tanh"], data="digits", seeds=1, budget=0, epochs=1,
                       storage="one.db", progress=False)
    out = io.StringIO()
    print_comparison(d, Console(file=out, width=200))
    text = " ".join(out.getvalue().split())
    assert "highest mean accuracy:" in text
    assert "no other interval overlaps" not in text and "with one seed per group there is no interval" in text


def test_compare_figures_band_edges_are_lines_and_accuracy_intervals_stay_within_0_and_1(tmp_path):
    from shoal.report._compare import _within_0_1
    from shoal.report._compare_view import _accuracy_fig, _curves_fig

    _hand_made(tmp_path / "c.db")
    d = load_comparison(str(tmp_path / "c.db"), "cmp")
    bands = [t for t in _curves_fig(d)["data"] if t.get("fill") == "toself"]
    assert bands and all(t["mode"] == "lines" for t in bands)  # plotly's default drew stray markers
    assert all(v > 0 for t in bands for v in t["y"])  # the axis is log
    mean = _accuracy_fig(d)["data"][0]
    assert all(m + up <= 1.0 + 1e-12 for m, up in zip(mean["y"], mean["error_y"]["array"]))
    assert _within_0_1((0.91, 1.07)) == (0.91, 1.0) and _within_0_1((-0.2, 0.4)) == (0.0, 0.4)
    assert _within_0_1(None) is None

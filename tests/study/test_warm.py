"""Warm starts: a new study re-runs an earlier study's best configurations first, learns from them,
optionally searches a space narrowed around them, and says how they fared."""

from __future__ import annotations

import math

import optuna
import pytest
from typer.testing import CliRunner

import shoal
from shoal._errors import ConfigError
from shoal.space import Categorical, Float, Space
from shoal.study import resolve_storage
from shoal.study._warm import compare


def _space() -> Space:
    return Space([Float("lr", 1e-4, 1.0, log=True), Categorical("opt", ["a", "b", "c"])])


def old_data(config):
    return (math.log10(config["lr"]) + 2) ** 2 + (config["opt"] != "a")


def new_data(config):  # the data changed: the best lr moved, and "b" is now the best choice
    return (math.log10(config["lr"]) + 1.5) ** 2 + 0.5 * (config["opt"] != "b")


@pytest.fixture
def earlier(workdir):
    shoal.tune(old_data, space=_space(), trials=20, storage="old.log", study="old", seed=2, progress=False)
    study = optuna.load_study(study_name="old", storage=resolve_storage("old.log"))
    return sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)


def test_the_earlier_best_run_first_and_are_compared(earlier):
    result = shoal.retune("old.log", top=3, objective=new_data, space=_space(), trials=10, storage="new.log",
                          study="new", progress=False)
    trials = result.study.get_trials()
    assert len(trials) == 10
    for t, old in zip(trials[:3], earlier[:3]):
        assert t.user_attrs["warm_start_of"] == {"study": "old", "trial": old.number, "value": old.value}
        assert t.user_attrs["config"] == old.user_attrs["config"]
        assert t.value == pytest.approx(new_data(old.user_attrs["config"]))
    assert all("warm_start_of" not in t.user_attrs for t in trials[3:])
    rows = compare(result.study)
    assert [r["old_trial"] for r in rows] == [t.number for t in earlier[:3]]
    ranked = sorted(t.value for t in trials)
    for r in rows:
        assert r["new_value"] == pytest.approx(new_data(earlier[r["old_rank"] - 1].user_attrs["config"]))
        assert ranked[r["new_rank"] - 1] == pytest.approx(r["new_value"]) and r["of"] == 10

    # running it again continues the study and does not queue the earlier best a second time
    again = shoal.retune("old.log", top=3, objective=new_data, space=_space(), trials=12, storage="new.log",
                         study="new", progress=False)
    assert sum("warm_start_of" in t.user_attrs for t in again.study.get_trials()) == 3
    assert len(again.study.get_trials()) == 12


def test_narrow_searches_around_the_earlier_best(earlier):
    result = shoal.retune("old.log", top=4, narrow=True, objective=new_data, space=_space(), trials=12,
                          storage="new.log", study="narrow", progress=False)
    lrs = [t.user_attrs["config"]["lr"] for t in earlier[:4]]
    low = 10 ** (math.log10(min(lrs)) - 0.4)  # the margin is 10% of the four decades, each side
    high = 10 ** (math.log10(max(lrs)) + 0.4)
    opts = {t.user_attrs["config"]["opt"] for t in earlier[:4]}
    for t in result.study.get_trials():
        assert low * 0.999 <= t.user_attrs["config"]["lr"] <= high * 1.001
        assert t.user_attrs["config"]["opt"] in opts


def test_bad_sources_are_explained(workdir, earlier):
    with pytest.raises(ConfigError, match="No study 'nope'"):
        shoal.retune("old.log", from_study="nope", objective=new_data, space=_space(), trials=2, progress=False)
    optuna.create_study(study_name="empty", storage=resolve_storage("old.log"))
    with pytest.raises(ConfigError, match="holds 2 studies"):
        shoal.retune("old.log", objective=new_data, space=_space(), trials=2, progress=False)
    with pytest.raises(ConfigError, match="no complete trial"):
        shoal.retune("old.log", from_study="empty", objective=new_data, space=_space(), trials=2, progress=False)
    with pytest.raises(ConfigError, match="warm_top"):
        shoal.retune("old.log", from_study="old", top=0, objective=new_data, space=_space(), trials=2,
                     progress=False)


def test_retune_never_reopens_the_earlier_study(workdir, earlier):
    # Into the same storage, the default name is the earlier study's: the new one is named apart,
    # and the earlier study keeps its trials and settings.
    before = len(earlier)
    result = shoal.retune("old.log", top=2, objective=old, space=_space(), trials=3, storage="old.log",
                          progress=False)
    assert result.study.study_name == "old-retune" and len(result.study.trials) == 3
    kept = optuna.load_study(study_name="old", storage=resolve_storage("old.log"))
    assert sum(t.state.name == "COMPLETE" for t in kept.trials) == before and "warm_start" not in kept.user_attrs
    with pytest.raises(ConfigError, match="would be 'old' itself"):
        shoal.retune("old.log", from_study="old", objective=new_data, space=_space(), trials=3, storage="old.log",
                     study="old", progress=False)
    # a missing source is not created
    with pytest.raises(ConfigError, match="Storage file not found: 'nope.db'"):
        shoal.retune("nope.db", objective=new_data, space=_space(), trials=2, progress=False)
    assert not (workdir / "nope.db").exists()


def old(config):  # the function's name is the default study name: "old", as the earlier study
    return new_data(config)


def test_retune_from_the_command_line(workdir):
    from shoal.cli._main import app

    runner = CliRunner()
    out = runner.invoke(app, ["tune", "--data", "digits", "-p", "width=16", "-p", "depth=1", "-p", "batch_size=128",
                              "--trials", "4", "--epochs", "2", "-q", "-s", "old.db"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["retune", "old.db", "--top", "2", "--trials", "3", "-s", "new.db", "-q"])
    assert out.exit_code == 0, out.output
    assert "survive" in out.output and out.output.count(" of 3 ") == 2, out.output
    new = optuna.load_study(study_name="digits-mlp", storage="sqlite:///new.db")
    assert sum("warm_start_of" in t.user_attrs for t in new.trials) == 2
    # the earlier study's settings carried over: same data, epochs and fixed widths
    assert all(t.user_attrs["epochs_run"] == 2 and t.user_attrs["config"]["width"] == 16 for t in new.trials)


def test_the_report_puts_the_earlier_best_beside_their_new_results(earlier):
    """`shoal report` of a warm-started study: a section with each earlier best configuration's old
    rank and value next to its value and rank on the new data."""
    from shoal.report import load_report
    from shoal.report._html import render_html

    shoal.retune("old.log", top=3, objective=new_data, space=_space(), trials=8, storage="new.log", study="new",
                 progress=False)
    data = load_report("new.log", "new", importance=False)
    assert [r["old_trial"] for r in data.warm] == [t.number for t in earlier[:3]]
    assert [r["old_value"] for r in data.warm] == pytest.approx([t.value for t in earlier[:3]])
    for r in data.warm:  # each re-ran: its value is the new objective of the same configuration
        assert r["new_value"] == pytest.approx(new_data(earlier[r["old_rank"] - 1].user_attrs.get("config")
                                                        or earlier[r["old_rank"] - 1].params))
    html = render_html(data)
    assert "Warm start: did the earlier best settings survive?" in html
    assert f"ranks {data.warm[0]['new_rank']} of {data.warm[0]['of']} here" in html

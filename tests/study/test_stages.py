"""Coarse-to-fine: stage sizes, narrowing around the best, and stages inside one resumable study."""

from __future__ import annotations

import math

import optuna
import pytest

import shoal
from shoal._errors import ConfigError
from shoal.space import Categorical, Float, Int, Space
from shoal.study import resolve_storage
from shoal.study._stages import narrow, parse_stages


def _space() -> Space:
    return Space([
        Float("lr", 1e-5, 1.0, log=True),
        Categorical("optimizer", ["sgd", "momentum", "adam"]),
        Float("momentum", 0.5, 0.99, when={"optimizer": ["momentum"]}),
        Float("weight_decay", 1e-6, 1e-1, log=True, off=0.0),
        Int("batch_size", 16, 512, pow2=True),
        Float("dropout", 0.0, 0.5),
    ])


def _objective(config):
    """A known landscape: best at lr = 1e-2 with adam, small dropout."""
    penalty = {"adam": 0.0, "momentum": 0.5, "sgd": 1.0}[config["optimizer"]]
    return (math.log10(config["lr"]) + 2) ** 2 + penalty + config["dropout"]


def test_stage_sizes_from_counts_fractions_and_the_rest():
    assert parse_stages(["random:30", "tpe:70"], 100) == [("random", 30), ("tpe", 70)]
    assert parse_stages("qmc:0.4,tpe", 50) == [("qmc", 20), ("tpe", 30)]
    assert parse_stages(None, 10) == [("qmc", 4), ("tpe", 6)]
    assert parse_stages("random:0.3, gp:0.3, tpe", 10) == [("random", 3), ("gp", 3), ("tpe", 4)]


@pytest.mark.parametrize("spec, match", [
    ("tpe", "at least two stages"),
    ("random:5,tpe:6", "add up to the trial budget 10"),
    ("random,tpe", "Only one stage"),
    ("random:x,tpe", "must be a number"),
    ("random:3,tpo", "Did you mean 'tpe'"),
    ("random:3,pbt", "must be a sampler"),
    (["random:3", 7], "must be a list"),
])
def test_bad_stages_are_explained(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_stages(spec, 10)


def test_narrowing_is_log_aware_drops_unused_choices_and_keeps_absent_conditions():
    top = [
        {"lr": 1e-3, "optimizer": "adam", "weight_decay": 1e-4, "batch_size": 32, "dropout": 0.1},
        {"lr": 1e-2, "optimizer": "adam", "weight_decay": 1e-3, "batch_size": 64, "dropout": 0.2},
        {"lr": 3e-3, "optimizer": "sgd", "weight_decay": 0.0, "batch_size": 32, "dropout": 0.15},
    ]
    space, overrides = narrow(_space(), top, margin=0.1)
    # log scale: [1e-3, 1e-2] widened by 10% of 5 decades (0.5 decade) each side
    assert space["lr"].low == pytest.approx(10**-3.5, rel=1e-4)
    assert space["lr"].high == pytest.approx(10**-1.5, rel=1e-4)
    assert space["lr"].log
    assert list(space["optimizer"].choices) == ["sgd", "adam"]
    assert space["batch_size"].values() == [32, 64]
    # linear: [0.1, 0.2] widened by 10% of 0.5 = 0.05 each side
    assert (space["dropout"].low, space["dropout"].high) == pytest.approx((0.05, 0.25))
    # one top config has weight decay off: "off" stays possible
    assert space["weight_decay"].off == 0.0
    assert "momentum" not in overrides  # no top config uses momentum: its range is kept
    for config in top:
        assert space.contains(config)


def test_narrowing_to_one_value_fixes_it():
    top = [{"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "batch_size": 64, "dropout": 0.1}] * 3
    space, overrides = narrow(_space(), top)
    assert overrides["batch_size"] == {"value": 64}
    assert overrides["weight_decay"] == {"value": 0.0}
    assert space["optimizer"].value == "adam"
    assert space.contains(top[0])


def test_stages_in_one_study_focus_on_the_best_region(workdir):
    result = shoal.tune(_objective, space=_space(), strategy="coarse-to-fine", stages=["random:16", "tpe:16"],
                        trials=32, storage="c2f.log", study="c2f", seed=3, progress=False)
    study = result.study
    trials = study.get_trials()
    assert len(trials) == 32
    assert [t.user_attrs["stage"] for t in trials] == [0] * 16 + [1] * 16
    stages = study.user_attrs["stages"]
    assert [(s["strategy"], s["trials"], s["first_trial"]) for s in stages] == [("random", 16, 0), ("tpe", 16, 16)]
    fine = Space(list(_space())).update(stages[1]["overrides"])
    assert stages[1]["overrides"], "stage 2 searched a narrowed space"
    for t in trials[16:]:
        assert fine.contains(t.user_attrs["config"]), t.user_attrs["config"]
        # the real study holds ordinary params of the full space: Optuna's tools read it
        assert _space().config_from_params(t.params) == t.user_attrs["config"]
    coarse = sorted(t.value for t in trials[:16])
    focused = sorted(t.value for t in trials[16:])
    assert focused[len(focused) // 2] < coarse[len(coarse) // 2], "the fine stage's median beats the coarse one's"


def test_a_resumed_study_goes_on_with_the_same_plan(workdir):
    kwargs = dict(space=_space(), strategy="coarse-to-fine", stages="random:8,tpe", storage="c2f.log",
                  study="resume", seed=1, progress=False)
    shoal.tune(_objective, trials=12, **kwargs)
    first = optuna.load_study(study_name="resume", storage=resolve_storage("c2f.log"))
    ranges = first.user_attrs["stages"][1]["overrides"]
    with pytest.raises(ConfigError, match="ran the stages"):
        shoal.tune(_objective, trials=16, **{**kwargs, "stages": "qmc:8,tpe"})
    # a finished stage keeps the size it ran with; the last stage takes the rest of the larger budget
    shoal.tune(_objective, trials=16, **{**kwargs, "stages": "random:4,tpe"})
    study = optuna.load_study(study_name="resume", storage=resolve_storage("c2f.log"))
    assert study.user_attrs["stages"][1]["overrides"] == ranges
    assert [t.user_attrs["stage"] for t in study.get_trials()] == [0] * 8 + [1] * 8


def test_a_failing_stage_trial_is_recorded_and_the_plan_goes_on(workdir):
    def sometimes(config):
        if config["optimizer"] == "sgd":
            raise RuntimeError("sgd is broken today")
        return _objective(config)

    result = shoal.tune(sometimes, space=_space(), strategy="coarse-to-fine", stages="random:10,tpe:10",
                        trials=20, storage="c2f.log", study="fail", seed=0, progress=False)
    trials = result.study.get_trials()
    assert len(trials) == 20
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all("sgd is broken" in t.user_attrs["fail_reason"] for t in failed)
    assert all(t.user_attrs["config"]["optimizer"] != "sgd" for t in trials[10:]), "failed values are not kept"


def test_a_stage_resumed_midway_draws_new_points(workdir):
    """A coarse stage stopped (Ctrl-C) after 4 of its 10 trials and run again goes on with new points:
    its quasi-random sampler does not restart where the first run started."""
    kwargs = dict(space=_space(), strategy="coarse-to-fine", stages="qmc:10,tpe", trials=20, storage="mid.log",
                  study="mid", seed=2, progress=False)
    calls = []

    def stopped_after_four(config):
        calls.append(config)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return _objective(config)

    with pytest.raises(KeyboardInterrupt):
        shoal.tune(stopped_after_four, **kwargs)
    shoal.tune(_objective, **kwargs)
    study = optuna.load_study(study_name="mid", storage=resolve_storage("mid.log"))
    coarse = [tuple(sorted(t.params.items())) for t in study.get_trials()
              if t.user_attrs["stage"] == 0 and t.state.name == "COMPLETE"]
    assert len(coarse) == 10 and len(set(coarse)) == 10

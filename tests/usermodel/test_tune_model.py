"""shoal.tune(model=...): a study over the user's own module, recorded like the built-in engines."""

from __future__ import annotations

import pytest

import shoal
from shoal._errors import ConfigError
from shoal.space import Categorical, Float, Space

from models import Branchy, NeedsDepth, Net

SPACE = Space([Float("lr", 1e-3, 1e-1, log=True), Categorical("optimizer", ["sgd", "adam"])])


def test_module_class_trains_as_one_population_and_records_curves(workdir):
    result = shoal.tune(model=Net, space=SPACE, data="digits", strategy="random", trials=4, epochs=2,
                        metric="val_acc", storage="s.db", progress=False)
    trials = result.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    for t in trials:
        curves = t.user_attrs["curves"]
        assert len(curves["val_acc"]) == len(curves["train_loss"]) == 2
        assert t.value == curves["val_acc"][-1] and 0.0 <= t.value <= 1.0
        assert t.user_attrs["engine"] == "functional" and t.user_attrs["epochs_run"] == 2
    assert result.best_value > 0.5  # digits: anything that learns beats 0.1
    assert result.study.study_name == "digits-Net"
    assert result.study.user_attrs["usermodel"] == {"largest_population": 4, "notes": [], "shapes": 1, "workers": 1}
    assert result.study.user_attrs["shoal"]["model"] == "Net"


def test_same_study_as_plain_training_of_each_trial(workdir, digits_data):
    """A trial's recorded curve is what training its config alone with torch.optim gives."""
    from test_functional_population import plain

    result = shoal.tune(model=Net, space=SPACE, data="digits", strategy="random", trials=3, epochs=2,
                        storage="s.db", progress=False)
    for t in result.study.trials:
        ref, _ = plain(Net, t.user_attrs["config"], t.user_attrs["seed"], digits_data)
        assert t.user_attrs["curves"]["val_loss"] == pytest.approx([r[0] for r in ref], abs=1e-5)


def test_architecture_builder_groups_by_shape_and_a_bad_config_fails_alone(workdir):
    def build(cfg):
        if cfg["hidden"] == 24:
            raise ValueError("no 24 today")
        return Net(64, 10, hidden=cfg["hidden"])

    space = Space([Float("lr", 1e-3, 1e-2, log=True), Categorical("hidden", [8, 16, 24])])
    result = shoal.tune(model=build, space=space, data="digits", strategy="grid", grid_points=2, trials=6,
                        epochs=1, storage="s.db", progress=False)
    states = {(t.params["hidden"], t.state.name) for t in result.study.trials}
    assert states == {(8, "COMPLETE"), (16, "COMPLETE"), (24, "FAIL")}
    failed = [t for t in result.study.trials if t.state.name == "FAIL"]
    assert all(t.user_attrs["fail_reason"] == "ValueError: no 24 today" for t in failed)
    info = result.study.user_attrs["usermodel"]
    assert info["shapes"] == 2 and info["largest_population"] == 2
    assert any("differ in parameter shapes" in n for n in info["notes"])


def test_untraceable_module_falls_back_and_records_why(workdir):
    result = shoal.tune(model=Branchy, space=SPACE, data="digits", strategy="random", trials=2, epochs=1,
                        storage="s.db", progress=False)
    for t in result.study.trials:
        assert t.state.name == "COMPLETE"
        assert t.user_attrs["engine"] == "sequential"
        assert "vmap cannot batch this module" in t.user_attrs["engine_reason"]
    assert "one member at a time" in result.study.user_attrs["usermodel"]["notes"][0]


def test_pruner_and_divergence(workdir):
    space = Space([Float("lr", 1e-3, 1e3, log=True), Categorical("optimizer", ["sgd"])])
    result = shoal.tune(model=Net, space=space, data="digits", strategy="grid", grid_points=4, trials=4,
                        epochs=3, pruner="median", storage="s.db", progress=False)
    by_lr = {round(t.params["lr"], 6): t for t in result.study.trials}
    worst = by_lr[1000.0]
    assert worst.state.name == "FAIL" and "diverged" in worst.user_attrs["fail_reason"]
    assert by_lr[0.001].state.name in ("COMPLETE", "PRUNED")
    assert any(t.state.name == "COMPLETE" for t in result.study.trials)


def test_pbt_copies_members(workdir):
    result = shoal.tune(model=Net, space=SPACE, data="digits", strategy="pbt", trials=4, epochs=3, pbt_interval=1,
                        storage="s.db", progress=False)
    copies = [t for t in result.study.trials if (t.user_attrs.get("pbt") or {}).get("parent") is not None]
    assert copies, "PBT replaced no member"
    for t in copies:
        assert len(t.user_attrs["curves"]["val_loss"]) == 3  # the parent's epochs, then its own


@pytest.mark.parametrize("kwargs, message", [
    ({"model": Net}, "needs its search space"),
    ({"model": Net(64, 10), "space": SPACE}, "Got an instance of Net"),
    ({"model": Net, "space": SPACE, "objective": lambda c: 0.0}, "either objective= .* or model="),
    ({"model": Net, "space": SPACE, "direction": "maximize"}, "always minimized"),
    ({"model": NeedsDepth, "space": SPACE}, r"NeedsDepth\(\) needs \['depth'\], which neither the search space nor"),
    # a misspelled parameter is read by nobody: it would be sampled in every trial for nothing
    ({"model": Net, "space": Space([Float("lr", 1e-3, 1e-1, log=True), Float("hiden", 8, 16)])},
     r"\['hiden'\] are read neither by Net\(\).*Did you mean 'hidden'\?"),
])
def test_bad_input(workdir, kwargs, message):
    objective = kwargs.pop("objective", None)
    with pytest.raises(ConfigError, match=message):
        shoal.tune(objective, data="digits", trials=1, epochs=1, storage="s.db", progress=False, **kwargs)
    assert not (workdir / "s.db").exists()  # refused before the study was created


def test_successive_halving_ranks_cohorts_of_the_users_module(workdir):
    """model= studies run caviar mode's round loop: members reaching a rung together are ranked
    together, the bottom ones stop, their slots are refilled."""
    result = shoal.tune(model=Net, space=SPACE, data="digits", strategy="random", pruner="sha", trials=6, epochs=3,
                        population=3, storage="s.db", seed=0, progress=False)
    trials = result.study.get_trials()
    assert len(trials) == 6
    decided = [t for t in trials if t.user_attrs.get("rungs")]
    assert decided and all(t.user_attrs["rungs"][0]["epoch"] == 1 for t in decided)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(not t.user_attrs["rungs"][-1]["kept"] for t in pruned)
    assert all(t.user_attrs["engine"] == "functional" for t in trials)


def test_a_parameter_that_only_conditions_another_is_not_unread(workdir):
    space = Space([Categorical("wide", [False, True]), Float("lr", 1e-3, 1e-1, log=True),
                   Float("weight_decay", 1e-5, 1e-3, log=True, when={"wide": True})])
    result = shoal.tune(model=Net, space=space, data="digits", trials=2, epochs=1, storage="w.db", progress=False)
    assert len(result.study.trials) == 2


def test_a_study_never_passes_its_defaults_to_the_users_module(digits_data):
    """run_caviar fills the built-in defaults (width 128...); the module sees the space's keys only."""
    from shoal.engine import normalize
    from shoal.engine._functional import ModulePool

    from models import Linear

    pool = ModulePool(Linear, [digits_data], keys=["lr"])
    pool.add("m", normalize({"lr": 0.01}), seed=0, fold=0, epochs=1)
    assert pool.state_dict("m")["net.1.weight"].shape == (12, 64)


def test_parameters_of_the_users_module_are_an_objective_and_a_limit(workdir):
    space = Space([Float("lr", 1e-3, 1e-1, log=True), Categorical("hidden", [8, 64])])
    pareto = shoal.tune(model=Net, space=space, data="digits", strategy="grid", grid_points=2, trials=4, epochs=1,
                        metric="val_loss,params", storage="s.db", study="pareto", progress=False)
    # Net(64 -> hidden -> 10): 64 * h + h + h * 10 + 10 parameters
    assert sorted((t.params["hidden"], t.values[1]) for t in pareto.study.trials) == [(8, 610.0)] * 2 + [(64, 4810.0)] * 2
    limited = shoal.tune(model=Net, space=space, data="digits", strategy="grid", grid_points=2, trials=4, epochs=1,
                         constraints=["params<=1000"], storage="s.db", study="limited", progress=False)
    for t in limited.study.trials:  # over the limit: recorded as infeasible, never trained
        assert ("infeasible_before_training" in t.user_attrs) == (t.params["hidden"] == 64)
        assert ("curves" in t.user_attrs) == (t.params["hidden"] == 8)

"""One suite every strategy passes: the budget is respected, a seeded run is reproducible, failing
trials are recorded and the study goes on, a study grows when run again, and each works with the
single and the population engine, and with a user objective that has a fidelity argument.

Studies of user objectives use journal files: SQLite commits (an fsync each) made them 8x slower.
"""

from __future__ import annotations

import collections
import math

import optuna
import pytest

import shoal
from shoal.space import Categorical, Fixed, Float, Space
from shoal.study import resolve_storage
from shoal.study._runner import counted

# (strategy, pruner)
STRATEGIES = [
    ("grid", "none"), ("random", "none"), ("qmc", "none"), ("tpe", "none"), ("gp", "none"), ("cmaes", "none"),
    ("random", "sha"), ("tpe", "hyperband"), ("random", "median"), ("coarse-to-fine", "none"), ("pbt", "none"),
]
IDS = [f"{s}+{p}" if p != "none" else s for s, p in STRATEGIES]
TINY = {"width": 16, "batch_size": 128, "depth": 1}


def _small_mlp_space() -> Space:
    """Three searched settings; the rest take the engine's defaults."""
    return Space([Categorical("optimizer", ["adam", "sgd"]), Float("lr", 1e-3, 0.1, log=True),
                  Float("dropout", 0.0, 0.3), *(Fixed(k, v) for k, v in TINY.items())])


def _space() -> Space:
    return Space([Float("lr", 1e-4, 1.0, log=True), Float("wd", 1e-6, 1e-2, log=True),
                  Categorical("opt", ["a", "b", "c"])])


def fidelity(config, epochs, state=None):
    """A learning curve: approaches a floor set by lr and opt; "c" with a large lr fails."""
    if config["opt"] == "c" and config["lr"] > 0.3:
        raise RuntimeError("exploded")
    step = state or 0
    step += epochs
    floor = (math.log10(config["lr"]) + 2) ** 2 + {"a": 0.0, "b": 0.3, "c": 0.6}[config["opt"]]
    return floor + 1.0 / step + 0.01 * math.log10(config["wd"] * 1e6), step


def _tune(strategy, pruner, **kw):
    settings = dict(strategy=strategy, pruner=pruner, epochs=4, seed=7, progress=False, grid_points=2)
    if strategy == "coarse-to-fine":
        settings["stages"] = "random:0.5,tpe"
    settings.update(kw)
    return shoal.tune(fidelity, space=_space(), **settings)


def _budget_used(study) -> int:
    return sum(1 for t in study.get_trials() if counted(t))


@pytest.mark.parametrize("strategy, pruner", STRATEGIES, ids=IDS)
def test_budget_failures_and_reproducibility(workdir, strategy, pruner):
    trials = 10
    a = _tune(strategy, pruner, trials=trials, storage="a.log", study="s")
    b = _tune(strategy, pruner, trials=trials, storage="b.log", study="s")
    ta, tb = a.study.get_trials(), b.study.get_trials()
    states = collections.Counter(t.state.name for t in ta)
    if strategy == "pbt":  # --trials members, each trained to the end; replaced ones end PRUNED
        assert states["COMPLETE"] + states["FAIL"] == trials
    elif strategy == "grid":  # 2 x 2 x 3 = 12 points, capped by the budget
        assert _budget_used(a.study) == trials
    else:
        assert _budget_used(a.study) == trials
    assert states["COMPLETE"] >= 1
    # failing configurations are recorded as failed with their reason, and the study went on
    for t in ta:
        if t.state.name == "FAIL":
            assert "exploded" in t.user_attrs["fail_reason"]
    # seeded: the same configurations, values and states in the same order
    assert [t.user_attrs["config"] for t in ta] == [t.user_attrs["config"] for t in tb]
    assert [(t.state, t.value) for t in ta] == [(t.state, t.value) for t in tb]


@pytest.mark.parametrize("strategy, pruner", [s for s in STRATEGIES if s[0] != "pbt"],
                         ids=[i for i in IDS if i != "pbt"])
def test_running_again_with_a_larger_budget_continues(workdir, strategy, pruner):
    _tune(strategy, pruner, trials=6, storage="r.log", study="s")
    first = {t.number: (t.params, t.value) for t in optuna.load_study(study_name="s", storage=resolve_storage("r.log")).get_trials()}
    result = _tune(strategy, pruner, trials=10, storage="r.log", study="s")
    assert _budget_used(result.study) == 10
    for n, (params, value) in first.items():
        assert result.study.trials[n].params == params and result.study.trials[n].value == value


ENGINE_CASES = [("random", "sha"), ("tpe", "hyperband"), ("coarse-to-fine", "none"), ("grid", "none")]


@pytest.mark.parametrize("engine", ["single", "population"])
@pytest.mark.parametrize("strategy, pruner", ENGINE_CASES, ids=[f"{s}+{p}" for s, p in ENGINE_CASES])
def test_each_strategy_trains_with_both_engines(workdir, strategy, pruner, engine):
    result = shoal.tune(data="digits", preset="mlp", strategy=strategy, pruner=pruner, trials=6, epochs=3,
                        engine=engine, storage="e.db", seed=1, progress=False, grid_points=2,
                        stages="random:3,tpe" if strategy == "coarse-to-fine" else None,
                        space=_small_mlp_space())
    trials = result.study.get_trials()
    assert _budget_used(result.study) == 6
    assert all(t.state.name != "FAIL" and t.user_attrs["engine"] == engine for t in trials)
    assert result.best_value is not None and result.best_value < 2.3


def test_pbt_trains_with_the_population_engine(workdir):
    result = shoal.tune(data="digits", preset="mlp", strategy="pbt", trials=4, epochs=4, pbt_interval=2,
                        storage="e.db", seed=1, progress=False, params=TINY)
    states = collections.Counter(t.state.name for t in result.study.get_trials())
    assert states == {"COMPLETE": 4, "PRUNED": 1}  # one exploit step (epoch 2) replaces 1 of 4


@pytest.mark.parametrize("engine", ["population", "single"])
def test_qmc_spreads_trials_asked_together_one_per_stratum(workdir, engine):
    """Scrambled Sobol points: 16 trials put one learning rate in each sixteenth of its log range
    and each optimizer in 4 of them, however many were asked before any finished. Optuna's own
    QMCSampler, keyed by the running trials' changing union of parameters, started its sequence
    again at each new union in caviar mode (digits, 10 trials: 8 distinct, 4 on the same lr)."""
    from shoal.space import mlp

    lr = mlp()["lr"]
    result = shoal.tune(data="digits", strategy="qmc", trials=16, epochs=1, engine=engine, storage="q.db",
                        progress=False, seed=5)
    trials = result.study.trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 16
    strata = sorted(int(16 * math.log(t.params["lr"] / lr.low) / math.log(lr.high / lr.low)) for t in trials)
    assert strata == list(range(16))
    assert set(collections.Counter(t.params["optimizer"] for t in trials).values()) == {4}

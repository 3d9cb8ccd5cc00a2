"""Population successive halving and Hyperband: rungs, brackets, cohort decisions, and a study where
stopped members' slots are refilled at once and promoted members go on without restarting."""

from __future__ import annotations

import collections

import optuna
import pytest

import shoal
from shoal.study._halving import Halving

SMALL = {"width": 32, "batch_size": 64, "depth": 1}


def test_rungs_and_brackets_follow_hyperband():
    h = Halving(epochs=20, hyperband=True)
    assert h.n_brackets == 3
    assert [h.rungs(b) for b in range(3)] == [[1, 3, 9], [3, 9], [9]]
    counts = collections.Counter(h.bracket(n) for n in range(170))
    # Hyperband's budget per bracket for eta=3, s_max=2: 9 : 5 : 3 (most aggressive first)
    assert counts == {0: 90, 1: 50, 2: 30}
    assert Halving(epochs=20).rungs(0) == [1, 3, 9] and Halving(epochs=20).n_brackets == 1


def test_a_cohort_is_decided_together():
    h = Halving(epochs=9)
    # nine members reach epoch 1 in the same round: the best three go on, whatever their order
    cohort = [(n, 0, 1, v) for n, v in enumerate([0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.7, 0.6, 0.4])]
    kept = {d.number for d in h.decide(cohort) if d.keep}
    assert kept == {1, 3, 5}
    # a later arrival is ranked against everything the rung has seen
    (late,) = h.decide([(9, 0, 1, 0.35)])
    assert (late.rank, late.of, late.keep) == (4, 10, False)
    (good,) = h.decide([(10, 0, 1, 0.05)])
    assert (good.rank, good.of, good.keep) == (1, 11, True)


def test_maximize_keeps_the_largest():
    h = Halving(epochs=9, maximize=True)
    kept = {d.number for d in h.decide([(n, 0, 1, v) for n, v in enumerate([0.1, 0.9, 0.5])]) if d.keep}
    assert kept == {1}


def test_resume_refills_the_rung_pools_from_stored_values():
    study = optuna.create_study()
    for n, v in enumerate([0.5, 0.4, 0.3]):
        study.add_trial(optuna.trial.create_trial(value=v, intermediate_values={1: v, 2: v}, user_attrs={"bracket": 0}))
    h = Halving(epochs=9)
    h.restore(study.get_trials())
    assert sorted(h.pools[(0, 1)]) == [0.3, 0.4, 0.5] and (0, 3) not in h.pools


@pytest.mark.parametrize("pruner", ["sha", "hyperband"])
def test_population_study_stops_below_the_cutoff_and_refills_at_once(workdir, pruner):
    result = shoal.tune(data="digits", preset="mlp", strategy="random", pruner=pruner, trials=12, epochs=9,
                        population=4, storage="h.db", seed=0, progress=False, params=SMALL)
    trials = result.study.get_trials()
    states = collections.Counter(t.state.name for t in trials)
    assert len(trials) == 12 and states["PRUNED"] >= 4 and states["COMPLETE"] >= 1
    for t in trials:
        rungs = t.user_attrs.get("rungs", [])
        # epochs ran up to the last rung decision: a promoted member was never restarted
        assert sorted(t.intermediate_values) == list(range(1, t.user_attrs["epochs_run"] + 1))
        if t.state.name == "PRUNED":
            assert rungs and not rungs[-1]["kept"] and t.user_attrs["epochs_run"] == rungs[-1]["epoch"]
            assert all(r["kept"] for r in rungs[:-1])
        else:
            assert t.user_attrs["epochs_run"] == 9 and all(r["kept"] for r in rungs)
        for r in rungs:
            assert r["value"] == pytest.approx(t.intermediate_values[r["epoch"]])
    # a slot freed at a rung was refilled before the next epoch: 4 slots, but more than 4 trials
    # started before the first one completed
    first_done = min(t.datetime_complete for t in trials if t.state.name == "COMPLETE")
    assert sum(t.datetime_start < first_done for t in trials) > 4

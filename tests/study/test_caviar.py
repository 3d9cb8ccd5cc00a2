"""Studies on the population engine: same records as the single engine, slots refilled, failures isolated."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

import shoal
from shoal.study._caviar import default_population_size
from shoal.study import make_experiment

SMALL = {"width": [32, 64], "depth": [1, 2], "batch_size": [64, 128]}


def test_population_study_matches_single_engine_trial_by_trial(workdir):
    """Same seed, same configs: each trial's curve is the same whichever engine trained it."""
    runs = {}
    for engine in ("single", "population"):
        result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=6, epochs=3, seed=4,
                            engine=engine, storage=f"{engine}.db", progress=False, params=SMALL)
        runs[engine] = {t.number: t for t in result.study.trials}
        assert {t.user_attrs["engine"] for t in result.study.trials} == {engine}
    assert sorted(runs["single"]) == sorted(runs["population"])
    for number, single in runs["single"].items():
        member = runs["population"][number]
        assert member.params == single.params
        assert member.state == single.state == TrialState.COMPLETE
        for a, b in zip(single.user_attrs["curves"]["val_loss"], member.user_attrs["curves"]["val_loss"]):
            assert a == pytest.approx(b, abs=1e-4)
        assert sorted(member.intermediate_values) == [1, 2, 3]


def test_slots_are_refilled_until_the_budget_is_spent(workdir):
    # 10 trials through 3 slots: the study must still run exactly 10.
    result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=10, epochs=2, population=3,
                        engine="population", storage="r.db", progress=False, params=SMALL)
    trials = result.study.trials
    assert len(trials) == 10 and all(t.state == TrialState.COMPLETE for t in trials)
    again = shoal.tune(data="digits", preset="mlp", strategy="random", trials=10, epochs=2, population=3,
                       engine="population", storage="r.db", progress=False, params=SMALL)
    assert len(again.study.trials) == 10


def test_diverging_member_fails_alone(workdir):
    params = {"optimizer": "sgd", "lr": [1e-2, 1e6], "width": 32, "depth": 1, "batch_size": 64,
              "batch_norm": "off", "lr_decay": "none", "dropout": 0.0, "weight_decay": 0.0, "l1": 0.0,
              "shape": "constant", "init": "he", "activation": "relu"}
    result = shoal.tune(data="digits", preset="mlp", strategy="grid", trials=2, epochs=3, engine="population",
                        storage="d.db", progress=False, params=params)
    by_lr = {t.params["lr"]: t for t in result.study.trials}
    assert by_lr[1e6].state == TrialState.FAIL and "diverged" in by_lr[1e6].user_attrs["fail_reason"]
    assert by_lr[1e-2].state == TrialState.COMPLETE
    single = shoal.tune(data="digits", preset="mlp", strategy="grid", trials=2, epochs=3, engine="single",
                        storage="d1.db", progress=False, params=params)
    ok = {t.params["lr"]: t for t in single.study.trials}[1e-2]
    assert by_lr[1e-2].value == pytest.approx(ok.value, abs=1e-4)


def test_pruned_members_leave_their_population(workdir):
    result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=16, epochs=6, pruner="median",
                        engine="population", population=4, storage="p.db", progress=False, seed=2,
                        params={**SMALL, "lr": {"low": 1e-5, "high": 1.0}})
    states = [t.state for t in result.study.trials]
    assert len(states) == 16
    pruned = [t for t in result.study.trials if t.state == TrialState.PRUNED]
    assert pruned, "median pruning should stop some of 16 trials with learning rates across 5 decades"
    assert any(t.user_attrs["epochs_run"] < 6 for t in pruned)
    for t in pruned:
        assert len(t.user_attrs["curves"]["val_loss"]) == t.user_attrs["epochs_run"]


def test_kfold_members(workdir):
    params = {"width": 32, "depth": 1, "optimizer": "adam", "lr": 3e-3, "batch_size": 64}
    pop = shoal.tune(data="digits", preset="mlp", strategy="random", trials=2, epochs=2, folds=3,
                     engine="population", storage="k.db", progress=False, params=params)
    single = shoal.tune(data="digits", preset="mlp", strategy="random", trials=2, epochs=2, folds=3,
                        engine="single", storage="k1.db", progress=False, params=params)
    for a, b in zip(pop.study.trials, single.study.trials):
        assert len(a.user_attrs["fold_val_loss"]) == 3
        assert a.user_attrs["fold_val_loss"] == pytest.approx(b.user_attrs["fold_val_loss"], abs=1e-4)
        assert a.value == pytest.approx(b.value, abs=1e-4)


def test_default_population_size_leaves_room_for_model_based_feedback():
    assert default_population_size(make_experiment({"strategy": "tpe", "trials": 30})) == 10
    assert default_population_size(make_experiment({"strategy": "tpe", "trials": 9})) == 8
    assert default_population_size(make_experiment({"strategy": "random", "trials": 30})) == 128
    assert default_population_size(make_experiment({"strategy": "tpe", "trials": 30, "population": 5})) == 5
    # a budget meant never to be reached (search until a timeout) does not ask thousands at once
    assert default_population_size(make_experiment({"strategy": "tpe", "trials": 100_000})) == 128


def test_default_workers_are_one_process_per_core_with_four_trials_each(monkeypatch):
    from shoal import ConfigError
    from shoal.study import _caviar

    monkeypatch.delenv("SHOAL_WORKERS", raising=False)
    monkeypatch.setattr(_caviar, "usable_cores", lambda: 2)
    exp = lambda **kw: make_experiment({"strategy": "random", "trials": 30, **kw})  # noqa: E731
    assert _caviar.default_workers(exp(), "cpu", 128) == 2
    assert _caviar.default_workers(exp(strategy="tpe"), "cpu", 10) == 2  # 30 TPE trials, 10 at a time
    assert _caviar.default_workers(exp(trials=7), "cpu", 128) == 1  # too few trials for two workers
    assert _caviar.default_workers(exp(), "cpu", 5) == 1  # --population 5
    assert _caviar.default_workers(exp(), "cuda", 128) == 1  # a GPU: one population per device
    assert _caviar.default_workers(exp(executor="local"), "cpu", 128) == 1
    assert _caviar.default_workers(exp(workers=3), "cpu", 128) == 3  # asked for
    monkeypatch.setattr(_caviar, "usable_cores", lambda: 16)
    assert _caviar.default_workers(exp(trials=100), "cpu", 128) == 16
    assert _caviar.default_workers(exp(trials=100), "cpu", 20) == 5
    monkeypatch.setenv("SHOAL_WORKERS", "1")
    assert _caviar.default_workers(exp(), "cpu", 128) == 1
    monkeypatch.setenv("SHOAL_WORKERS", "two")
    with pytest.raises(ConfigError, match="SHOAL_WORKERS must be a whole number"):
        _caviar.default_workers(exp(), "cpu", 128)


@pytest.mark.slow
def test_a_default_study_on_two_cores_trains_in_two_worker_processes(workdir, monkeypatch):
    """The default itself, end to end: two workers, and their memory peaks recorded beside the
    estimate (each worker measures its own and the study adds them up)."""
    from shoal.study import _caviar

    monkeypatch.delenv("SHOAL_WORKERS", raising=False)
    monkeypatch.setattr(_caviar, "usable_cores", lambda: 2)
    result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=8, epochs=2, engine="population",
                        storage="d.db", progress=False, params=SMALL)
    stats = result.study.user_attrs["population"]
    assert stats["workers"] == 2
    assert 0 < stats["estimated_bytes"] and 0 < stats["observed_peak_bytes"]
    trials = result.study.trials
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)


def test_worker_processes_give_the_same_study(workdir):
    params = {"width": [32, 64], "depth": 1, "batch_size": [64, 128], "optimizer": "adam", "lr": {"low": 1e-3, "high": 3e-3},
              "batch_norm": "off", "dropout": 0.0}
    runs = {}
    for workers in (1, 2):
        result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=4, epochs=2, engine="population",
                            workers=workers, storage=f"w{workers}.db", progress=False, params=params)
        runs[workers] = result.study.trials
    for a, b in zip(runs[1], runs[2]):
        assert a.params == b.params and a.state == b.state == TrialState.COMPLETE
        assert a.value == pytest.approx(b.value, abs=1e-4)


def test_memory_budget_decides_how_many_train_at_once(workdir):
    from shoal.engine._packer import member_bytes

    from shoal.engine import normalize

    params = {"width": 256, "depth": 2, "batch_size": 64, "optimizer": "adam", "batch_norm": "off",
              "shape": "constant", "lr": [1e-3, 2e-3], "dropout": 0.1}  # every member costs the same bytes
    one = member_bytes(normalize({**params, "lr": 1e-3}), "mlp", (1, 8, 8), 10)
    budget_mb = 3.5 * one / 2**20  # room for three members
    result = shoal.tune(data="digits", preset="mlp", strategy="random", trials=8, epochs=1, engine="population",
                        population=8, memory_mb=budget_mb, storage="m.db", progress=False, params=params)
    stats = result.study.user_attrs["population"]
    assert stats["max_members"] == 3
    assert stats["estimated_bytes"] <= stats["budget_bytes"]
    assert stats["observed_peak_bytes"] >= 0
    assert len(result.study.trials) == 8 and all(t.state == TrialState.COMPLETE for t in result.study.trials)
    # Without the cap, all eight train together.
    free = shoal.tune(data="digits", preset="mlp", strategy="random", trials=8, epochs=1, engine="population",
                      population=8, storage="n.db", progress=False, params=params)
    assert free.study.user_attrs["population"]["max_members"] == 8


def test_cnn_population_study(workdir):
    params = {"channels": 8, "conv_layers": 1, "width": 32, "batch_size": 64, "optimizer": "adam", "lr": 3e-3}
    pop = shoal.tune(data="digits", preset="cnn", strategy="random", trials=2, epochs=2, engine="population",
                     storage="c.db", progress=False, params=params)
    assert [t.state for t in pop.study.trials] == [TrialState.COMPLETE] * 2
    assert {t.user_attrs["engine"] for t in pop.study.trials} == {"population"}
    auto = shoal.tune(data="digits", preset="cnn", strategy="random", trials=2, epochs=2, storage="a.db",
                      progress=False, params=params)
    assert {t.user_attrs["engine"] for t in auto.study.trials} == {"single"}  # CNNs on a CPU: single
    for a, b in zip(pop.study.trials, auto.study.trials):
        assert a.value == pytest.approx(b.value, abs=1e-4)


def test_asking_a_trial_reads_the_storage_about_once(workdir, monkeypatch):
    """Each ask should read the study's trials from the storage once (Optuna caches them for the
    rest of the trial's sampling). Optuna's HyperbandPruner, left on the study, broke that cache:
    it hands the sampler a new bracket wrapper, with an empty cache, at every parameter, and each
    read fetches every trial still training again. Caviar mode decides the rungs itself.
    (351 reads with the pruner left on; 58 with ``study.ask()``'s own search for waiting trials,
    a second read of all of them; 34 now.)"""
    from optuna.storages._cached_storage import _CachedStorage

    reads = []
    read = _CachedStorage._read_trials_from_remote_storage

    def counted(self, study_id):
        reads.append(study_id)
        return read(self, study_id)

    monkeypatch.setattr(_CachedStorage, "_read_trials_from_remote_storage", counted)
    result = shoal.tune(data="digits", preset="mlp", strategy="tpe", pruner="hyperband", trials=24, epochs=3,
                        population=12, workers=1, engine="population", storage="h.db", progress=False, seed=1)
    assert len(result.study.trials) == 24
    assert len(reads) <= 24 + 12, f"{len(reads)} reads of the storage for 24 trials"


def test_a_trial_queued_while_the_study_runs_is_taken_next(workdir, monkeypatch):
    """Asks skip Optuna's search for waiting trials when the database holds none; a trial queued
    meanwhile (here by another handle on the same storage, as another process would) is still
    found and run with its parameters."""
    import optuna

    from shoal.study import _runner

    queued = {"optimizer": "sgd", "lr": 0.0123, "width": 64, "depth": 1, "batch_size": 64}
    finish = _runner.StudyRunner._tell

    def tell(self, job, **kwargs):  # once the first trial finishes, someone queues one
        finish(self, job, **kwargs)
        if job.number == 0:
            optuna.load_study(study_name="q", storage="sqlite:///q.db").enqueue_trial(queued)

    monkeypatch.setattr(_runner.StudyRunner, "_tell", tell)
    result = shoal.tune(data="digits", preset="mlp", strategy="tpe", trials=8, epochs=2, population=2,
                        workers=1, engine="population", storage="q.db", study="q", progress=False, seed=3)
    assert len(result.study.trials) == 8
    matching = [t for t in result.study.trials if all(t.params.get(k) == v for k, v in queued.items())]
    assert len(matching) == 1 and matching[0].state == TrialState.COMPLETE

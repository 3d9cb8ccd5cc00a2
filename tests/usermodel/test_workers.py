"""shoal.tune(model=..., workers=N): members train in worker processes of the engine's ProcessPool,
batchable members together, unbatchable ones spread; a killed worker fails its own members only."""

from __future__ import annotations

import functools
import logging

import pytest

import shoal
from shoal.engine._functional import ModulePlacer, ModulePool
from shoal.engine._pool import ProcessPool
from shoal.space import Categorical, Float, Space

from models import Net, build_killer

CONFIGS = {"a": {"hidden": 8, "lr": 0.01}, "b": {"hidden": 8, "lr": 0.03},
           "c": {"hidden": 16, "lr": 0.01}, "d": {"hidden": 16, "lr": 0.03}}


@pytest.mark.slow
def test_worker_processes_batch_each_architecture_together_and_match_this_process(digits_data):
    local = ModulePool(Net, [digits_data])
    for i, (key, cfg) in enumerate(CONFIGS.items()):
        local.add(key, cfg, seed=i, fold=0, epochs=2)
    want, _ = local.run_epoch()

    placer = ModulePlacer(Net, [digits_data])
    pool = ProcessPool("model", [digits_data], "cpu", workers=2, factory=functools.partial(ModulePool, Net),
                       place=placer)
    try:
        for i, (key, cfg) in enumerate(CONFIGS.items()):
            pool.add(key, cfg, seed=i, fold=0, epochs=2)
        worker = {key: w for key, (w, _) in pool.where.items()}
        assert worker["a"] == worker["b"] != worker["c"] == worker["d"]  # one population per architecture
        got, failed = pool.run_epoch()
        assert failed == {}
        for key in CONFIGS:
            assert got[key].val_loss == pytest.approx(want[key].val_loss, abs=1e-6)
            assert placer.mode_of(key) == ("vmap", None)

        pool.procs[worker["a"]].kill()  # a worker dies: its members fail, the other worker goes on
        pool.procs[worker["a"]].join()
        got, failed = pool.run_epoch()
        assert set(failed) == {"a", "b"} and all("died" in r for r in failed.values())
        assert set(got) == {"c", "d"} and all(r.epoch == 2 for r in got.values())
    finally:
        pool.close()


@pytest.mark.slow
def test_a_module_that_kills_its_worker_fails_only_that_workers_trials(workdir):
    """Branchy cannot be batched: its members spread over the two workers, one at a time in each."""
    space = Space([Float("lr", 1e-3, 1e-1, log=True), Categorical("optimizer", ["sgd"])])
    result = shoal.tune(model=build_killer, space=space, data="digits", strategy="grid", grid_points=4, trials=4,
                        epochs=2, population=4, workers=2, storage="s.db", progress=False)
    trials = result.study.get_trials()
    boom = [t for t in trials if t.params["lr"] > 0.05]
    assert len(boom) == 1 and boom[0].state.name == "FAIL"
    assert "worker process" in boom[0].user_attrs["fail_reason"] and "died" in boom[0].user_attrs["fail_reason"]
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]  # the boom trial and its worker mate
    for t in trials:
        assert t.user_attrs["engine"] == "sequential"
        assert "vmap cannot batch this module" in t.user_attrs["engine_reason"]
    info = result.study.user_attrs["usermodel"]
    assert info["workers"] == 2
    assert any("spread over the worker processes" in n for n in info["notes"])


def test_a_model_the_workers_cannot_import_trains_here_and_says_why(workdir, caplog):
    def build(cfg):  # defined inside a function: worker processes cannot import it
        return Net(64, 10, hidden=8)

    space = Space([Float("lr", 1e-3, 1e-1, log=True)])
    with caplog.at_level(logging.WARNING, logger="shoal"):
        result = shoal.tune(model=build, space=space, data="digits", strategy="random", trials=2, epochs=1,
                            workers=2, storage="s.db", progress=False)
    assert [t.state.name for t in result.study.trials] == ["COMPLETE", "COMPLETE"]
    assert result.study.user_attrs["usermodel"]["workers"] == 1
    assert "training in this process, not in 2 worker processes" in caplog.text
    assert "define it at the top level of a module" in caplog.text

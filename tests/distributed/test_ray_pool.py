"""Populations on a local Ray: the same numbers as in this process, and a killed worker loses no epoch."""

from __future__ import annotations

import math
import os
import signal

import pytest

from shoal._errors import ConfigError
from shoal.engine import normalize
from shoal.engine._pool import LocalPool

CONFIGS = {
    "a": {"width": 32, "depth": 1, "optimizer": "adam", "lr": 1e-3, "batch_size": 64},
    "b": {"width": 64, "depth": 2, "optimizer": "momentum", "lr": 1e-2, "batch_size": 64, "dropout": 0.2},
    "c": {"width": 32, "depth": 2, "optimizer": "sgd", "lr": 5e-2, "batch_size": 128},
    "d": {"width": 16, "depth": 2, "optimizer": "rmsprop", "lr": 3e-3, "batch_size": 64, "batch_norm": "before"},
}
EPOCHS = 4


def _curves(records: dict, curves: dict) -> None:
    for key, r in records.items():
        curves[key].append((r.epoch, r.train_loss, r.val_loss, r.lr))


@pytest.mark.slow
def test_ray_pool_matches_local_pool_and_a_killed_worker_loses_no_epoch(local_ray, digits_data, monkeypatch):
    from shoal.engine import _balance
    from shoal.engine._ray_pool import RayPool

    # Members stay where they were placed, so the test knows whose actor it kills (moving members
    # to even the actors' epochs has its own test below).
    monkeypatch.setattr(_balance, "REBALANCE_GAP", math.inf)

    local = LocalPool("mlp", [digits_data])
    ref = {k: [] for k in CONFIGS}
    for i, (key, cfg) in enumerate(CONFIGS.items()):
        local.add(key, normalize(cfg), i, 0, EPOCHS)
    for _ in range(EPOCHS):
        records, failed = local.run_epoch()
        assert failed == {}
        _curves(records, ref)

    # Snapshots every second epoch: a lost member trains again from epoch 0 or 2 and reports only
    # the epoch it missed (checkpoint_every=1, the default, is the case of no repeated epoch).
    pool = RayPool("mlp", [digits_data], workers=2, checkpoint_every=2)
    try:
        got = {k: [] for k in CONFIGS}
        for i, (key, cfg) in enumerate(CONFIGS.items()):
            pool.add(key, normalize(cfg), i, 0, EPOCHS)
        on = {slot: {k for k, m in pool.members.items() if m.slot == slot} for slot in (0, 1)}
        assert on[0] and on[1]  # both workers hold members
        _curves(pool.run_epoch()[0], got)

        # Epoch 2: the first worker's process is killed for real. A replacement actor comes up and
        # its members train epochs 1 and 2 there (no snapshot yet), and report epoch 2 only.
        first_pid = pool.pids[0]
        os.kill(first_pid, signal.SIGKILL)
        records, failed = pool.run_epoch()
        assert failed == {} and set(records) == set(CONFIGS)
        _curves(records, got)
        assert set(pool.recovered) == on[0]
        assert pool.pids[0] != first_pid and pool.workers == 2

        # Epoch 3: the other worker dies between epochs and no replacement may start: its members
        # train epoch 3 from their epoch-2 snapshots on the surviving worker, beside its own.
        pool.restart_timeout = 0
        os.kill(pool.pids[1], signal.SIGKILL)
        records, failed = pool.run_epoch()
        assert failed == {} and set(records) == set(CONFIGS)
        _curves(records, got)
        assert set(pool.recovered) == on[0] | on[1] and pool.workers == 1
        assert {m.slot for m in pool.members.values()} == {0}

        records, failed = pool.run_epoch()
        _curves(records, got)
        assert failed == {}
    finally:
        pool.close()
    # Every member has exactly one record per epoch, equal to the undisturbed in-process run.
    for key in CONFIGS:
        assert [e for e, *_ in got[key]] == [1, 2, 3, 4]
        assert got[key] == ref[key], key


@pytest.mark.slow
def test_ray_members_move_to_an_idle_actor_and_compute_what_they_would_have(local_ray, digits_data, monkeypatch):
    """Actors train in lockstep, as worker processes do: members are placed by time and moved with
    their state while the actors' epochs differ. The estimates are made wrong here (every member
    looks free, so all go to actor 0); the measured first epoch moves members to the idle actor,
    and every curve stays that of an in-process pool."""
    from shoal.engine import _packer
    from shoal.engine._ray_pool import RayPool

    local = LocalPool("mlp", [digits_data])
    ref = {k: [] for k in CONFIGS}
    for i, (key, cfg) in enumerate(CONFIGS.items()):
        local.add(key, normalize(cfg), i, 0, EPOCHS)
    for _ in range(EPOCHS):
        _curves(local.run_epoch()[0], ref)

    monkeypatch.setattr(_packer, "member_seconds", lambda *a, **k: 0.0)
    monkeypatch.setattr(_packer, "population_seconds", lambda *a, **k: 0.0)
    pool = RayPool("mlp", [digits_data], workers=2)
    try:
        got = {k: [] for k in CONFIGS}
        for i, (key, cfg) in enumerate(CONFIGS.items()):
            pool.add(key, normalize(cfg), i, 0, EPOCHS)
        assert {m.slot for m in pool.members.values()} == {0}
        for _ in range(EPOCHS):
            records, failed = pool.run_epoch()
            assert failed == {}
            _curves(records, got)
        assert pool.moves >= 1
        assert {m.slot for m in pool.members.values()} == {0, 1}  # both actors train now
        assert sum(pool.load) == pytest.approx(sum(r.seconds for r in records.values()))
    finally:
        pool.close()
    for key in CONFIGS:
        assert [e for e, *_ in got[key]] == [1, 2, 3, 4]
        for (_, t, v, lr), (_, t0, v0, lr0) in zip(got[key], ref[key]):
            assert (t, v, lr) == pytest.approx((t0, v0, lr0), abs=1e-5), key


def test_a_gpu_pool_on_a_cluster_without_gpus_is_refused(local_ray, digits_data):
    from shoal.engine._ray_pool import RayPool

    with pytest.raises(ConfigError, match="asks for GPUs, but the Ray cluster has none"):
        RayPool("mlp", [digits_data], device="cuda")


@pytest.mark.slow
def test_a_study_on_ray_equals_the_same_study_in_process(local_ray, workdir, monkeypatch):
    import shoal
    from shoal.engine import _balance

    # Moves follow measured epoch times, which vary from run to run; pinned off, the run is the
    # same every time (moving has its own test above).
    monkeypatch.setattr(_balance, "REBALANCE_GAP", math.inf)

    settings = dict(data="digits", preset="mlp", strategy="random", trials=4, epochs=2, seed=3, progress=False,
                    params={"batch_size": 64, "width": 32})
    here = shoal.tune(storage="local.db", executor="local", **settings)
    there = shoal.tune(storage="ray.db", executor="ray", workers=2, **settings)
    assert local_ray.is_initialized()  # a pool leaves the Ray it did not start running
    # The actors' populations hold other members than this process's one population (they are
    # placed by time), and a batch-norm member's float32 rounding depends on its co-members at the
    # 1e-7 level: equal to rounding, as for worker processes.
    a = [(t.number, t.value, *t.user_attrs["curves"]["val_loss"]) for t in here.study.trials]
    b = [(t.number, t.value, *t.user_attrs["curves"]["val_loss"]) for t in there.study.trials]
    assert len(a) == 4 and [r[0] for r in a] == [r[0] for r in b]
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=1e-5)
    assert there.study.user_attrs["population"]["workers"] == 2
    assert there.study.user_attrs["population"]["observed_peak_bytes"] > 0  # measured in each actor, summed


@pytest.mark.slow
def test_pbt_on_ray_equals_pbt_in_process(local_ray, workdir, monkeypatch):
    """PBT copies members (weights and optimizer state) between Ray actors as it does in this
    process: the same trials, lineage and curves."""
    import shoal
    from shoal.engine import _balance

    monkeypatch.setattr(_balance, "REBALANCE_GAP", math.inf)  # as in the study test above

    settings = dict(data="digits", preset="mlp", strategy="pbt", trials=4, epochs=4, pbt_interval=2, seed=3,
                    progress=False, params={"batch_size": 64, "width": 32, "depth": 1})
    here = shoal.tune(storage="local.db", executor="local", **settings)
    there = shoal.tune(storage="ray.db", executor="ray", workers=2, **settings)

    def lineage(study):
        return [(t.number, t.state.name, t.user_attrs["pbt"].get("parent"), t.user_attrs["curves"]["val_loss"])
                for t in study.trials]

    assert (here.study.user_attrs["pbt"]["pool"], there.study.user_attrs["pbt"]["pool"]) == ("LocalPool", "RayPool")
    assert there.study.user_attrs["pbt"]["workers"] == 2
    a, b = lineage(here.study), lineage(there.study)
    assert any(parent is not None for _, _, parent, _ in a), "no member was copied: the test shows nothing"
    assert a == b

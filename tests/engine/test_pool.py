"""Worker-process pools: the same records as in-process populations; a dead worker fails only its members."""

from __future__ import annotations

import os
import signal

import pytest

from shoal.engine import normalize
from shoal.engine._pool import LocalPool, ProcessPool

CONFIGS = {
    "a": {"width": 32, "depth": 1, "optimizer": "adam", "lr": 1e-3, "batch_size": 64},
    "b": {"width": 64, "depth": 2, "optimizer": "momentum", "lr": 1e-2, "batch_size": 64},
    "c": {"width": 32, "depth": 2, "optimizer": "sgd", "lr": 5e-2, "batch_size": 128},
}


def _run(pool, configs=CONFIGS, epochs=2):
    """Each member's (epoch, train loss, validation loss) after every epoch."""
    for i, (key, cfg) in enumerate(configs.items()):
        pool.add(key, normalize(cfg), i, 0, epochs)
    curves = {k: [] for k in configs}
    for _ in range(epochs):
        records, failed = pool.run_epoch()
        assert failed == {}
        for k, r in records.items():
            curves[k].append((r.epoch, r.train_loss, r.val_loss))
    return curves


def test_process_pool_matches_local_pool_and_survives_a_dead_worker(digits_data):
    local = _run(LocalPool("mlp", [digits_data]))
    pool = ProcessPool("mlp", [digits_data], workers=2)
    try:
        remote = _run(pool)
        for k in CONFIGS:
            assert [v for *_, v in remote[k]] == pytest.approx([v for *_, v in local[k]], abs=1e-4)
        # Kill one worker: its members fail with a reason, the other worker's go on.
        victim = pool.procs[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(timeout=10)
        lost = {k for k, (w, _) in pool.where.items() if w == 0}
        assert lost
        records, failed = pool.run_epoch()
        assert set(failed) == lost and all("worker process 0 died" in r for r in failed.values())
        assert set(records) == set(CONFIGS) - lost
    finally:
        pool.close()


def test_bad_member_fails_alone(digits_data):
    pool = LocalPool("mlp", [digits_data])
    pool.add("ok", normalize(CONFIGS["a"]), 0, 0, 1)
    pool.add("bad", {**normalize(CONFIGS["a"]), "width": 0}, 1, 0, 1)
    records, failed = pool.run_epoch()
    assert set(records) == {"ok"} and set(failed) == {"bad"}
    assert "width" in failed["bad"]


def _broken_factory(datas):
    raise RuntimeError("this worker cannot build its pool")


def test_a_worker_that_dies_starting_stops_the_pool_with_the_reason(digits_data):
    from shoal.engine._pool import WorkerStartError

    with pytest.raises(WorkerStartError, match=r"worker process 0 \(exit code 1\).*exited while starting"):
        ProcessPool("model", [digits_data], workers=2, factory=_broken_factory)


MOVED = {
    "d": {"width": 48, "depth": 2, "optimizer": "adam", "lr": 2e-3, "batch_size": 64, "dropout": 0.2},
    "e": {"width": 32, "depth": 2, "optimizer": "rmsprop", "lr": 1e-3, "batch_size": 64, "batch_norm": "before"},
    "f": {"width": 64, "depth": 1, "optimizer": "momentum", "lr": 1e-2, "batch_size": 128, "activation": "tanh"},
    "g": {"width": 32, "depth": 3, "optimizer": "adam", "lr": 1e-3, "batch_size": 128, "shape": "taper"},
}


def test_members_move_to_an_idle_worker_and_compute_what_they_would_have(digits_data, monkeypatch):
    """Placement by estimated time, corrected by measured time: when the estimates are wrong (here:
    every member looks free, so all go to worker 0), the measured epoch moves members to the idle
    worker, each carrying its state, and their curves are those of an in-process pool."""
    from shoal.engine import _packer

    configs = {**CONFIGS, **MOVED}
    local = _run(LocalPool("mlp", [digits_data]), configs, epochs=4)
    monkeypatch.setattr(_packer, "member_seconds", lambda *a, **k: 0.0)
    monkeypatch.setattr(_packer, "population_seconds", lambda *a, **k: 0.0)
    pool = ProcessPool("mlp", [digits_data], workers=2)
    try:
        remote = _run(pool, configs, epochs=4)
        assert pool.moves >= 1
        assert {w for w, _ in pool.where.values()} == {0, 1}  # both workers train now
        for k in configs:
            assert [e for e, _, _ in remote[k]] == [1, 2, 3, 4]
            assert [v for _, _, v in remote[k]] == pytest.approx([v for _, _, v in local[k]], abs=1e-5)
            assert [t for _, t, _ in remote[k]] == pytest.approx([t for _, t, _ in local[k]], abs=1e-5)
    finally:
        pool.close()


def test_members_are_placed_by_time_not_by_size(digits_data):
    """A member large in bytes but quick to train (batch 256: 6 steps an epoch) and six small ones
    that are slow (batch 16: 90 steps each): by size the six would crowd onto the other worker; by
    time they split evenly, the large one's worker taking its share."""
    pool = ProcessPool("mlp", [digits_data], workers=2)
    try:
        pool.add("big", normalize({"width": 512, "depth": 1, "batch_size": 256}), 0, 0, 1)
        for i in range(6):
            pool.add(i, normalize({"width": 128, "depth": 2, "batch_size": 16}), i + 1, 0, 1)
        per_worker = [sum(1 for i in range(6) if pool.where[i][0] == w) for w in (0, 1)]
        assert per_worker == [3, 3]
        assert pool.load[0] == pytest.approx(pool.load[1], rel=0.25)
    finally:
        pool.close()


def test_a_members_state_crosses_the_pipes_bit_for_bit(digits_data):
    """Fetched from a worker and added again from that state (as a PBT copy or a moved member is),
    a member's weights and optimizer moments come back as the same tensors, bit for bit."""
    import torch

    pool = ProcessPool("mlp", [digits_data], workers=2)
    try:
        cfg = normalize(CONFIGS["b"])
        pool.add("a", cfg, 0, 0, 4)
        pool.run_epoch()
        first = pool.snapshot("a")
        assert first["epoch"] == 1 and first["state"]
        pool.remove("a")
        pool.add("copy", cfg, 0, 0, 4, first)
        again = pool.snapshot("copy")
        assert again["epoch"] == 1 and sorted(again["state"]) == sorted(first["state"])
        for name, t in first["state"].items():
            assert isinstance(t, torch.Tensor) and isinstance(again["state"][name], torch.Tensor)
            assert t.dtype == again["state"][name].dtype and torch.equal(t, again["state"][name]), name
    finally:
        pool.close()

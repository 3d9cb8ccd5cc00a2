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


def _run(pool, epochs=2):
    for i, (key, cfg) in enumerate(CONFIGS.items()):
        pool.add(key, normalize(cfg), i, 0, epochs)
    curves = {k: [] for k in CONFIGS}
    for _ in range(epochs):
        records, failed = pool.run_epoch()
        assert failed == {}
        for k, r in records.items():
            curves[k].append(r.val_loss)
    return curves


def test_process_pool_matches_local_pool_and_survives_a_dead_worker(digits_data):
    local = _run(LocalPool("mlp", [digits_data]))
    pool = ProcessPool("mlp", [digits_data], workers=2)
    try:
        remote = _run(pool)
        for k in CONFIGS:
            assert remote[k] == pytest.approx(local[k], abs=1e-4)
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

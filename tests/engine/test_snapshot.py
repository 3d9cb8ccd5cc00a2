"""A member copied with ``snapshot`` goes on exactly where it was: the basis of PBT and of moving
members between workers."""

from __future__ import annotations

import pytest

from shoal._errors import ConfigError
from shoal.engine._pool import LocalPool, ProcessPool
from shoal.engine._population import Population

CFG = {"width": 32, "depth": 2, "lr": 3e-3, "optimizer": "adam", "batch_size": 64, "dropout": 0.2,
       "batch_norm": "before", "lr_decay": "cosine"}


def _pop(data):
    return Population("mlp", data.input_shape, data.n_outputs, data.task, batch_size=64)


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "rmsprop"])
def test_a_restored_member_continues_the_same_trajectory(digits_data, optimizer):
    cfg = {**CFG, "optimizer": optimizer, "lr": 3e-3 if optimizer != "momentum" else 0.02}
    whole = _pop(digits_data)
    whole.add("a", cfg, seed=3, data=digits_data, epochs=4)
    whole.add("other", {**cfg, "width": 16}, seed=4, data=digits_data, epochs=4)
    ref = [whole.run_epoch()["a"] for _ in range(4)]

    first = _pop(digits_data)
    first.add("a", cfg, seed=3, data=digits_data, epochs=4)
    for _ in range(2):
        first.run_epoch()
    snap = first.snapshot("a")
    assert snap["epoch"] == 2 and snap["steps"] > 0 and all(t.device.type == "cpu" for t in snap["state"].values())

    second = _pop(digits_data)
    second.add("filler", {**cfg, "width": 8}, seed=5, data=digits_data, epochs=4)
    second.add("b", cfg, seed=3, data=digits_data, epochs=4, start=snap)
    assert second.epoch_of("b") == 2
    got = [second.run_epoch()["b"] for _ in range(2)]
    for r, g in zip(ref[2:], got):
        assert g.epoch == r.epoch
        assert g.train_loss == pytest.approx(r.train_loss, abs=1e-5)
        assert g.val_loss == pytest.approx(r.val_loss, abs=1e-5)
        assert g.lr == pytest.approx(r.lr, rel=1e-12)


def test_a_snapshot_is_a_copy_and_takes_new_coefficients(digits_data):
    pop = _pop(digits_data)
    pop.add("a", CFG, seed=1, data=digits_data, epochs=3)
    pop.run_epoch()
    snap = pop.snapshot("a")
    before = {k: v.clone() for k, v in snap["state"].items()}
    # the child trains with ten times the parent's learning rate; the parent is unchanged by it
    pop.add("child", {**CFG, "lr": 3e-2}, seed=1, data=digits_data, epochs=3, start=snap)
    recs = pop.run_epoch()
    assert recs["child"].lr == pytest.approx(10 * recs["a"].lr)
    assert recs["child"].train_loss != recs["a"].train_loss
    assert all((before[k] == snap["state"][k]).all() for k in before)


def test_a_snapshot_of_another_architecture_is_refused(digits_data):
    pop = _pop(digits_data)
    pop.add("a", CFG, seed=1, data=digits_data, epochs=3)
    snap = pop.snapshot("a")
    with pytest.raises(ConfigError, match="another architecture"):
        pop.add("b", {**CFG, "width": 64}, seed=1, data=digits_data, epochs=3, start=snap)


@pytest.mark.parametrize("pool_cls", [LocalPool, ProcessPool])
def test_pools_carry_snapshots(digits_data, pool_cls):
    kwargs = {"workers": 2} if pool_cls is ProcessPool else {}
    pool = pool_cls("mlp", [digits_data], "cpu", **kwargs)
    try:
        pool.add("a", CFG, 1, 0, 3)
        r1, _ = pool.run_epoch()
        snap = pool.snapshot("a")
        assert snap["epoch"] == 1
        pool.add("b", CFG, 1, 0, 3, snap)
        r2, failed = pool.run_epoch()
        assert not failed
        assert r2["b"].epoch == 2
        assert r2["b"].val_loss == pytest.approx(r2["a"].val_loss, abs=1e-5)
    finally:
        pool.close()

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shoal.engine._packer import PeakMemory, capacity, default_budget, group_key, member_bytes

SHAPE = (1, 8, 8)


def test_group_key_splits_by_family_and_batch_size_only():
    assert group_key({"batch_size": 32, "width": 64}, "mlp") == group_key({"batch_size": 32, "width": 512}, "mlp")
    assert group_key({"batch_size": 32}, "mlp") != group_key({"batch_size": 64}, "mlp")
    assert group_key({}, "mlp") != group_key({}, "cnn")


def test_estimate_grows_with_width_depth_batch_and_bn():
    small = member_bytes({"width": 32}, "mlp", SHAPE, 10)
    assert member_bytes({"width": 256}, "mlp", SHAPE, 10) > 8 * small
    assert member_bytes({"width": 32, "depth": 4}, "mlp", SHAPE, 10) > small
    assert member_bytes({"width": 32, "batch_size": 256}, "mlp", SHAPE, 10) > small
    assert member_bytes({"width": 32, "batch_norm": "before"}, "mlp", SHAPE, 10) > small
    assert member_bytes({"channels": 32}, "cnn", SHAPE, 10) > member_bytes({"channels": 8}, "cnn", SHAPE, 10)


def test_capacity_fills_the_budget_and_respects_the_cap():
    cfg = {"width": 128}
    one = member_bytes(cfg, "mlp", SHAPE, 10)
    assert capacity([cfg] * 100, "mlp", SHAPE, 10, budget_bytes=10 * one + 1) == 10
    assert capacity([cfg] * 100, "mlp", SHAPE, 10, budget_bytes=10**12, cap=7) == 7
    assert capacity([cfg] * 5, "mlp", SHAPE, 10, budget_bytes=10**12) == 5
    # wide members use more of the budget than narrow ones
    assert capacity([{"width": 512}] * 100, "mlp", SHAPE, 10, budget_bytes=50 * one) < 50
    assert 0 < default_budget("cpu")


def test_peak_memory_observes_an_allocation():
    # A process that peaked higher before the block still sees the block's own peak.
    code = (
        "big = bytearray(600 << 20); big[::4096] = b'x' * len(big[::4096]); del big\n"
        "from shoal.engine._packer import PeakMemory\n"
        "with PeakMemory('cpu') as peak:\n"
        "    buf = bytearray(300 << 20)\n"
        "    buf[::4096] = b'x' * len(buf[::4096])\n"
        "print(peak.bytes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 250 << 20 <= int(out.stdout.strip()) <= 400 << 20


_PROBE = """
import torch
torch.set_num_threads(1)
from shoal.data import load_dataset, train_val_split, prepare
from shoal.engine import TensorData
from shoal.engine._population import Population
from shoal.engine._packer import member_bytes, PeakMemory
ds = load_dataset("digits")  # few training rows: the peak is per step, the steps need not be many
data = TensorData.from_prepared(prepare(ds, train_val_split(ds, val_fraction=0.8)))
cfg = dict(width=512, depth=3, batch_norm="after", dropout=0.2)
pop = Population("mlp", data.input_shape, 10, data.task, 64)
with PeakMemory() as peak:
    for i in range(24):
        pop.add(i, cfg, seed=i, data=data, epochs=1)
    pop.run_epoch()
print(peak.bytes / (24 * member_bytes(cfg, "mlp", data.input_shape, 10, 64)))
"""


@pytest.mark.slow
def test_estimate_is_within_a_factor_two_of_the_observed_peak():
    env = dict(os.environ, SHOAL_NO_COMPILE="1")  # eager update: the larger of the two peaks
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True)
    ratio = float(out.stdout.strip().splitlines()[-1])
    assert 0.5 < ratio < 2.0, ratio

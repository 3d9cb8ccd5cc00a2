"""Fixtures for the user-model tests: digits as tensors, and small modules of each kind."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_data():
    """Digits split 80/20 with seed 0 (1438 train rows, 359 validation), as the studies split it."""
    from shoal.data import load_dataset, prepare, train_val_split
    from shoal.engine import TensorData

    ds = load_dataset("digits")
    return TensorData.from_prepared(prepare(ds, train_val_split(ds, val_fraction=0.2, seed=0)))

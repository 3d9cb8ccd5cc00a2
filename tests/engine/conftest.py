"""Shared engine fixtures: the digits data set as tensors, prepared once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_data():
    """Digits (1797 8x8 images, 10 classes) split 80/20 with seed 0: 1438 train rows, 359 validation."""
    from shoal.data import load_dataset, prepare, train_val_split
    from shoal.engine import TensorData

    ds = load_dataset("digits")
    return TensorData.from_prepared(prepare(ds, train_val_split(ds, val_fraction=0.2, seed=0)))

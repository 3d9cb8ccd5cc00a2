"""Helpers for the data tests: tiny IDX files written on the spot (no network, no files kept)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest


def _write_idx(path: Path, array: np.ndarray, *, gz: bool | None = None) -> Path:
    """Write ``array`` (uint8) as an IDX file; gzipped when ``gz`` or when the name ends in .gz."""
    array = np.asarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    if gz if gz is not None else path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def _make_images(n: int, seed: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 images and labels cycling through 0, 1, 2."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 3


@pytest.fixture
def write_idx():
    """The IDX writer: ``write_idx(path, uint8_array, gz=None)``."""
    return _write_idx


@pytest.fixture
def idx_folder(tmp_path: Path):
    """Factory: a folder with IDX files for the given splits; returns (folder, {split: (X, y)})."""

    def make(splits=("train", "t10k"), *, gz: bool = True, n: int = 30, name: str = "idx"):
        folder = tmp_path / name
        folder.mkdir()
        ext = ".gz" if gz else ""
        arrays = {}
        for i, split in enumerate(splits):
            X, y = _make_images(n + 5 * i, seed=i)
            _write_idx(folder / f"{split}-images-idx3-ubyte{ext}", X)
            _write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", y)
            arrays[split] = (X, y)
        return folder, arrays

    return make

"""Data sets: loading (digits, MNIST-style IDX, CSV, NPZ, arrays), splits, and scaling.

The path of the data in one study::

    load_dataset(spec) -> Dataset           whole set in memory, labels encoded, raw values
    train_val_split / kfold_splits -> Split  seeded, stratified row indices
    prepare(dataset, split) -> Prepared     arrays scaled with train-only statistics

This subpackage never imports torch, and imports scikit-learn only when digits are loaded or a
split is made.
"""

from shoal.data._dataset import Dataset, describe, from_arrays
from shoal.data._idx import read_idx
from shoal.data._loaders import load_dataset
from shoal.data._prepare import Prepared, prepare
from shoal.data._split import Split, kfold_splits, train_val_split

__all__ = [
    "Dataset",
    "Prepared",
    "Split",
    "describe",
    "from_arrays",
    "kfold_splits",
    "load_dataset",
    "prepare",
    "read_idx",
    "train_val_split",
]

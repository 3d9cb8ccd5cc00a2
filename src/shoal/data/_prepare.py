"""``prepare``: cut a data set along a split and scale it with statistics of the train rows only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoal._errors import ConfigError
from shoal.data._dataset import Dataset
from shoal.data._split import Split

__all__ = ["SCALES", "Prepared", "prepare"]

SCALES = ("standard", "minmax", "none")


@dataclass(frozen=True, eq=False, repr=False)
class Prepared:
    """Train / validation / test arrays ready for a model: C-contiguous, scaled, float32.

    Every mode of ``scale`` is the affine map ``X_scaled = (X - mean) / std``, with ``mean`` and
    ``std`` of shape ``input_shape`` fitted on the training rows: per-feature mean and standard
    deviation for ``"standard"``, min and (max - min) for ``"minmax"``, 0 and 1 for ``"none"``.
    Regression targets are standardized the same way (``y_mean``, ``y_std``, so a loss can be
    reported in original units: ``y = y_scaled * y_std + y_mean``); classification targets are
    int64 class indices and ``y_mean`` / ``y_std`` are None.

    Example:
        >>> from shoal.data import load_dataset, train_val_split
        >>> ds = load_dataset("digits")
        >>> p = prepare(ds, train_val_split(ds))
        >>> p.X_train.shape, p.X_train.dtype, p.y_train.dtype, p.n_outputs
        ((1438, 1, 8, 8), dtype('float32'), dtype('int64'), 10)
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    input_shape: tuple[int, ...]
    n_outputs: int
    task: str
    scale: str
    mean: np.ndarray
    std: np.ndarray
    y_mean: np.ndarray | None = None
    y_std: np.ndarray | None = None

    def __repr__(self) -> str:
        test = "no test" if self.X_test is None else f"{len(self.X_test)} test"
        return (
            f"Prepared({len(self.X_train)} train, {len(self.X_val)} val, {test}, "
            f"input {self.input_shape}, {self.task}, scale={self.scale!r})"
        )


def prepare(dataset: Dataset, split: Split, *, scale: str = "standard") -> Prepared:
    """Cut ``dataset`` along ``split`` and scale features with train-only statistics.

    Fitting the scaler on the training rows only keeps validation and test rows unseen, so
    their scores are not optimistic.

    Args:
        dataset: The data set.
        split: Row indices from :func:`train_val_split` or :func:`kfold_splits`.
        scale: ``"standard"`` (zero mean, unit variance per feature for tabular data, per
            channel for images; constant features are only centred), ``"minmax"`` (train range mapped to [0, 1]; constant features to 0)
            or ``"none"``.

    Returns:
        The arrays and the fitted scaling.
    """
    if scale not in SCALES:
        raise ConfigError(
            f"The 'scale' parameter must be one of 'standard', 'minmax' or 'none'. Got "
            f"{scale!r} instead."
        )
    n = len(dataset)
    for name in ("train", "val", "test"):
        idx = getattr(split, name)
        if idx is not None and idx.size and idx[-1] >= n:
            raise ConfigError(
                f"The split's '{name}' part refers to row {int(idx[-1])}, but '{dataset.name}' "
                f"has {n} rows. Make the split from this data set."
            )
    X_train = dataset.X[split.train]
    # Tabular data: statistics per feature. Images (channels, height, width): per channel, over
    # all pixels. Per-pixel statistics blow up rarely-lit border pixels (a pixel lit in 3 of 8,000
    # MNIST images gets a tiny std and validation values near 700).
    axes = (0, 2, 3) if X_train.ndim == 4 else 0
    keep = X_train.ndim == 4
    # float64 sums: float32 loses digits over tens of thousands of rows.
    if scale == "standard":
        mean = X_train.mean(axis=axes, dtype=np.float64, keepdims=keep)[0] if keep else X_train.mean(axis=0, dtype=np.float64)
        std = X_train.std(axis=axes, dtype=np.float64, keepdims=keep)[0] if keep else X_train.std(axis=0, dtype=np.float64)
        std = _nonzero(std)
    elif scale == "minmax":
        mean = (X_train.min(axis=axes, keepdims=keep)[0] if keep else X_train.min(axis=0)).astype(np.float64)
        high = (X_train.max(axis=axes, keepdims=keep)[0] if keep else X_train.max(axis=0)).astype(np.float64)
        std = _nonzero(high - mean)
    else:
        mean = np.zeros(dataset.input_shape)
        std = np.ones(dataset.input_shape)
    # Apply in float32 (what is stored), so that a float64 copy of a big image set never exists.
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    # A pixel that never varies in the training rows (a blank border) carries no information. Set it
    # to exactly 0 after scaling: left at a constant it acts as a second bias, which batch norm
    # cancels, and adaptive optimizers then amplify the rounding noise of its ~0 gradient.
    constant = None
    if keep and scale != "none":
        constant = X_train.min(axis=0) == X_train.max(axis=0)
        if not constant.any():
            constant = None

    def x(idx: np.ndarray | None) -> np.ndarray | None:
        if idx is None:
            return None
        out = np.ascontiguousarray((dataset.X[idx] - mean) / std, dtype=np.float32)
        if constant is not None:
            out[:, constant] = 0.0
        return out

    y_mean = y_std = None
    if dataset.task == "regression":
        y_train = dataset.y[split.train]
        y_mean = y_train.mean(axis=0, dtype=np.float64)
        y_std = _nonzero(y_train.std(axis=0, dtype=np.float64)).astype(np.float32)
        y_mean = y_mean.astype(np.float32)

    def y(idx: np.ndarray | None) -> np.ndarray | None:
        if idx is None:
            return None
        if dataset.task == "classification":
            return np.ascontiguousarray(dataset.y[idx], dtype=np.int64)
        return np.ascontiguousarray((dataset.y[idx] - y_mean) / y_std, dtype=np.float32)

    return Prepared(
        X_train=x(split.train),
        y_train=y(split.train),
        X_val=x(split.val),
        y_val=y(split.val),
        X_test=x(split.test),
        y_test=y(split.test),
        input_shape=dataset.input_shape,
        n_outputs=dataset.n_outputs,
        task=dataset.task,
        scale=scale,
        mean=mean,
        std=std,
        y_mean=y_mean,
        y_std=y_std,
    )


def _nonzero(spread: np.ndarray) -> np.ndarray:
    # A constant feature (a border pixel that is always 0) would divide by zero: leave it at 1.
    return np.where(spread > 0, spread, 1.0)

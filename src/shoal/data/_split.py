"""Seeded, stratified train / validation (/ test) splits and k-fold cross-validation."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from shoal._errors import ConfigError
from shoal.data._dataset import Dataset

__all__ = ["Split", "kfold_splits", "train_val_split"]


@dataclass(frozen=True, eq=False)
class Split:
    """Which rows of a data set train, validate and test: sorted int64 index arrays.

    Args:
        train: Rows to fit on.
        val: Rows to score trials on (the fold's rows in k-fold cross-validation).
        test: Rows held out until the end, or None.
        fold: The fold number in k-fold cross-validation, else None.

    Example:
        >>> import numpy as np
        >>> s = Split(np.array([0, 2, 3]), np.array([1]))
        >>> s.train.dtype, s.test, s.fold
        (dtype('int64'), None, None)
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray | None = None
    fold: int | None = None

    def __post_init__(self) -> None:
        parts = {"train": self.train, "val": self.val, "test": self.test}
        seen: list[np.ndarray] = []
        for name, idx in parts.items():
            if idx is None and name == "test":
                continue
            idx = np.asarray(idx)
            if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
                raise ConfigError(
                    f"The '{name}' part of a Split must be a 1-D array of row indices. Got dtype "
                    f"{idx.dtype} and shape {idx.shape} instead."
                )
            if idx.size == 0 and name != "test":
                raise ConfigError(f"The '{name}' part of a Split is empty. Give it some rows.")
            idx = _read_only(np.sort(idx).astype(np.int64))
            if idx.size and idx[0] < 0:
                raise ConfigError(
                    f"Row indices must be >= 0. Got {int(idx[0])} in the '{name}' part instead."
                )
            for other in seen:
                if np.intersect1d(idx, other).size:
                    raise ConfigError(
                        f"The '{name}' part of a Split shares rows with another part. Every row "
                        f"must be in at most one of train, val and test."
                    )
            seen.append(idx)
            object.__setattr__(self, name, idx)


def train_val_split(
    dataset: Dataset,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    stratify: bool = True,
    official_test: bool = False,
) -> Split:
    """Split rows at random into train, validation and (optionally) test.

    The test part is carved out first, from ``seed`` and ``test_fraction`` alone, so it stays
    the same whatever ``val_fraction`` is. Classification splits are stratified: each part keeps
    the class proportions (to within one sample per class).

    Args:
        dataset: The data set to split.
        val_fraction: Share of all rows for validation, in (0, 1).
        test_fraction: Share of all rows held out for the final test, in [0, 1); 0: no test.
        seed: Seed of the shuffling.
        stratify: Keep class proportions (classification only; ignored for regression).
        official_test: Hold out the data set's own test part (``dataset.test_rows``: MNIST's
            t10k file) instead of ``test_fraction`` of the rows; ``val_fraction`` is then a share
            of the other rows.

    Returns:
        The split, with ``fold=None``.

    Example:
        >>> from shoal.data import load_dataset
        >>> s = train_val_split(load_dataset("digits"), val_fraction=0.25, test_fraction=0.2)
        >>> len(s.train), len(s.val), len(s.test)
        (989, 449, 359)
    """
    _check_fraction("val_fraction", val_fraction, low_open=True)
    _check_fraction("test_fraction", test_fraction, low_open=False)
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"The 'val_fraction' and 'test_fraction' parameters must sum to less than 1, to "
            f"leave rows to train on. Got {val_fraction} + {test_fraction} = "
            f"{val_fraction + test_fraction:g} instead."
        )
    _check_seed(seed)
    rest, test = _hold_out_test(dataset, test_fraction, seed, stratify, official_test)
    n_val = round(val_fraction * (len(rest) if official_test else len(dataset)))
    train, val = _shuffle_split(dataset, rest, n_val, seed, stratify, "validation")
    return Split(train, val, test)


def kfold_splits(
    dataset: Dataset,
    *,
    k: int = 5,
    seed: int = 0,
    test_fraction: float = 0.0,
    stratify: bool = True,
    official_test: bool = False,
) -> list[Split]:
    """K-fold cross-validation splits over the rows not held out for testing.

    The test part (if any) is carved out first and is the same array in every fold; the other
    rows are shuffled with ``seed`` and dealt into ``k`` folds (stratified by class for
    classification). Fold ``i`` validates on its rows and trains on the other ``k - 1`` folds.

    Args:
        dataset: The data set to split.
        k: Number of folds, at least 2 (and, when stratified, at most the smallest class count).
        seed: Seed of the shuffling.
        test_fraction: Share of all rows held out for the final test, in [0, 1); 0: no test.
        stratify: Keep class proportions (classification only; ignored for regression).
        official_test: Hold out the data set's own test part (``dataset.test_rows``) instead of
            ``test_fraction`` of the rows.

    Returns:
        ``k`` splits, ``fold`` numbered 0..k-1; their ``val`` parts partition the non-test rows.

    Example:
        >>> from shoal.data import load_dataset
        >>> folds = kfold_splits(load_dataset("digits"), k=3)
        >>> [len(f.val) for f in folds]
        [599, 599, 599]
    """
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 2:
        raise ConfigError(f"The 'k' parameter must be an int >= 2. Got {k!r} instead.")
    _check_fraction("test_fraction", test_fraction, low_open=False)
    _check_seed(seed)
    k = int(k)
    rest, test = _hold_out_test(dataset, test_fraction, seed, stratify, official_test)
    labels = _labels(dataset, rest, stratify)
    if labels is not None:
        values, counts = np.unique(labels, return_counts=True)
        if counts.min() < k:
            worst = dataset.classes[int(values[counts.argmin()])]
            raise ConfigError(
                f"The number of folds (k, --folds) must be at most the smallest class count for stratified "
                f"folds: class {worst!r} has only {int(counts.min())} rows outside the test "
                f"part. Got k={k} instead; use --folds {int(counts.min())} or fewer (stratify=False from Python)."
            )
        from sklearn.model_selection import StratifiedKFold

        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(rest, labels)
    else:
        if k > len(rest):
            raise ConfigError(
                f"The number of folds (k, --folds) must be at most the number of rows to cross-validate "
                f"({len(rest)}). Got k={k} instead."
            )
        from sklearn.model_selection import KFold

        folds = KFold(n_splits=k, shuffle=True, random_state=seed).split(rest)
    return [Split(rest[tr], rest[va], test, i) for i, (tr, va) in enumerate(folds)]


def _labels(dataset: Dataset, idx: np.ndarray, stratify: bool) -> np.ndarray | None:
    if stratify and dataset.task == "classification":
        return dataset.y[idx]
    return None


def _hold_out_test(
    dataset: Dataset, test_fraction: float, seed: int, stratify: bool, official: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    everything = np.arange(len(dataset), dtype=np.int64)
    if official:
        check_official_test(dataset, test_fraction)
        test = np.asarray(dataset.test_rows, dtype=np.int64)
        return np.setdiff1d(everything, test, assume_unique=True), test
    if test_fraction == 0:
        return everything, None
    n_test = round(test_fraction * len(dataset))
    return _shuffle_split(dataset, everything, n_test, seed, stratify, "test")


def check_official_test(dataset: Dataset, test_fraction: float = 0.0) -> None:
    """Raise ConfigError unless ``dataset`` has a test part of its own and no ``test_fraction``
    competes with it."""
    if dataset.test_rows is None:
        raise ConfigError(
            f"'{dataset.name}' has no test part of its own: official_test (--official-test) needs a folder "
            f"with both the train and the t10k IDX files, or a .npz with x_train, y_train, x_test and y_test. "
            f"Hold out a share of the rows with test_fraction (--test-fraction 0.2) instead."
        )
    if test_fraction:
        raise ConfigError(
            f"Both official_test and test_fraction={test_fraction} name the test rows. Give one: "
            f"official_test holds out '{dataset.name}''s own {len(dataset.test_rows)} test rows."
        )


def _shuffle_split(
    dataset: Dataset, idx: np.ndarray, n_out: int, seed: int, stratify: bool, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (kept, out) with ``n_out`` rows out, both sorted."""
    param = "val_fraction" if what == "validation" else "test_fraction"
    if n_out < 1 or n_out >= len(idx):
        raise ConfigError(
            f"The '{param}' parameter leaves {n_out} of {len(dataset)} rows for {what} and "
            f"{len(idx) - n_out} for what remains; each part needs at least one row. Choose "
            f"another '{param}'."
        )
    from sklearn.model_selection import train_test_split  # slow import, only when splitting

    try:
        kept, out = train_test_split(
            idx, test_size=n_out, random_state=seed, stratify=_labels(dataset, idx, stratify)
        )
    except ValueError as exc:  # sklearn: a class too small to be spread over both parts
        labels = _labels(dataset, idx, stratify)
        values, counts = np.unique(labels, return_counts=True) if labels is not None else ([], [])
        rare = [dataset.classes[int(v)] for v, c in zip(values, counts) if c < 2]
        if not rare:
            raise ConfigError(f"Could not stratify the {what} part of '{dataset.name}': {exc}. Use another "
                              f"'{param}' (--{param.replace('_', '-')}).") from None
        shown = ", ".join(repr(r) for r in rare[:5]) + (f" and {len(rare) - 5} more" if len(rare) > 5 else "")
        raise ConfigError(
            f"Could not stratify the {what} part of '{dataset.name}': {len(rare)} class(es) have a single row "
            f"({shown}), which cannot be on both sides of the split. Drop or merge those rows (a class needs 2 "
            f"rows or more), or, if the target is a number to predict, use --task regression. (Python's split "
            f"functions also take stratify=False.)"
        ) from None
    return np.sort(kept), np.sort(out)


def _check_fraction(name: str, value: object, *, low_open: bool) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (0 < value < 1 if low_open else 0 <= value < 1):
        return
    interval = "(0, 1)" if low_open else "[0, 1)"
    raise ConfigError(
        f"The '{name}' parameter must be a float in the range {interval}. Got {value!r} instead."
    )


def _check_seed(seed: object) -> None:
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= seed < 2**32:
        return
    raise ConfigError(
        f"The 'seed' parameter must be an int in the range [0, 2**32). Got {seed!r} instead."
    )


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a

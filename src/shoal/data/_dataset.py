"""The in-memory ``Dataset``: features, encoded targets, task, and the checks all loaders share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shoal._errors import ConfigError

__all__ = ["TASKS", "Dataset", "check_task", "describe", "from_arrays", "infer_task"]

TASKS = ("classification", "regression")

# An integer target with more distinct values than this is read as a regression target
# (an age or a count), not as class labels; pass task= to override.
MAX_INFERRED_CLASSES = 50


def check_task(task: Any) -> str | None:
    """Return ``task`` unchanged if it is None or one of ``TASKS``; raise ConfigError otherwise."""
    if task is None or task in TASKS:
        return task
    raise ConfigError(
        f"The 'task' parameter must be one of 'classification', 'regression' or None (infer it "
        f"from the target). Got {task!r} instead."
    )


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A whole data set in memory, targets already encoded.

    ``X`` is float32 with shape ``[n, *input_shape]``: images keep a channel axis
    (digits are ``[1797, 1, 8, 8]``), tables are ``[n, d]``. Pixel values stay raw; scaling is
    fitted on the training part later, by :func:`shoal.data.prepare`. For classification ``y``
    holds int64 class indices ``0..C-1`` and ``classes[i]`` is the original label of index ``i``;
    for regression ``y`` is float32 ``[n]`` or ``[n, t]`` and ``classes`` is empty.

    The arrays are stored as read-only views, so a ``Dataset`` can be shared between trials
    without one of them changing it for the others.

    Args:
        X: Features, shape ``[n, *input_shape]``.
        y: Targets, shape ``[n]`` (or ``[n, t]`` for multi-target regression).
        task: ``"classification"`` or ``"regression"``.
        name: A short name used in reports.
        classes: Original label values, index ``i`` -> label (classification only). Left empty,
            it becomes ``[0, 1, ..., max(y)]``.
        test_rows: The rows that are the data set's own test part (MNIST's t10k file, a .npz's
            ``x_test``), or None. Only ``official_test=True`` splits use it; otherwise they are rows
            like the others.

    Example:
        >>> import numpy as np
        >>> ds = Dataset(np.zeros((4, 3)), np.array([0, 1, 0, 1]), "classification", "toy")
        >>> len(ds), ds.input_shape, ds.n_classes, ds.n_outputs
        (4, (3,), 2, 2)
    """

    X: np.ndarray
    y: np.ndarray
    task: str
    name: str = "dataset"
    classes: list = field(default_factory=list)
    test_rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            check_task(self.task)  # raises: a Dataset always knows its task
        X = _as_features(self.X)
        n = X.shape[0]
        y = np.asarray(self.y)
        if y.ndim == 0 or y.shape[0] != n:
            got = "a scalar" if y.ndim == 0 else f"{y.shape[0]} rows"
            raise ConfigError(
                f"X and y must have the same number of rows. Got {n} rows in X and {got} in y "
                f"instead."
            )
        if n == 0:
            raise ConfigError("The data set is empty (0 rows). Give at least a few samples.")
        _check_finite(X, "X")
        classes = list(self.classes)
        if self.task == "classification":
            y, classes = _check_class_indices(y, classes)
        else:
            if classes:
                raise ConfigError(
                    f"A regression data set has no classes. Got classes={classes[:5]!r} instead; "
                    f"leave 'classes' empty or use task='classification'."
                )
            y = _as_regression_target(y)
        object.__setattr__(self, "X", _read_only(X))
        object.__setattr__(self, "y", _read_only(y))
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "name", str(self.name))
        if self.test_rows is not None:
            object.__setattr__(self, "test_rows", _read_only(_check_test_rows(self.test_rows, n)))

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        return f"Dataset({describe(self)})"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 8, 8)`` for digits or ``(d,)`` for a table."""
        return tuple(int(s) for s in self.X.shape[1:])

    @property
    def n_features(self) -> int:
        """Number of input values per sample (the product of ``input_shape``)."""
        return math.prod(self.input_shape)

    @property
    def n_classes(self) -> int:
        """Number of classes (0 for regression)."""
        return len(self.classes)

    @property
    def n_outputs(self) -> int:
        """Width of a model's output layer: classes, or regression targets."""
        if self.task == "classification":
            return self.n_classes
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])


def describe(dataset: Dataset) -> str:
    """One line about a data set, e.g. ``"digits: 1797 samples, input (1, 8, 8), 10 classes"``."""
    head = f"{dataset.name}: {len(dataset)} samples, input {dataset.input_shape}"
    if dataset.task == "classification":
        text = f"{head}, {dataset.n_classes} classes"
    else:
        t = dataset.n_outputs
        text = f"{head}, regression with {t} target{'s' if t != 1 else ''}"
    if dataset.test_rows is not None:
        text += f" ({len(dataset.test_rows)} of them its own test part)"
    return text


def infer_task(y: np.ndarray) -> str:
    """Guess the task from a raw target column.

    Strings and booleans are class labels; integers are class labels when there are at most 50
    distinct values; floats (and everything 2-D) are regression targets.
    """
    if y.dtype.kind in "USOb":
        return "classification"
    if y.ndim == 1 and y.dtype.kind in "iu" and len(np.unique(y)) <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def from_arrays(X: Any, y: Any, *, task: str | None = None, name: str = "arrays",
                test_rows: Any = None) -> Dataset:
    """Build a :class:`Dataset` from NumPy arrays (or anything ``np.asarray`` accepts).

    Class labels of any kind (ints, strings) are mapped to ``0..C-1`` in sorted order and the
    original values kept in ``Dataset.classes``.

    Args:
        X: Features, shape ``[n, d]`` or ``[n, *input_shape]`` (e.g. ``[n, 1, 28, 28]``).
        y: Targets, shape ``[n]`` (or ``[n, t]`` for regression).
        task: ``"classification"``, ``"regression"`` or None to infer it from ``y``
            (see :func:`infer_task`).
        name: A short name used in reports.
        test_rows: Indices of the rows that are the set's own test part (see ``Dataset``).

    Returns:
        The validated data set.

    Example:
        >>> ds = from_arrays([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], ["cat", "dog", "cat"])
        >>> ds.classes, ds.y.tolist()
        (['cat', 'dog'], [0, 1, 0])
    """
    check_task(task)
    X = _as_features(X)
    y = np.asarray(y)
    labels_like = task == "classification" or (task is None and y.dtype.kind not in "fc")
    if y.ndim == 2 and y.shape[1] == 1 and labels_like:  # a column vector of labels
        y = y[:, 0]
    task = task or infer_task(y)
    if task == "classification":
        if y.ndim != 1:
            raise ConfigError(
                f"Classification targets must be one label per sample (shape [n]). Got shape "
                f"{y.shape} instead; for one-hot targets pass y.argmax(axis=1)."
            )
        y, classes = _encode_labels(y)
        return Dataset(X, y, task, name, classes, test_rows)
    return Dataset(X, y, task, name, test_rows=test_rows)


def _encode_labels(y: np.ndarray) -> tuple[np.ndarray, list]:
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        raise ConfigError(
            f"The class labels contain {int(np.sum(~np.isfinite(y)))} NaN or infinite values. "
            f"Drop those samples or give them a label."
        )
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError as exc:  # object array mixing str and numbers
        raise ConfigError(
            f"The class labels mix types that cannot be sorted ({exc}). Give labels of one type, "
            f"all strings or all numbers."
        ) from None
    return codes.reshape(-1).astype(np.int64), classes.tolist()


def _as_features(X: Any) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ConfigError(
            f"X must hold numbers (bool, int or float). Got an array of dtype {X.dtype} instead; "
            f"encode text or categorical features as numbers first."
        )
    if X.ndim < 2:
        raise ConfigError(
            f"X must have one row per sample, shape [n, d] or [n, *input_shape]. Got shape "
            f"{X.shape} instead; for a single feature pass X.reshape(-1, 1)."
        )
    return np.ascontiguousarray(X, dtype=np.float32)


def _check_finite(a: np.ndarray, what: str) -> None:
    finite = np.isfinite(a)
    if finite.all():
        return
    n_nan = int(np.isnan(a).sum())
    n_inf = int((~finite).sum()) - n_nan
    parts = [f"{n_nan} NaN" if n_nan else "", f"{n_inf} infinite" if n_inf else ""]
    bad = " and ".join(p for p in parts if p)
    raise ConfigError(
        f"{what} contains {bad} value{'s' if n_nan + n_inf != 1 else ''} (missing cells, or "
        f"numbers too large for float32). Remove or impute them before loading."
    )


def _check_class_indices(y: np.ndarray, classes: list) -> tuple[np.ndarray, list]:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ConfigError(
            f"Dataset(task='classification') needs y as int class indices of shape [n]. Got "
            f"dtype {y.dtype} and shape {y.shape} instead; use from_arrays() to encode labels."
        )
    y = np.ascontiguousarray(y, dtype=np.int64)
    low, high = int(y.min()), int(y.max())
    if not classes:
        classes = list(range(high + 1))
    if low < 0 or high >= len(classes):
        raise ConfigError(
            f"Class indices must lie in 0..{len(classes) - 1} (one per entry of 'classes'). Got "
            f"values from {low} to {high} instead."
        )
    if len(np.unique(y)) < 2:
        raise ConfigError(
            f"Classification needs at least 2 classes. Got only the class {classes[low]!r} "
            f"instead; check the target column, or use task='regression' (--task regression)."
        )
    return y, classes


def _as_regression_target(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind not in "biuf":
        raise ConfigError(
            f"Regression targets must be numbers. Got dtype {y.dtype} instead; use "
            f"task='classification' (--task classification) for labels."
        )
    if y.ndim not in (1, 2):
        raise ConfigError(
            f"Regression targets must have shape [n] or [n, t]. Got shape {y.shape} instead."
        )
    y = np.ascontiguousarray(y, dtype=np.float32)
    _check_finite(y, "y")
    return y


def _check_test_rows(rows: Any, n: int) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise ConfigError(f"'test_rows' must be a 1-D array of row indices. Got dtype {rows.dtype} and shape "
                          f"{rows.shape} instead.")
    rows = np.unique(rows.astype(np.int64))  # sorted, each row once
    if rows.size == 0 or rows.size >= n or rows[0] < 0 or rows[-1] >= n:
        raise ConfigError(f"'test_rows' must name between 1 and {n - 1} of the {n} rows (indices 0..{n - 1}), "
                          f"leaving rows to train on. Got {rows.size} indices from "
                          f"{rows[0] if rows.size else '-'} to {rows[-1] if rows.size else '-'} instead.")
    return rows


def _read_only(a: np.ndarray) -> np.ndarray:
    # A view, so that the caller's own array stays writeable.
    view = a.view()
    view.flags.writeable = False
    return view

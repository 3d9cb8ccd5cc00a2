"""``load_dataset``: one entry point from a name, a file, a folder or arrays to a ``Dataset``."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from shoal._errors import ConfigError
from shoal.data._dataset import Dataset, check_task, from_arrays
from shoal.data._idx import IDX_SETS, has_idx_files, load_idx_folder

__all__ = ["data_location", "load_dataset"]

ACCEPTED = (
    "'digits', 'mnist[:folder]', 'fashion-mnist[:folder]', a folder holding IDX files, a .csv "
    "file (header row, target column last or named by target=), a .npz file (arrays X and y), "
    "or (X, y) arrays"
)
# Array names tried in a .npz file, in order.
NPZ_KEYS = (("X", "y"), ("x", "y"), ("data", "target"))
NPZ_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test", "X_train", "X_test")


def load_dataset(
    spec: Any,
    *,
    target: str | int | None = None,
    task: str | None = None,
    download: bool = False,
    data_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Load a data set by name, file, folder or arrays.

    Args:
        spec: What to load:

            - ``"digits"``: scikit-learn's bundled 8x8 digits, X of shape ``[1797, 1, 8, 8]``.
            - ``"mnist"`` / ``"fashion-mnist"``: the IDX files in ``data_dir`` (default
              ``./data/mnist`` resp. ``./data/fashion-mnist``); ``"mnist:/some/folder"``
              names the folder inline. Train and t10k files are concatenated (train first);
              either is enough. With both, the t10k rows are the set's ``test_rows``.
            - a folder holding IDX files (named after the folder).
            - a ``.csv`` file with a header row; the target is the last column unless
              ``target`` names another.
            - a ``.npz`` file with arrays ``X``/``y`` (or ``x``/``y``, ``data``/``target``), or
              Keras' ``x_train``, ``y_train``, ``x_test``, ``y_test`` (the test arrays become
              the set's ``test_rows``).
            - a ``Dataset`` (returned as is) or a tuple ``(X, y)`` of arrays.
        target: CSV only: the target column's name (or 0-based index). Default: the last.
        task: ``"classification"`` or ``"regression"``; None infers it from the target
            (strings, or integers with at most 50 distinct values, are class labels).
        download: For ``mnist`` / ``fashion-mnist``: fetch missing files from the standard
            mirror first (needs internet).
        data_dir: For ``mnist`` / ``fashion-mnist``: the folder of the IDX files.

    Returns:
        The validated data set.

    Raises:
        ConfigError: Unknown name, missing or malformed file, or inconsistent data.

    Example:
        >>> ds = load_dataset("digits")
        >>> ds.X.shape, ds.n_classes
        ((1797, 1, 8, 8), 10)
    """
    check_task(task)
    if isinstance(spec, Dataset):
        _no_extra(spec.name, target=target, data_dir=data_dir)
        if task is not None and task != spec.task:
            raise ConfigError(
                f"The data set '{spec.name}' is a {spec.task} set. Got task={task!r} instead; "
                f"leave task=None or rebuild it with from_arrays(X, y, task={task!r})."
            )
        return spec
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ConfigError(
                f"A data set given as a tuple must be (X, y). Got a tuple of length {len(spec)} "
                f"instead."
            )
        _no_extra("arrays", target=target, data_dir=data_dir)
        return from_arrays(spec[0], spec[1], task=task)
    if not isinstance(spec, (str, os.PathLike)):
        raise ConfigError(
            f"The 'spec' parameter must be {ACCEPTED}. Got an object of type "
            f"{type(spec).__name__} instead."
        )
    text = os.fspath(spec)
    key, _, inline = text.partition(":")
    if key.lower() == "digits" and not inline:
        _no_extra("digits", target=target, data_dir=data_dir)
        return _fixed_task(_load_digits(), task)
    if key.lower() in IDX_SETS:
        name = key.lower()
        _no_extra(name, target=target)
        if inline and data_dir is not None and Path(inline) != Path(data_dir):
            raise ConfigError(
                f"The folder of {name} is given twice, as '{inline}' in the spec and as "
                f"data_dir='{data_dir}'. Give it once."
            )
        url, default = IDX_SETS[name]
        folder = Path(inline or data_dir or default)
        return _fixed_task(load_idx_folder(folder, name=name, download=download, url=url), task)

    path = Path(text).expanduser()
    if path.is_dir():
        _no_extra(path.name, target=target, data_dir=data_dir)
        if not has_idx_files(path):
            raise ConfigError(
                f"The folder '{path}' holds no IDX files (train-images-idx3-ubyte[.gz], "
                f"t10k-images-idx3-ubyte[.gz] and their labels files). Give {ACCEPTED}."
            )
        return _fixed_task(load_idx_folder(path, name=path.name), task)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".npz") and not path.is_file():
        raise ConfigError(f"Could not load {text!r}: file not found: {path}. Check the path.")
    if suffix == ".csv":
        _no_extra(path.name, data_dir=data_dir)
        return _load_csv(path, target=target, task=task)
    if suffix == ".npz":
        _no_extra(path.name, target=target, data_dir=data_dir)
        return _load_npz(path, task=task)
    if path.is_file():
        kind = f"a '{path.suffix}' file" if path.suffix else "a file without extension"
        raise ConfigError(f"Cannot read {text!r}: it is {kind}. Give {ACCEPTED}.")
    looks_like_path = path.suffix or "/" in text or os.sep in text
    missing = f" (file not found: {path})" if looks_like_path else ""
    raise ConfigError(f"Unknown data set {text!r}{missing}. Give {ACCEPTED}.")


def data_location(spec: Any) -> str | None:
    """Where a data spec reads from, independent of the working folder: ``"digits"``, or the spec
    with its path made absolute (``"mnist:/abs/folder"``, ``"/abs/x.csv"``); None for arrays."""
    if not isinstance(spec, (str, os.PathLike)):
        return None
    text = os.fspath(spec)
    key, _, inline = text.partition(":")
    if key.lower() == "digits" and not inline:
        return "digits"
    if key.lower() in IDX_SETS:
        return f"{key.lower()}:{os.path.realpath(Path(inline or IDX_SETS[key.lower()][1]).expanduser())}"
    return os.path.realpath(Path(text).expanduser())


def _no_extra(name: str, **given: Any) -> None:
    for param, value in given.items():
        if value is not None:
            applies = "CSV files" if param == "target" else "'mnist' and 'fashion-mnist'"
            raise ConfigError(
                f"The '{param}' parameter only applies to {applies}. Got {param}={value!r} for "
                f"'{name}' instead; leave it out."
            )


def _fixed_task(ds: Dataset, task: str | None) -> Dataset:
    if task is not None and task != ds.task:
        raise ConfigError(
            f"'{ds.name}' is a {ds.task} data set. Got task={task!r} instead; leave task out."
        )
    return ds


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits  # slow import, only when asked for

    bunch = load_digits()
    X = bunch.images.reshape(-1, 1, 8, 8)  # keep a channel axis, like MNIST
    return Dataset(X, bunch.target.astype(np.int64), "classification", "digits", list(range(10)))


def _load_npz(path: Path, *, task: str | None) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            wanted = {name for pair in NPZ_KEYS for name in pair} | set(NPZ_SPLIT_KEYS)
            arrays = {k: archive[k] for k in archive.files if k in wanted}
            keys = sorted(archive.files)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Could not read '{path}' as a .npz archive ({exc}). Save it with "
            f"np.savez(path, X=X, y=y) (object arrays are not loaded, for safety)."
        ) from None
    for kx, ky in NPZ_KEYS:
        if kx in arrays and ky in arrays:
            return from_arrays(arrays[kx], arrays[ky], task=task, name=path.stem)
    for x in ("x", "X"):  # Keras' layout (mnist.npz): train and test arrays, the test part kept known
        names = [f"{x}_train", "y_train", f"{x}_test", "y_test"]
        if all(k in arrays for k in names):
            x_train, y_train, x_test, y_test = (arrays[k] for k in names)
            if x_train.shape[1:] != x_test.shape[1:]:
                raise ConfigError(f"In '{path}', {x}_train and {x}_test differ in sample shape ({x_train.shape[1:]} "
                                  f"and {x_test.shape[1:]}). Save arrays of one data set.")
            X = np.concatenate([x_train, x_test])
            if X.ndim == 3:  # [n, H, W] images: keep a channel axis, as the IDX loader does
                X = X[:, None]
            return from_arrays(X, np.concatenate([y_train, y_test]), task=task, name=path.stem,
                               test_rows=np.arange(len(x_train), len(X)))
    raise ConfigError(
        f"The file '{path}' must hold arrays named X and y (or x/y, data/target; or x_train, y_train, x_test and "
        f"y_test, as Keras saves them). Got {keys} instead; save it with np.savez(path, X=X, y=y)."
    )


def _load_csv(path: Path, *, target: str | int | None, task: str | None) -> Dataset:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's BOM
            rows = [[c.strip() for c in row] for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"Could not read the CSV file '{path}' ({exc}).") from None
    if len(rows) < 2:
        raise ConfigError(
            f"The CSV file '{path}' needs a header row and at least one data row. Got "
            f"{len(rows)} non-empty row{'s' if len(rows) != 1 else ''} instead."
        )
    header, body = rows[0], rows[1:]
    if all(_is_number(c) for c in header):
        raise ConfigError(
            f"The first row of '{path}' looks like data ({', '.join(header[:4])}, ...), not a "
            f"header. Add a header row naming the columns."
        )
    if len(header) < 2:
        raise ConfigError(
            f"The CSV file '{path}' has a single column ({header[0]!r}); it needs at least one "
            f"feature and a target. Separate the columns with commas."
        )
    if header[0] == "":
        raise ConfigError(
            f"The first column of '{path}' has no name: a saved row index (as pandas' to_csv writes it) would "
            f"be a feature. Drop it (to_csv(index=False)), or name it in the header if it is data."
        )
    seen = {name for name in header if header.count(name) > 1}
    if seen:
        raise ConfigError(f"The header of '{path}' names the column(s) {sorted(seen)} more than once. Give each "
                          f"column its own name.")
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise ConfigError(
                f"Row {i + 2} of '{path}' has {len(row)} cells but the header has "
                f"{len(header)}. Fix that row (quote cells that contain commas)."
            )
    t = _target_index(header, target, path)
    cells = np.array(body, dtype=str)
    y = _parse_target(cells[:, t], header[t], path)
    columns = [j for j in range(len(header)) if j != t]
    X = np.empty((len(body), len(columns)), dtype=np.float64)
    for k, j in enumerate(columns):
        col = np.where(cells[:, j] == "", "nan", cells[:, j])  # empty cell -> NaN, reported later
        try:
            X[:, k] = col.astype(np.float64)
        except ValueError:
            bad = next(i for i, c in enumerate(col) if not _is_number(c))
            raise ConfigError(
                f"The feature column {header[j]!r} of '{path}' is not numeric: row {bad + 2} "
                f"holds {str(col[bad])!r}. Encode it as numbers, drop it, or make it the target "
                f"(--target {header[j]} / target={header[j]!r})."
            ) from None
    with np.errstate(invalid="ignore"):  # NaN compares as not finite below
        bad = ~(np.abs(X) <= np.finfo(np.float32).max)  # missing, infinite, or too large for float32
    bad_cols = np.flatnonzero(bad.any(axis=0))
    if len(bad_cols):  # name the column and the row (from_arrays would only count them)
        k = int(bad_cols[0])
        row = int(np.flatnonzero(bad[:, k])[0])
        raise ConfigError(
            f"The feature column {header[columns[k]]!r} of '{path}' has {int(bad[:, k].sum())} missing, infinite "
            f"or too large (beyond float32) value(s), the first in row {row + 2} ({str(cells[row, columns[k]])!r})"
            + (f"; {len(bad_cols) - 1} other column(s) too" if len(bad_cols) > 1 else "")
            + ". Remove or impute them before loading.")
    return from_arrays(X, y, task=task, name=path.stem)


def _target_index(header: list[str], target: str | int | None, path: Path) -> int:
    if target is None:
        return len(header) - 1
    if isinstance(target, int) and not isinstance(target, bool):
        if -len(header) <= target < len(header):
            return target % len(header)
    elif target in header:
        return header.index(target)
    raise ConfigError(
        f"The 'target' setting (--target) must name a column of '{path}': one of {header}. Got "
        f"{target!r} instead."
    )


def _parse_target(col: np.ndarray, name: str, path: Path) -> np.ndarray:
    empty = int(np.sum(col == ""))
    if empty:
        raise ConfigError(
            f"The target column {name!r} of '{path}' has {empty} empty cell"
            f"{'s' if empty != 1 else ''}. Drop those rows or fill them in."
        )
    for dtype in (np.int64, np.float64):
        try:
            return col.astype(dtype)
        except (ValueError, OverflowError):
            pass
    return col  # strings: class labels


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


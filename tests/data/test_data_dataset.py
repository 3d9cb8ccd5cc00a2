"""Dataset, from_arrays, describe, the digits set, and what the subpackage exports and imports."""

from __future__ import annotations

import doctest
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import shoal.data
from shoal._errors import ConfigError
from shoal.data import Dataset, describe, from_arrays, load_dataset


def test_digits():
    ds = load_dataset("digits")
    assert ds.X.shape == (1797, 1, 8, 8) and ds.X.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.classes == list(range(10))
    assert (ds.input_shape, ds.n_features, ds.n_classes, ds.n_outputs) == ((1, 8, 8), 64, 10, 10)
    assert len(ds) == 1797 and ds.X.max() == 16  # raw pixel values, not rescaled
    assert describe(ds) == "digits: 1797 samples, input (1, 8, 8), 10 classes"


def test_arrays_are_read_only_but_callers_are_not_touched():
    X = np.zeros((4, 2), dtype=np.float32)
    ds = from_arrays(X, [0, 1, 0, 1])
    with pytest.raises(ValueError):
        ds.X[0, 0] = 1
    X[0, 0] = 1  # the caller's own array stays writeable
    with pytest.raises(AttributeError):
        ds.name = "other"


def test_from_arrays_multi_target_regression():
    ds = from_arrays(np.ones((5, 3)), np.ones((5, 2)), name="multi")
    assert ds.task == "regression" and ds.n_outputs == 2 and ds.n_classes == 0
    assert describe(ds) == "multi: 5 samples, input (3,), regression with 2 targets"


def test_from_arrays_keeps_image_shape_and_column_vector_labels():
    ds = from_arrays(np.zeros((4, 1, 5, 5), dtype=np.uint8), np.array([[1], [2], [1], [2]]))
    assert ds.input_shape == (1, 5, 5) and ds.classes == [1, 2] and ds.y.shape == (4,)


def test_from_arrays_errors():
    with pytest.raises(ConfigError, match="same number of rows. Got 3 rows in X and 2 rows"):
        from_arrays(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ConfigError, match="X contains 1 NaN value "):
        from_arrays(np.array([[1.0], [np.nan], [2.0]]), [0, 1, 0])
    with pytest.raises(ConfigError, match="X contains 1 infinite value"):
        from_arrays(np.array([[1.0], [np.inf], [2.0]]), [0, 1, 0])
    with pytest.raises(ConfigError, match="at least 2 classes. Got only the class 'a'"):
        from_arrays(np.zeros((3, 1)), ["a", "a", "a"])
    with pytest.raises(ConfigError, match=r"pass X.reshape\(-1, 1\)"):
        from_arrays(np.zeros(3), [0, 1, 0])
    with pytest.raises(ConfigError, match="X must hold numbers"):
        from_arrays(np.array([["a"], ["b"]]), [0, 1])
    with pytest.raises(ConfigError, match="one-hot"):
        from_arrays(np.zeros((2, 1)), np.eye(2), task="classification")
    with pytest.raises(ConfigError, match="y contains 1 NaN value"):
        from_arrays(np.zeros((2, 1)), [1.0, np.nan])


def test_dataset_checks_class_indices():
    with pytest.raises(ConfigError, match=r"must lie in 0\.\.1"):
        Dataset(np.zeros((3, 1)), np.array([0, 1, 2]), "classification", classes=["a", "b"])
    with pytest.raises(ConfigError, match="use from_arrays"):
        Dataset(np.zeros((2, 1)), np.array(["a", "b"]), "classification")
    with pytest.raises(ConfigError, match="The 'task' parameter must be one of"):
        Dataset(np.zeros((2, 1)), np.array([0, 1]), "clustering")


def test_exports_are_exactly_the_public_names():
    public = {n for n in dir(shoal.data) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(shoal.data, n)).__name__ == "module"}
    assert set(shoal.data.__all__) == public - modules


def test_import_is_light():
    # torch must never load with shoal.data; scikit-learn only once digits or a split are asked for.
    code = (
        "import sys, shoal.data; "
        "assert 'torch' not in sys.modules, 'torch'; assert 'sklearn' not in sys.modules, 'sklearn'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


@pytest.mark.parametrize("module", ["_dataset", "_split", "_prepare", "_loaders"])
def test_docstring_examples(module):
    mod = importlib.import_module(f"shoal.data.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def _env() -> dict[str, str]:
    src = str(Path(shoal.data.__file__).resolve().parents[2])  # .../src
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}

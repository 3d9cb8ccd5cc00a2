"""prepare: train-only scaling, constant features, dtypes and layout."""

from __future__ import annotations

import numpy as np
import pytest

from shoal._errors import ConfigError
from shoal.data import Split, from_arrays, kfold_splits, load_dataset, prepare, train_val_split


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_standard_scaling_uses_train_rows_only(digits):
    split = train_val_split(digits, val_fraction=0.3, test_fraction=0.2, seed=0)
    p = prepare(digits, split)
    X = digits.X.astype(np.float64)
    # Images are scaled per channel (digits has one), over every training pixel.
    train_mean = X[split.train].mean()
    np.testing.assert_allclose(p.mean.ravel(), [train_mean], rtol=1e-6, atol=1e-6)
    assert p.mean.shape == (1, 1, 1)
    assert not np.allclose(p.mean, X.mean(), atol=1e-4)  # not the all-rows mean
    # Pixels blank in every training image are set to exactly 0; the rest are (x - mean) / std.
    constant = X[split.train].min(axis=0) == X[split.train].max(axis=0)
    assert constant.any() and np.all(p.X_train[:, constant] == 0)
    expected = (X[split.train] - p.mean) / p.std
    np.testing.assert_allclose(p.X_train[:, ~constant], expected[:, ~constant], rtol=1e-5, atol=1e-5)
    # Validation rows use the train statistics, so they are not exactly centred.
    np.testing.assert_allclose(p.X_val[:, ~constant], ((X[split.val] - p.mean) / p.std)[:, ~constant],
                               rtol=1e-5, atol=1e-5)
    assert abs(p.X_val.mean()) > 1e-4


def test_constant_features_do_not_give_nan():
    X = np.random.default_rng(0).normal(size=(60, 4))
    X[:, 2] = 3.0  # a constant column
    ds = from_arrays(X, np.arange(60) % 3)
    p = prepare(ds, train_val_split(ds))
    assert p.std[2] == 1
    for a in (p.X_train, p.X_val):
        assert np.isfinite(a).all()
        assert np.all(a[:, 2] == 0)


def test_rare_pixels_do_not_blow_up():
    # A border pixel lit in one training image: per-pixel statistics would scale it to ~sqrt(n).
    X = np.zeros((200, 1, 4, 4), dtype=np.float32)
    X[:, 0, 1:3, 1:3] = np.random.default_rng(0).uniform(0, 255, size=(200, 2, 2))
    X[::50, 0, 0, 0] = 255.0
    ds = from_arrays(X, np.arange(200) % 2)
    p = prepare(ds, train_val_split(ds, seed=1))
    assert np.abs(p.X_val).max() < 10 and np.abs(p.X_train).max() < 10


def test_dtypes_shapes_and_layout(digits):
    split = train_val_split(digits, test_fraction=0.1)
    p = prepare(digits, split)
    for a in (p.X_train, p.X_val, p.X_test):
        assert a.dtype == np.float32 and a.flags.c_contiguous and a.shape[1:] == (1, 8, 8)
    for a in (p.y_train, p.y_val, p.y_test):
        assert a.dtype == np.int64 and a.flags.c_contiguous
    np.testing.assert_array_equal(p.y_val, digits.y[split.val])
    assert (p.input_shape, p.n_outputs, p.task) == ((1, 8, 8), 10, "classification")
    assert p.y_mean is None and p.y_std is None
    assert p.mean.shape == (1, 1, 1) and p.mean.dtype == np.float32
    no_test = prepare(digits, train_val_split(digits))
    assert no_test.X_test is None and no_test.y_test is None


def test_minmax_and_none(digits):
    split = train_val_split(digits)
    mm = prepare(digits, split, scale="minmax")
    assert mm.X_train.min() == 0 and mm.X_train.max() == 1
    assert np.isfinite(mm.X_val).all()
    raw = prepare(digits, split, scale="none")
    np.testing.assert_array_equal(raw.X_train, digits.X[split.train])


def test_regression_targets_standardized_on_train():
    rng = np.random.default_rng(0)
    ds = from_arrays(rng.normal(size=(200, 3)), rng.normal(5, 3, size=(200, 2)))
    split = train_val_split(ds, val_fraction=0.25)
    p = prepare(ds, split)
    np.testing.assert_allclose(p.y_mean, ds.y[split.train].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(p.y_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(p.y_val * p.y_std + p.y_mean, ds.y[split.val], rtol=1e-5, atol=1e-5)
    assert p.y_train.dtype == np.float32 and p.n_outputs == 2


def test_works_with_kfold(digits):
    fold = kfold_splits(digits, k=3)[1]
    p = prepare(digits, fold)
    assert len(p.X_train) + len(p.X_val) == len(digits)


def test_errors(digits):
    with pytest.raises(ConfigError, match=r"The 'scale' parameter must be one of .* Got 'zscore'"):
        prepare(digits, train_val_split(digits), scale="zscore")
    with pytest.raises(ConfigError, match="refers to row 5000, but 'digits' has 1797 rows"):
        prepare(digits, Split(np.array([0, 5000]), np.array([1])))

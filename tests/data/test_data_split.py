"""train_val_split and kfold_splits: stratification, seeds, the fixed test part, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from shoal._errors import ConfigError
from shoal.data import Split, from_arrays, kfold_splits, load_dataset, train_val_split


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def unbalanced():
    # 3 classes of 200, 70 and 30 rows, shuffled.
    rng = np.random.default_rng(1)
    y = rng.permutation(np.repeat(["a", "b", "c"], [200, 70, 30]))
    return from_arrays(rng.normal(size=(300, 4)), y, name="unbalanced")


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(2)
    return from_arrays(rng.normal(size=(103, 3)), rng.normal(size=103), name="reg")


def _assert_partition(split, n):
    parts = [split.train, split.val] + ([] if split.test is None else [split.test])
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)  # sorted, no duplicates
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


@pytest.mark.parametrize("test_fraction", [0.0, 0.15])
def test_stratified_proportions(unbalanced, test_fraction):
    s = train_val_split(unbalanced, val_fraction=0.2, test_fraction=test_fraction, seed=3)
    _assert_partition(s, len(unbalanced))
    total = np.bincount(unbalanced.y)
    for part in [s.train, s.val] + ([s.test] if test_fraction else []):
        expected = total * len(part) / len(unbalanced)
        got = np.bincount(unbalanced.y[part], minlength=3)
        assert np.all(np.abs(got - expected) <= 1), (got, expected)


def test_sizes(digits):
    s = train_val_split(digits, val_fraction=0.25, test_fraction=0.1)
    assert (len(s.val), len(s.test)) == (round(0.25 * 1797), round(0.1 * 1797))
    assert s.fold is None


def test_seeded_reproducible(digits):
    a, b = train_val_split(digits, seed=7), train_val_split(digits, seed=7)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    c = train_val_split(digits, seed=8)
    assert not np.array_equal(a.val, c.val)


def test_test_part_does_not_depend_on_val_fraction(digits):
    a = train_val_split(digits, val_fraction=0.1, test_fraction=0.2, seed=5)
    b = train_val_split(digits, val_fraction=0.3, test_fraction=0.2, seed=5)
    np.testing.assert_array_equal(a.test, b.test)
    folds = kfold_splits(digits, k=3, test_fraction=0.2, seed=5)
    np.testing.assert_array_equal(folds[0].test, a.test)  # the same held-out rows as well


def test_regression_split_not_stratified(regression):
    s = train_val_split(regression, val_fraction=0.3, test_fraction=0.2)
    _assert_partition(s, 103)
    assert (len(s.val), len(s.test)) == (31, 21)


@pytest.mark.parametrize("k", [2, 5])
def test_kfold_partitions_the_non_test_rows(unbalanced, k):
    folds = kfold_splits(unbalanced, k=k, test_fraction=0.2, seed=1)
    assert [f.fold for f in folds] == list(range(k))
    test = folds[0].test
    rest = np.setdiff1d(np.arange(len(unbalanced)), test)
    vals = np.concatenate([f.val for f in folds])
    np.testing.assert_array_equal(np.sort(vals), rest)  # each non-test row validates exactly once
    for f in folds:
        np.testing.assert_array_equal(f.test, test)
        _assert_partition(f, len(unbalanced))
        counts = np.bincount(unbalanced.y[f.val], minlength=3)
        expected = np.bincount(unbalanced.y[rest]) / k
        assert np.all(np.abs(counts - expected) <= 1)


def test_kfold_regression_and_no_test(regression):
    folds = kfold_splits(regression, k=4, seed=0)
    assert all(f.test is None for f in folds)
    assert sorted(len(f.val) for f in folds) == [25, 26, 26, 26]
    again = kfold_splits(regression, k=4, seed=0)
    assert all(np.array_equal(f.val, g.val) for f, g in zip(folds, again))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 0.0}, r"The 'val_fraction' parameter must be a float in the range \(0,"),
        ({"val_fraction": 1.5}, r"'val_fraction' .* Got 1.5 instead"),
        ({"val_fraction": True}, r"'val_fraction' .* Got True instead"),
        ({"test_fraction": -0.1}, r"The 'test_fraction' parameter must be a float in the range"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"must sum to less than 1.*0.5 \+ 0.5 = 1"),
        ({"seed": -1}, r"The 'seed' parameter must be an int"),
        ({"val_fraction": 0.0001}, r"leaves 0 of 1797 rows for validation"),
    ],
)
def test_split_errors(digits, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        train_val_split(digits, **kwargs)


def test_stratification_impossible_suggests_the_fix():
    ds = from_arrays(np.zeros((20, 1)), [0] * 19 + [1])
    with pytest.raises(ConfigError, match="Could not stratify the validation part.*stratify=False"):
        train_val_split(ds)
    s = train_val_split(ds, stratify=False)
    _assert_partition(s, 20)
    # the user's own labels, a few of them, and what to do from the command line
    many = from_arrays(np.zeros((60, 1)), ["a"] * 40 + [f"rare{i}" for i in range(20)])
    with pytest.raises(ConfigError, match=r"20 class\(es\) have a single row \('rare0', 'rare1', 'rare10', "
                                          r"'rare11', 'rare12' and 15 more\).*Drop or merge those rows"):
        train_val_split(many)


def test_kfold_errors(unbalanced, regression):
    with pytest.raises(ConfigError, match=r"The 'k' parameter must be an int >= 2. Got 1"):
        kfold_splits(unbalanced, k=1)
    with pytest.raises(ConfigError, match=r"at most the smallest class count.*class 'c' has only "
                       r"30 rows.*Got k=31 instead; use --folds 30 or fewer"):
        kfold_splits(unbalanced, k=31)
    assert len(kfold_splits(unbalanced, k=31, stratify=False)) == 31
    with pytest.raises(ConfigError, match=r"at most the number of rows to cross-validate \(103\)"):
        kfold_splits(regression, k=104)
    with pytest.raises(ConfigError, match=r"'test_fraction' .* Got 1 instead"):
        kfold_splits(regression, test_fraction=1)


def test_split_validates_hand_made_parts():
    s = Split(np.array([3, 1]), np.array([0]), np.array([], dtype=np.int64))
    assert s.train.tolist() == [1, 3]
    with pytest.raises(ConfigError, match="shares rows"):
        Split(np.array([0, 1]), np.array([1, 2]))
    with pytest.raises(ConfigError, match="'val' part of a Split is empty"):
        Split(np.array([0, 1]), np.array([], dtype=np.int64))

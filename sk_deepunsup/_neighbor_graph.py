"""The k-nearest-neighbour graph that NeighborEmbedding trains on (scikit-learn / pynndescent, numpy).

The neighbours come from scikit-learn's exact search, or from pynndescent's
approximate one on large data; the graph is UMAP's fuzzy graph, optionally
pruned of edges whose two ends share few neighbours; :func:`fit_ab` gives
the UMAP kernel's constants for a ``min_dist``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.neighbors import NearestNeighbors

from ._nn import distributed

__all__ = [
    "NNDESCENT_THRESHOLD",
    "distinct_rows",
    "fit_ab",
    "fuzzy_neighbor_graph",
    "kneighbors_by_index",
    "nearest_neighbors",
    "prune_shared_neighbors",
]

#: Above this many samples, ``neighbors_algorithm="auto"`` uses pynndescent
#: (when installed) instead of scikit-learn's exact search. Measured on
#: Fashion-MNIST (784 features, 15 neighbours, 1 thread, CPU seconds): exact
#: 1.2 s at 5 000 rows and 18 s at 20 000 (it grows as n^2); pynndescent 0.3 s
#: and 1.5 s with a 0.998 recall, but its first call in a process compiles
#: for about 45 s. Exact search is cheaper up to about 30 000 rows.
NNDESCENT_THRESHOLD = 30_000
#: Neighbour entries (rows x candidates) one query of :func:`kneighbors_by_index` holds.
NEIGHBOR_BLOCK = 1 << 22


def nearest_neighbors(X, n_neighbors, metric="euclidean", algorithm="auto", random_state=None):
    """Indices and distances of each row's ``n_neighbors`` nearest other rows.

    ``algorithm``: ``"exact"`` (scikit-learn's ``NearestNeighbors``),
    ``"nndescent"`` (pynndescent's approximate search) or ``"auto"``
    (nndescent above :data:`NNDESCENT_THRESHOLD` samples when pynndescent is
    installed, else exact).
    """
    n = X.shape[0]
    if algorithm == "auto":
        algorithm = "exact"
        if n > NNDESCENT_THRESHOLD:
            try:
                import pynndescent  # noqa: F401

                algorithm = "nndescent"
            except ImportError:
                pass
    if algorithm == "nndescent":
        try:
            import pynndescent  # noqa: F401
        except ImportError:
            raise ImportError(
                "neighbors_algorithm='nndescent' needs pynndescent: "
                "pip install 'sk-deepunsup[nndescent]' (or pip install pynndescent), "
                "or use neighbors_algorithm='exact'."
            ) from None
        if distributed.is_active():  # one approximate index, on rank 0, sent to every rank
            return distributed.on_main(
                lambda: _nndescent(X, n_neighbors, metric, random_state)
            )
        return _nndescent(X, n_neighbors, metric, random_state)
    return _exact(X, n_neighbors, metric)


def _nndescent(X, n_neighbors, metric, random_state):
    """pynndescent's approximate neighbours (self excluded, ties by index)."""
    from pynndescent import NNDescent

    n = X.shape[0]
    seed = None if random_state is None else int(random_state)
    index = NNDescent(X, n_neighbors=n_neighbors + 1, metric=metric, random_state=seed)
    idx, dist = index.neighbor_graph
    del index  # its search trees: hundreds of MB on a million rows
    release_free_memory()
    # Drop each row's own entry (usually the first column).
    own = idx == np.arange(n)[:, None]
    keep = ~own
    keep[own.sum(axis=1) == 0, -1] = False
    idx = idx[keep].reshape(n, n_neighbors)
    dist = dist[keep].reshape(n, n_neighbors).astype(np.float64)
    order = np.lexsort((idx, dist))  # ties by index, as the exact search
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``).

    Large searches free hundreds of MB in pieces the allocator keeps; without
    this the process stays at its peak through the training that follows.
    Nothing happens on other C libraries.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _exact(X, n_neighbors, metric):
    """Exact neighbours (self excluded, ties by index); each rank its share under torchrun."""
    n = X.shape[0]
    search = NearestNeighbors(n_neighbors=n_neighbors, metric=metric).fit(X)
    if not distributed.is_active() or n < distributed.world_size():
        dist, idx = kneighbors_by_index(search, X, n_neighbors, exclude_self=True)
        return idx, dist
    # data-parallel: each rank searches the neighbours of its own rows among all
    # rows, and the rows' lists are gathered once (the same lists as one search)
    lo, hi = distributed.share(n)
    dist, idx = kneighbors_by_index(search, X[lo:hi], n_neighbors, exclude_self=True, offset=lo)
    dist = distributed.all_gather_rows(torch.from_numpy(dist)).numpy()
    idx = distributed.all_gather_rows(torch.from_numpy(idx.astype(np.int64))).numpy()
    return idx.astype(np.intp, copy=False), dist


def kneighbors_by_index(search, X, n_neighbors, *, exclude_self=False, offset=0):
    """Distances and indices of each row's nearest fitted samples, ties broken by index.

    ``search`` is a fitted ``NearestNeighbors``. Among equal distances the
    lower index comes first and is the one kept at the ``n_neighbors``-th
    place, so the result does not depend on the search's thread count,
    chunking or tree. ``exclude_self``: ``X`` is the fitted data's rows from
    ``offset`` on, and row ``i`` of ``X`` is not a neighbour of itself
    (fitted sample ``offset + i``; its duplicates are).
    """
    n_fit = search.n_samples_fit_
    out_dist = np.empty((X.shape[0], n_neighbors))
    out_idx = np.empty((X.shape[0], n_neighbors), dtype=np.intp)
    rows = np.arange(X.shape[0])
    # one candidate beyond the last kept shows whether a tie crosses the cut
    wanted = min(n_neighbors + 1 + int(exclude_self), n_fit)
    while rows.size:
        unsure = []
        step = max(1, NEIGHBOR_BLOCK // wanted)  # ties widen the search: memory stays bounded
        for start in range(0, rows.size, step):
            block = rows[start : start + step]
            unsure.append(_sorted_block(search, X, block, wanted, n_neighbors,
                                        offset if exclude_self else None, out_dist, out_idx))
        rows = np.concatenate(unsure)
        wanted = min(2 * wanted, n_fit)
    return out_dist, out_idx


def _sorted_block(search, X, rows, wanted, n_neighbors, self_offset, out_dist, out_idx):
    """Store the rows whose ``n_neighbors``-th place is sure among ``wanted``; return the others.

    ``self_offset``: None, or row ``i`` of ``X`` is fitted sample ``self_offset + i``
    and is not its own neighbour.
    """
    n_fit = search.n_samples_fit_
    dist, idx = search.kneighbors(X[rows], n_neighbors=wanted)
    if self_offset is not None:
        own = idx == (rows + self_offset)[:, None]
        dist = np.where(own, np.inf, dist)
        idx = np.where(own, n_fit, idx)
    order = np.lexsort((idx, dist))
    dist = np.take_along_axis(dist, order, 1)
    idx = np.take_along_axis(idx, order, 1)
    last = np.max(np.where(idx == n_fit, -np.inf, dist), axis=1)
    # a row whose kept distance equals the farthest candidate may have more
    # points at that distance than were returned: it is asked again, wider
    unsure = (dist[:, n_neighbors - 1] >= last) & (wanted < n_fit)
    done = ~unsure
    out_dist[rows[done]] = dist[done, :n_neighbors]
    out_idx[rows[done]] = idx[done, :n_neighbors]
    return rows[unsure]


def distinct_rows(X):
    """The first of each group of identical rows of a dense array, or None if all differ.

    Returns ``(first, inverse)``: ``X[first]`` are the distinct rows in order
    of first appearance and ``X[first][inverse]`` is X. A network maps
    identical rows to one place, so a neighbour graph needs each of them
    once: kept apart, a row repeated more than ``n_neighbors`` times fills
    its neighbourhood with copies at distance 0 and its group becomes an
    island of the graph (tables of scores 1-10 where a third of the rows
    repeat others).
    """
    X = np.ascontiguousarray(X)
    if X.ndim != 2 or X.shape[0] < 2:
        return None
    # (-0.0 and 0.0 are the same value but not the same bytes)
    keys = (X + 0.0).view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) == X.shape[0]:
        return None
    order = np.argsort(first, kind="stable")  # first appearance order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()]


def fuzzy_neighbor_graph(idx, dist, n_iter=64):
    """UMAP's fuzzy simplicial set of a kNN graph, as a symmetric sparse matrix.

    Each row's edges get weights ``exp(-(d - rho) / sigma)``, where ``rho`` is
    the distance to its nearest (distinct) neighbour and ``sigma`` is chosen by
    bisection so that the weights sum to ``log2(k)``; the directed weights
    ``A`` are then symmetrised by the fuzzy union ``A + A.T - A * A.T``.
    """
    n, k = idx.shape
    positive = np.where(dist > 0, dist, np.inf)
    rho = np.min(positive, axis=1)
    rho[~np.isfinite(rho)] = 0.0
    excess = np.maximum(dist - rho[:, None], 0.0)
    target = np.log2(k)
    lo = np.zeros(n)
    hi = np.full(n, np.inf)
    sigma = np.ones(n)
    for _ in range(n_iter):
        total = np.exp(-excess / sigma[:, None]).sum(axis=1)
        too_big = total > target
        hi = np.where(too_big, sigma, hi)
        lo = np.where(too_big, lo, sigma)
        sigma = np.where(np.isfinite(hi), (lo + hi) / 2.0, sigma * 2.0)
    # A floor keeps rows of (near-)duplicates from getting zero-width kernels.
    mean_dist = dist.mean()
    sigma = np.maximum(sigma, 1e-3 * (mean_dist if mean_dist > 0 else 1.0))
    weights = np.exp(-excess / sigma[:, None])
    A = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(n), k), idx.ravel())), shape=(n, n))
    W = A + A.T - A.multiply(A.T)
    W = W.tocoo()
    keep = (W.data > 1e-3) & (W.row != W.col)
    return sp.coo_matrix((W.data[keep], (W.row[keep], W.col[keep])), shape=(n, n))


def prune_shared_neighbors(graph, idx, threshold):
    """Drop the edges of ``graph`` whose ends share few nearest neighbours.

    The similarity of an edge ``(i, j)`` is the Jaccard index of the two
    points' neighbourhoods (each point with its ``k`` neighbours of ``idx``):
    ``|N(i) & N(j)| / |N(i) | N(j)|``, as in shared-nearest-neighbour
    clustering (PhenoGraph). Edges inside a dense group share most of their
    neighbours; edges that bridge two groups share few, and those below
    ``threshold`` are removed (the kept edges keep their fuzzy weights). A
    point never loses all its edges: its strongest edge is always kept.
    """
    if threshold <= 0:
        return graph
    n, k = idx.shape
    hood = np.concatenate([np.arange(n)[:, None], idx], axis=1)
    members = sp.coo_matrix(
        (np.ones(hood.size), (np.repeat(np.arange(n), k + 1), hood.ravel())), shape=(n, n)
    ).tocsr()
    members.data[:] = 1.0  # a duplicate neighbour counts once
    row, col = graph.row, graph.col
    shared = np.asarray(members[row].multiply(members[col]).sum(axis=1)).ravel()
    size = np.asarray(members.sum(axis=1)).ravel()
    jaccard = shared / (size[row] + size[col] - shared)
    keep = jaccard >= threshold
    # each row's strongest edge survives, so no point is left without neighbours
    order = np.lexsort((-graph.data, row))
    first = order[np.r_[True, row[order][1:] != row[order][:-1]]]
    keep[first] = True
    # keep the graph symmetric: an edge stays when either direction is kept
    kept = sp.coo_matrix((keep.astype(np.float64), (row, col)), shape=graph.shape).tocsr()
    kept = kept.maximum(kept.T).tocoo()
    weights = sp.csr_matrix(graph)
    data = np.asarray(weights[kept.row, kept.col]).ravel()
    on = kept.data > 0
    return sp.coo_matrix((data[on], (kept.row[on], kept.col[on])), shape=graph.shape)


def fit_ab(min_dist, spread=1.0):
    """``a, b`` such that ``1 / (1 + a d^(2b))`` follows UMAP's ``min_dist`` curve.

    The target is 1 below ``min_dist`` and ``exp(-(d - min_dist) / spread)``
    beyond it, fitted by least squares on ``[0, 3 * spread]``.
    """
    from scipy.optimize import curve_fit

    d = np.linspace(0, 3 * spread, 300)
    target = np.where(d < min_dist, 1.0, np.exp(-(d - min_dist) / spread))

    def curve(x, a, b):
        return 1.0 / (1.0 + a * x ** (2 * b))

    (a, b), _ = curve_fit(curve, d, target, p0=(1.5, 0.9), maxfev=5000)
    return float(a), float(b)

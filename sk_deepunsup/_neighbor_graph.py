"""The k-nearest-neighbour graph that NeighborEmbedding trains on (scikit-learn, faiss, pynndescent).

The neighbours come from scikit-learn's exact search, or from faiss' or
pynndescent's approximate one on large data; the graph is UMAP's fuzzy graph, optionally
pruned of edges whose two ends share few neighbours; :func:`fit_ab` gives
the UMAP kernel's constants for a ``min_dist``.
"""

from __future__ import annotations

import importlib

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
    "resolve_algorithm",
]

#: Above this many samples, ``neighbors_algorithm="auto"`` uses pynndescent
#: (when installed) instead of scikit-learn's exact search. Measured on
#: Fashion-MNIST (784 features, 15 neighbours, 1 thread, CPU seconds): exact
#: 1.2 s at 5 000 rows and 18 s at 20 000 (it grows as n^2); pynndescent 0.3 s
#: and 1.5 s with a 0.998 recall, but its first call in a process compiles
#: for about 45 s. Exact search is cheaper up to about 30 000 rows.
NNDESCENT_THRESHOLD = 30_000
#: faiss' inverted lists (``neighbors_algorithm="faiss"``): this many times the
#: square root of the samples, each centre trained on at most
#: ``FAISS_TRAIN_PER_LIST`` rows, ``FAISS_NPROBE`` lists searched a query.
FAISS_LISTS_PER_ROOT = 1.0
FAISS_TRAIN_PER_LIST = 64
FAISS_NPROBE = 32
#: The package each approximate search imports, and the wheel that installs it.
_APPROXIMATE_PACKAGES = {"faiss": ("faiss", "faiss-cpu"), "nndescent": ("pynndescent", "pynndescent")}
#: Neighbour entries (rows x candidates) one query of :func:`kneighbors_by_index` holds.
NEIGHBOR_BLOCK = 1 << 22


def nearest_neighbors(X, n_neighbors, metric="euclidean", algorithm="auto", random_state=None):
    """Indices and distances of each row's ``n_neighbors`` nearest other rows.

    ``algorithm``: ``"exact"`` (scikit-learn's ``NearestNeighbors``),
    ``"nndescent"`` (pynndescent's approximate search), ``"faiss"`` (faiss'
    inverted-file search, euclidean only) or ``"auto"`` (see
    :func:`resolve_algorithm`).
    """
    algorithm = resolve_algorithm(X.shape[0], metric, algorithm)
    if algorithm == "exact":
        return _exact(X, n_neighbors, metric)
    package, wheel = _APPROXIMATE_PACKAGES[algorithm]
    try:
        importlib.import_module(package)
    except ImportError:
        raise ImportError(
            f"neighbors_algorithm={algorithm!r} needs {package}: "
            f"pip install 'sk-deepunsup[{algorithm}]' (or pip install {wheel}), "
            "or use neighbors_algorithm='exact'."
        ) from None
    if algorithm == "faiss":
        if metric != "euclidean":
            raise ValueError(
                f"neighbors_algorithm='faiss' supports metric='euclidean' only, got {metric!r}."
            )
        search = lambda: _faiss(X, n_neighbors, random_state)  # noqa: E731
    else:
        search = lambda: _nndescent(X, n_neighbors, metric, random_state)  # noqa: E731
    # one approximate index, built on rank 0 and sent to every rank under torchrun
    return distributed.on_main(search)


def resolve_algorithm(n_samples, metric="euclidean", algorithm="auto"):
    """The search ``algorithm="auto"`` means for ``n_samples`` rows: ``"exact"`` up to
    :data:`NNDESCENT_THRESHOLD` samples; above, ``"faiss"`` for the euclidean metric
    when faiss is installed, else ``"nndescent"`` when pynndescent is, else ``"exact"``.

    faiss is preferred: on 200 000 and 1 000 000 rows of 50 standardised
    features (10 blobs) it found 0.97 and 0.85 of the true 15 neighbours against
    pynndescent's 0.69 and 0.48, on Fashion-MNIST's 70 000 rows (PCA to 50)
    0.9999 against 0.995, and it does not import numba (about 0.23 GB); but it
    takes longer on large data (266 s against 31 s at a million rows).
    Nothing is imported here beyond the check that a package is installed.
    """
    if algorithm != "auto":
        return algorithm
    if n_samples <= NNDESCENT_THRESHOLD:
        return "exact"
    from importlib.util import find_spec

    if metric == "euclidean" and find_spec("faiss") is not None:
        return "faiss"
    if find_spec("pynndescent") is not None:
        return "nndescent"
    return "exact"


def _nndescent(X, n_neighbors, metric, random_state):
    """pynndescent's approximate neighbours (self excluded, ties by index; int32, float32)."""
    from pynndescent import NNDescent

    seed = None if random_state is None else int(random_state)
    index = NNDescent(X, n_neighbors=n_neighbors + 1, metric=metric, random_state=seed)
    idx, dist = index.neighbor_graph
    del index  # its search trees: hundreds of MB on a million rows
    release_free_memory()
    return _without_self(idx, dist, n_neighbors)


def _without_self(idx, dist, n_neighbors):
    """Each row's ``n_neighbors`` first entries besides itself, ties by index.

    ``idx``/``dist``: ``n_neighbors + 1`` candidates a row, self usually among them.
    """
    n = idx.shape[0]
    own = idx == np.arange(n)[:, None]
    keep = ~own
    keep[own.sum(axis=1) == 0, -1] = False
    idx = idx[keep].reshape(n, n_neighbors)
    dist = dist[keep].reshape(n, n_neighbors)
    order = np.lexsort((idx, dist))  # ties by index, as the exact search
    return np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)


def _faiss(X, n_neighbors, random_state):
    """faiss' inverted-file search (IVF-Flat, euclidean): self excluded, ties by index.

    ``FAISS_LISTS_PER_ROOT * sqrt(n)`` lists, their centres trained by
    k-means on at most ``FAISS_TRAIN_PER_LIST`` rows a list (seeded by
    ``random_state``), ``FAISS_NPROBE`` lists searched a query. The
    queries run in blocks, so besides the index (a float32 copy of X) only
    the int32/float32 results are held. Each query's result depends on
    the index only, not on the thread count.
    """
    import faiss

    n, d = X.shape
    X = np.ascontiguousarray(X, dtype=np.float32)
    want = min(n_neighbors + 1, n)
    nlist = int(min(max(1, round(FAISS_LISTS_PER_ROOT * np.sqrt(n))), max(1, n // 39)))
    seed = 0 if random_state is None else int(random_state) % (2**31)
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
    index.cp.seed = seed
    index.cp.max_points_per_centroid = FAISS_TRAIN_PER_LIST
    index.nprobe = min(FAISS_NPROBE, nlist)
    train = X
    if n > FAISS_TRAIN_PER_LIST * nlist:  # our own sample, so the seed decides it
        rows = np.sort(np.random.RandomState(seed).choice(n, FAISS_TRAIN_PER_LIST * nlist,
                                                          replace=False))
        train = X[rows]
    index.train(train)
    del train
    index.add(X)
    idx = np.empty((n, want), dtype=np.int32)
    dist = np.empty((n, want), dtype=np.float32)
    step = max(1, NEIGHBOR_BLOCK // want)
    for lo in range(0, n, step):
        d2, found = index.search(X[lo : lo + step], want)
        idx[lo : lo + step] = found
        dist[lo : lo + step] = np.sqrt(np.maximum(d2, 0))
    del index, quantizer
    release_free_memory()
    # a row with fewer than ``want`` candidates in its lists gets -1s: pushed to the end
    missing = idx < 0
    if missing.any():
        idx[missing] = n
        dist[missing] = np.inf
    idx, dist = _without_self(idx, dist, n_neighbors)
    return idx, dist


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


#: Rows of the kNN lists one step of :func:`fuzzy_neighbor_graph` works on.
GRAPH_BLOCK = 1 << 13


def _all_hashes_differ(X, block=GRAPH_BLOCK):
    """Whether every row of X has its own hash of its bytes: then no two rows are identical.

    Exact integer arithmetic on each row's words, in blocks of rows, so identical
    rows always hash alike and no full copy of X is made; only when two hashes
    meet does :func:`distinct_rows` compare the rows themselves.
    """
    words = X.shape[1] * X.dtype.itemsize // 4
    if X.dtype.itemsize % 4 or words == 0:
        return False
    weights = np.random.RandomState(0).randint(1, 2**62, size=words, dtype=np.int64)
    weights = weights.astype(np.uint64) | np.uint64(1)
    hashes = np.empty(X.shape[0], np.uint64)
    for start in range(0, X.shape[0], block):
        rows = X[start:start + block] + X.dtype.type(0)  # -0.0 and 0.0 hash alike
        codes = rows.view(np.uint32).reshape(len(rows), words).astype(np.uint64)
        hashes[start:start + block] = (codes * weights).sum(axis=1)
    return np.unique(hashes).size == X.shape[0]


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
    if X.ndim != 2 or X.shape[0] < 2 or _all_hashes_differ(X):
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
    ``A`` are then symmetrised by the fuzzy union ``A + A.T - A * A.T``
    (repeated neighbours of a row add up). Edges of weight at most ``1e-3``
    and self-loops are dropped.

    Returns a COO matrix in row-major order (columns sorted within a row) with
    int32 ends and float32 weights. The work runs in blocks of
    :data:`GRAPH_BLOCK` rows: besides the result, it holds the directed
    weights and their transpose (float32 and int32: about 16 bytes a kNN
    entry), never an ``n x k`` float64 array.
    """
    n, k = idx.shape
    if n >= 2**31:
        raise ValueError(f"the neighbour graph supports up to 2**31 - 1 rows, got {n}")
    idx = np.asarray(idx)
    if idx.dtype != np.int32:
        idx = idx.astype(np.int32)
    dist = np.asarray(dist)
    mean_dist = float(dist.mean(dtype=np.float64)) if dist.size else 0.0
    floor = 1e-3 * (mean_dist if mean_dist > 0 else 1.0)
    weights = np.empty((n, k), dtype=np.float32)
    for lo in range(0, n, GRAPH_BLOCK):
        rows = slice(lo, lo + GRAPH_BLOCK)
        weights[rows] = _fuzzy_weights(dist[rows].astype(np.float64), k, n_iter, floor)
    # A (directed) as CSR over idx, and its transpose by a counting sort (scipy's tocsc)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64 if n * k >= 2**31 else np.int32)
    A = sp.csr_matrix((weights.ravel(), idx.ravel(), indptr), shape=(n, n), copy=False)
    T = A.tocsc()  # T.indptr/indices/data: the rows of A.T
    del A
    rows_out, cols_out, data_out = [], [], []
    for lo in range(0, n, GRAPH_BLOCK):
        hi = min(n, lo + GRAPH_BLOCK)
        r, c, w = _union_block(idx, weights, T, lo, hi, n)
        rows_out.append(r)
        cols_out.append(c)
        data_out.append(w)
    del T, weights
    row = _concatenate(rows_out, np.int32)
    col = _concatenate(cols_out, np.int32)
    data = _concatenate(data_out, np.float32)
    return sp.coo_matrix((data, (row, col)), shape=(n, n), copy=False)


def _concatenate(pieces, dtype):
    """One array of ``pieces`` (emptied as it goes, so they are not held twice)."""
    out = np.empty(sum(len(p) for p in pieces), dtype=dtype)
    at = 0
    while pieces:
        p = pieces.pop(0)
        out[at : at + len(p)] = p
        at += len(p)
    return out


def _fuzzy_weights(dist, k, n_iter, floor):
    """One block's directed fuzzy weights (float64 rows of distances)."""
    n = dist.shape[0]
    positive = np.where(dist > 0, dist, np.inf)
    rho = np.min(positive, axis=1) if k else np.zeros(n)
    del positive
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
    sigma = np.maximum(sigma, floor)
    return np.exp(-excess / sigma[:, None])


def _union_block(idx, weights, T, lo, hi, n):
    """Rows ``lo:hi`` of ``A + A.T - A * A.T`` (weights > 1e-3, no self-loops), row-major."""
    k = idx.shape[1]
    # entries of A: (row, idx) with a; entries of A.T: (row, T.indices) with b
    t0, t1 = int(T.indptr[lo]), int(T.indptr[hi])
    a_rows = np.repeat(np.arange(lo, hi, dtype=np.int64), k)
    t_rows = np.repeat(np.arange(lo, hi, dtype=np.int64), np.diff(T.indptr[lo : hi + 1]))
    keys = np.concatenate([a_rows * n + idx[lo:hi].ravel(), t_rows * n + T.indices[t0:t1]])
    del a_rows, t_rows
    m = (hi - lo) * k
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    a = np.zeros(len(keys))
    b = np.zeros(len(keys))
    from_a = order < m
    a[from_a] = weights[lo:hi].ravel()[order[from_a]]
    b[~from_a] = T.data[t0:t1][order[~from_a] - m]
    del order, from_a
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, int)
    keys = keys[starts]
    if len(starts):
        a = np.add.reduceat(a, starts)  # a row's repeated neighbour adds up (as scipy does)
        b = np.add.reduceat(b, starts)
    else:
        a, b = a[:0], b[:0]
    w = a + b - a * b
    row, col = np.divmod(keys, n)
    keep = (w > 1e-3) & (row != col)
    return row[keep].astype(np.int32), col[keep].astype(np.int32), w[keep].astype(np.float32)


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

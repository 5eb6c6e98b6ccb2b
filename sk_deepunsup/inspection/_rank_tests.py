"""One-vs-rest Mann-Whitney tests of every feature for every group, on dense or sparse data.

Each feature is ranked once over all samples (ties share their mean rank); a
group's rank sum then gives its U statistic for every feature at once. For a
sparse matrix the zeros of a column form one tie group, so only the stored
values are sorted and nothing is densified.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr


def _tie_ranks(values, segment):
    """Mean ranks (1-based) of ``values`` within each ``segment``, and each tie group's size.

    ``values`` and ``segment`` are 1-D; ranks count from the segment's start.
    Returns ``(ranks, tie_sizes, tie_segment)``.
    """
    # one integer key (segment, then the value's rank among all values) sorts faster than a
    # two-key lexsort
    distinct, value_rank = np.unique(values, return_inverse=True)
    key = segment.astype(np.int64) * len(distinct) + value_rank.ravel()
    order = np.argsort(key, kind="stable")
    v, s = values[order], segment[order]
    new = np.ones(len(v), dtype=bool)
    new[1:] = (v[1:] != v[:-1]) | (s[1:] != s[:-1])
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, len(v)))
    seg_start = np.ones(len(v), dtype=bool)
    seg_start[1:] = s[1:] != s[:-1]
    seg_first = np.maximum.accumulate(np.where(seg_start, np.arange(len(v)), 0))
    position = np.arange(len(v)) - seg_first  # 0-based position within the segment
    first_pos = position[starts]
    mean_rank = first_pos + (sizes + 1) / 2.0
    ranks = np.empty(len(v))
    ranks[order] = mean_rank[group]
    return ranks, sizes, s[starts]


def _dense_rank_sums(X, groups, n_groups):
    n, d = X.shape
    segment = np.repeat(np.arange(d), n)
    ranks, sizes, tie_seg = _tie_ranks(np.asarray(X, dtype=np.float64).T.ravel(), segment)
    ranks = ranks.reshape(d, n)
    onehot = np.zeros((n, n_groups))
    onehot[np.arange(n), groups] = 1.0
    rank_sums = onehot.T @ ranks.T  # (n_groups, d)
    ties = np.bincount(tie_seg, weights=sizes.astype(float) ** 3 - sizes, minlength=d)
    return rank_sums, ties


def _sparse_rank_sums(X, groups, n_groups):
    """Rank sums on a sparse matrix: each column's zeros are one tie group."""
    X = sp.csc_matrix(X)
    X.sum_duplicates()
    n, d = X.shape
    col = np.repeat(np.arange(d), np.diff(X.indptr))
    data, rows = X.data.astype(np.float64), X.indices
    nonzero = data != 0
    data, rows, col = data[nonzero], rows[nonzero], col[nonzero]
    stored = np.bincount(col, minlength=d)
    zeros = n - stored
    negatives = np.bincount(col[data < 0], minlength=d)
    ranks, sizes, tie_seg = _tie_ranks(data, col)
    # the zeros sit above the negatives and below the positives
    ranks = ranks + np.where(data > 0, zeros[col], 0)
    zero_rank = negatives + (zeros + 1) / 2.0
    cell = groups[rows].astype(np.int64) * d + col  # (group, column) of each stored value
    rank_sums = np.bincount(cell, weights=ranks, minlength=n_groups * d).reshape(n_groups, d)
    group_stored = np.bincount(cell, minlength=n_groups * d).reshape(n_groups, d)
    group_sizes = np.bincount(groups, minlength=n_groups).astype(float)
    rank_sums += (group_sizes[:, None] - group_stored) * zero_rank[None, :]
    ties = np.bincount(tie_seg, weights=sizes.astype(float) ** 3 - sizes, minlength=d)
    ties += zeros.astype(float) ** 3 - zeros
    return rank_sums, ties


def one_vs_rest_tests(X, groups, n_groups):
    """Mann-Whitney U of each group against the rest, for every feature.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
    groups : ndarray of int of shape (n_samples,)
        Group of each sample, in ``range(n_groups)``.
    n_groups : int

    Returns
    -------
    auc : ndarray of shape (n_groups, n_features)
        ``P(x_in > x_out) + P(x_in = x_out) / 2``: 0.5 when the group does
        not differ, 1 when all of its values lie above the rest.
    p_value : ndarray of shape (n_groups, n_features)
        Two-sided, from the normal approximation with the tie correction; 1
        where the feature is constant.
    """
    groups = np.asarray(groups)
    n = X.shape[0]
    if sp.issparse(X):
        rank_sums, ties = _sparse_rank_sums(X, groups, n_groups)
    else:
        rank_sums, ties = _dense_rank_sums(X, groups, n_groups)
    n_in = np.bincount(groups, minlength=n_groups).astype(float)[:, None]
    n_out = n - n_in
    u = rank_sums - n_in * (n_in + 1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = np.where(n_in * n_out > 0, u / (n_in * n_out), 0.5)
        variance = n_in * n_out / 12.0 * ((n + 1) - ties[None, :] / (n * (n - 1.0)))
        z = (u - n_in * n_out / 2.0) / np.sqrt(variance)
    z = np.where(variance > 0, z, 0.0)
    p_value = 2.0 * ndtr(-np.abs(z))
    return auc, p_value


def benjamini_hochberg(p_values):
    """Benjamini-Hochberg adjusted p-values over all entries of ``p_values``."""
    flat = np.asarray(p_values, dtype=float).ravel()
    m = flat.size
    order = np.argsort(flat)
    scaled = flat[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.reshape(np.shape(p_values))

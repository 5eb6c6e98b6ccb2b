"""Metrics: clusterings against reference labels, rankings against held-out items."""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.utils.validation import check_consistent_length, column_or_1d

__all__ = ["clustering_accuracy", "ndcg_at_k", "recall_at_k"]


def clustering_accuracy(labels_true, labels_pred):
    """Accuracy of a clustering under the best one-to-one matching of labels.

    Each predicted cluster is matched to at most one true class so that the
    number of samples whose matched class is right is maximal (the Hungarian
    algorithm); the accuracy is that number over the number of samples. This
    is the "ACC" of the deep-clustering literature.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Reference classes.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels to evaluate.

    Returns
    -------
    accuracy : float
        In [0, 1]; 1 when the clustering equals the classes up to renaming.

    Examples
    --------
    >>> from sk_deepunsup.metrics import clustering_accuracy
    >>> clustering_accuracy([0, 0, 1, 1, 2], [1, 1, 0, 0, 0])
    0.8
    """
    labels_true = column_or_1d(labels_true)
    labels_pred = column_or_1d(labels_pred)
    check_consistent_length(labels_true, labels_pred)
    if labels_true.size == 0:
        raise ValueError("clustering_accuracy needs at least one sample.")
    classes, true_idx = np.unique(labels_true, return_inverse=True)
    clusters, pred_idx = np.unique(labels_pred, return_inverse=True)
    counts = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(counts, (pred_idx, true_idx), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / labels_true.size)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest scores of each row, best first (ties: lower index)."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1, kind="introselect")[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    # lexsort: by score descending, then by column index ascending
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _ranking_inputs(y_true, y_score, k, name):
    """Held-out matrix as CSR (binary), scores as a float array, k checked."""
    y_true = sp.csr_matrix(y_true) if not sp.issparse(y_true) else y_true.tocsr()
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_score.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(
            f"{name} needs y_true and y_score of the same 2-D shape (n_users, n_items); "
            f"got {y_true.shape} and {y_score.shape}."
        )
    if np.isnan(y_score).any():
        raise ValueError(f"{name}: y_score contains NaN.")
    if y_true.nnz and y_true.data.min() < 0:
        raise ValueError(f"{name}: y_true must be non-negative (held-out interactions).")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name}: k must be a positive integer, got {k!r}.")
    k = min(int(k), y_score.shape[1])
    y_true = y_true.copy()
    y_true.eliminate_zeros()
    n_relevant = np.diff(y_true.indptr)
    users = np.flatnonzero(n_relevant)
    if users.size == 0:
        raise ValueError(f"{name}: y_true has no held-out interaction in any row.")
    top = _top_k(y_score[users], k)
    hits = np.take_along_axis(y_true[users].toarray() != 0, top, axis=1).astype(np.float64)
    return hits, n_relevant[users], k


def ndcg_at_k(y_true, y_score, k=100):
    """Normalised discounted cumulative gain of the top-k items, averaged over users.

    The definition of Liang et al. (2018): for each user (row) with at least
    one held-out item, ``DCG@k = sum_{r=1..k} hit_r / log2(r + 1)`` over the
    k best-scored items, divided by the best possible DCG,
    ``sum_{r=1..min(k, n_held_out)} 1 / log2(r + 1)``. Rows without held-out
    items are left out. Set the scores of items the user has already seen
    to ``-inf`` to exclude them (as :meth:`AutoencoderRecommender.score` does).

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        Held-out interactions (non-zero = relevant).
    y_score : array-like of shape (n_users, n_items)
        Scores; higher is ranked first (ties: lower column first).
    k : int, default=100
        Length of the ranking.

    Returns
    -------
    ndcg : float
        In [0, 1].

    Examples
    --------
    >>> from sk_deepunsup.metrics import ndcg_at_k
    >>> ndcg_at_k([[0, 1, 0, 1]], [[0.9, 0.8, 0.1, 0.0]], k=2)  # doctest: +ELLIPSIS
    0.386...
    """
    hits, n_relevant, k = _ranking_inputs(y_true, y_score, k, "ndcg_at_k")
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discount
    ideal = np.cumsum(discount)[np.minimum(n_relevant, k) - 1]
    return float(np.mean(dcg / ideal))


def recall_at_k(y_true, y_score, k=20):
    """Share of held-out items among the top-k, normalised by ``min(k, n_held_out)``.

    Liang et al.'s (2018) Recall@k: for each user with held-out items, the
    number of them among the k best-scored items divided by
    ``min(k, n_held_out)`` (so it reaches 1 when the top-k is all relevant);
    averaged over those users.

    Parameters
    ----------
    y_true : {array-like, sparse matrix} of shape (n_users, n_items)
        Held-out interactions (non-zero = relevant).
    y_score : array-like of shape (n_users, n_items)
        Scores; higher is ranked first.
    k : int, default=20
        Length of the ranking.

    Returns
    -------
    recall : float
        In [0, 1].

    Examples
    --------
    >>> from sk_deepunsup.metrics import recall_at_k
    >>> recall_at_k([[0, 1, 0, 1]], [[0.9, 0.8, 0.1, 0.0]], k=2)
    0.5
    """
    hits, n_relevant, k = _ranking_inputs(y_true, y_score, k, "recall_at_k")
    return float(np.mean(hits.sum(axis=1) / np.minimum(n_relevant, k)))

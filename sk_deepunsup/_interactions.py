"""Interaction matrices: from tables and back, binarised, split for validation, ranked."""

import numpy as np
import scipy.sparse as sp
import torch

from ._nn import standardize_rows
from .metrics import _top_k, ndcg_at_k
from .model_selection import train_test_split_interactions

__all__ = [
    "N_VALIDATION_USERS",
    "binarize",
    "check_held_out",
    "interaction_matrix",
    "ladder_search",
    "rank_items",
    "recommendations_frame",
    "search_mix",
    "validation_ndcg",
    "validation_split",
]


def interaction_matrix(frame, user_col, item_col, rating_col=None):
    """A users x items CSR matrix from a table of (user, item[, rating]) rows.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per interaction.
    user_col, item_col : str
        Columns holding the user and item labels (any hashable values).
    rating_col : str or None, default=None
        Column of values (ratings, counts); ``None`` counts each row as 1.
        Repeated (user, item) pairs are summed.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_users, n_items)
    users : ndarray of shape (n_users,)
        Label of each row (sorted).
    items : ndarray of shape (n_items,)
        Label of each column (sorted); ``items[rec.recommend(X)]`` turns
        recommended column indices into item labels.
    """
    for name, col in (("user_col", user_col), ("item_col", item_col), ("rating_col", rating_col)):
        if col is not None and col not in frame.columns:
            raise ValueError(
                f"{name}={col!r} is not a column of the table; its columns are "
                f"{[str(c) for c in frame.columns]}."
            )
    users, rows = np.unique(frame[user_col].to_numpy(), return_inverse=True)
    items, cols = np.unique(frame[item_col].to_numpy(), return_inverse=True)
    if rating_col is None:
        values = np.ones(len(frame))
    else:
        values = frame[rating_col].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(
                f"rating column {rating_col!r} has missing (NaN) or infinite values; "
                "drop those rows or fill them in."
            )
    X = sp.csr_matrix((values, (rows.ravel(), cols.ravel())), shape=(len(users), len(items)))
    X.sum_duplicates()
    return X, users, items


def recommendations_frame(recommended, items, users=None):
    """Recommended column indices as a long table of (user, rank, item) rows.

    Parameters
    ----------
    recommended : ndarray of shape (n_users, n)
        The output of :meth:`AutoencoderRecommender.recommend`.
    items : ndarray of shape (n_items,)
        Item label of each column (from :func:`interaction_matrix`).
    users : array-like of shape (n_users,) or None
        User label of each row; ``None`` numbers the rows from 0.

    Returns
    -------
    frame : pandas.DataFrame
        Columns ``user``, ``rank`` (1 is best) and ``item``.
    """
    import pandas as pd

    recommended = np.asarray(recommended)
    n_users, n = recommended.shape
    users = np.arange(n_users) if users is None else np.asarray(users)
    return pd.DataFrame(
        {
            "user": np.repeat(users, n),
            "rank": np.tile(np.arange(1, n + 1), n_users),
            "item": np.asarray(items)[recommended.ravel()],
        }
    )


def binarize(X, threshold):
    """Validated X -> the same kind of matrix with 1 for each positive, else 0.

    Raises ValueError for negative values (NaN and infinity are refused by
    validation already).
    """
    data = X.data if sp.issparse(X) else X
    if data.size and data.min() < 0:
        raise ValueError(
            f"Negative values in data passed to X (minimum {data.min():.4g}); the "
            "recommender reads "
            "non-negative interactions (counts, ratings or 0/1). Map dislikes to 0 "
            "(np.clip(X, 0, None)), or shift signed ratings to be non-negative and set "
            "threshold= to the level that counts as a like."
        )
    # an empty cell is never an interaction, whatever the threshold: a dense
    # matrix's zeros then mean what a sparse matrix's missing entries mean
    cut = (data > 0) if threshold is None else (data >= threshold) & (data != 0)
    if sp.issparse(X):
        out = X.copy()
        out.data = cut.astype(X.dtype)
        out.eliminate_zeros()
        return out
    return cut.astype(X.dtype)


def rank_items(scores, seen, popularity, n_items, exclude_seen):
    """The ``n_items`` best columns of each row of ``scores`` (float64, changed in place).

    Rows without any ``seen`` item are ranked by ``popularity`` instead;
    with ``exclude_seen`` the seen items are left out (ValueError when fewer
    than ``n_items`` remain for some row).
    """
    empty = ~seen.any(axis=1)
    if empty.any():  # no history: rank by popularity
        scores[empty] = popularity
    if exclude_seen:
        scores[seen] = -np.inf
        n_unseen = seen.shape[1] - seen.sum(axis=1)
        if (n_unseen < n_items).any():
            raise ValueError(
                f"n_items={n_items} is more than the {int(n_unseen.min())} "
                "items some user has not seen; ask for fewer or pass "
                "exclude_seen=False."
            )
    return _top_k(scores, n_items)


def check_held_out(y, shape):
    """y, the held-out interactions of ``shape`` histories, as a sparse or float array."""
    if not sp.issparse(y) and np.ndim(y) != 2:
        raise ValueError(
            "y must be the held-out interactions, a matrix of the same shape "
            f"as X {shape}; got an array of shape {np.shape(y)}. See "
            "sk_deepunsup.model_selection.train_test_split_interactions."
        )
    y = y if sp.issparse(y) else np.asarray(y, dtype=np.float64)
    values = y.data if sp.issparse(y) else y
    if not np.isfinite(values).all():
        raise ValueError(
            "y contains NaN or infinity; it must hold the held-out interactions "
            "(0 where there is none)."
        )
    if tuple(y.shape) != tuple(shape):
        raise ValueError(
            f"y has shape {tuple(y.shape)} but X has shape {shape}; y must "
            "hold the held-out interactions of the same users and items."
        )
    return y


#: Users whose held-out interactions score ``l2`` and ``mix`` in fit (at most).
N_VALIDATION_USERS = 5000


def validation_split(X, seed):
    """20 % of each user's interactions held out, or None when none could be.

    Returns the training part and, for at most :data:`N_VALIDATION_USERS`
    users with held-out items (chosen at random), their training and held-out
    rows.
    """
    X_fit, X_val = train_test_split_interactions(
        sp.csr_matrix(X), test_size=0.2, min_interactions=2, random_state=seed
    )
    users = np.flatnonzero(np.diff(X_val.indptr))
    if users.size == 0:
        return None
    if users.size > N_VALIDATION_USERS:
        rng = np.random.RandomState(seed)
        users = np.sort(rng.choice(users, N_VALIDATION_USERS, replace=False))
    return X_fit, X_fit[users], X_val[users]


def validation_ndcg(history, X_val):
    """``ndcg(scores)``: NDCG@100 of ``X_val`` ranked by ``scores`` (``history``'s items out)."""
    seen = history.toarray() != 0
    k = min(100, history.shape[1])

    def ndcg(scores):
        scores = np.array(scores, dtype=np.float64)
        scores[seen] = -np.inf
        return ndcg_at_k(X_val, scores, k=k)

    return ndcg


def search_mix(ladder, deep_val, shallow_val, history, X_val):
    """The blend weight of ``ladder`` whose mix of the two scores ranks ``X_val`` best, and its NDCG.

    Each model's validation scores are standardized per row first.
    """
    shallow = standardize_rows(torch.as_tensor(shallow_val, dtype=torch.float64)).numpy()
    deep = standardize_rows(torch.as_tensor(deep_val, dtype=torch.float64)).numpy()
    ndcg = validation_ndcg(history, X_val)
    return ladder_search(ladder, ladder.index(0.5), lambda w: ndcg((1 - w) * shallow + w * deep))


def ladder_search(ladder, start, evaluate):
    """The value of ``ladder`` with the best ``evaluate``, walked from ``ladder[start]``.

    One step towards the better neighbour, then onwards while ``evaluate``
    rises (a local maximum; each value is evaluated at most once). Returns
    the value and its evaluation.
    """
    seen = {}

    def value(i):
        if i not in seen:
            seen[i] = evaluate(ladder[i])
        return seen[i]

    i = start
    step = 1 if start + 1 < len(ladder) and value(start + 1) > value(start) else -1
    while 0 <= i + step < len(ladder) and value(i + step) > value(i):
        i += step
    return ladder[i], value(i)

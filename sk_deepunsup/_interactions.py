"""Tables of (user, item[, rating]) rows to interaction matrices and back."""

import numpy as np
import scipy.sparse as sp

__all__ = ["interaction_matrix", "recommendations_frame"]


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

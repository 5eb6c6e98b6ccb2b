"""Splitting user-item interaction matrices for evaluation."""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

__all__ = ["train_test_split_interactions"]


@validate_params(
    {
        "X": ["array-like", "sparse matrix"],
        "test_size": [Interval(Real, 0, 1, closed="neither")],
        "min_interactions": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def train_test_split_interactions(X, test_size=0.2, min_interactions=5, random_state=None):
    """Hold out a share of each user's interactions (the usual top-N protocol).

    For every row (user) with at least ``min_interactions`` non-zero
    entries, ``round(test_size * n)`` of them (at least one) chosen at random
    move to the test matrix; other rows stay whole in the train matrix. Fit
    on ``X_train``, then score ``recommend(X_train)`` against ``X_test``
    (e.g. ``AutoencoderRecommender.score(X_train, X_test)``).

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_users, n_items)
        Interactions; non-zero entries are split, values are kept.
    test_size : float in (0, 1), default=0.2
        Share of each eligible user's interactions held out.
    min_interactions : int, default=5
        Users with fewer interactions keep them all in the train matrix.
    random_state : int, RandomState instance or None, default=None
        Seeds the choice.

    Returns
    -------
    X_train, X_test : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Disjoint; ``X_train + X_test`` equals X.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from sk_deepunsup.model_selection import train_test_split_interactions
    >>> X = sp.random(50, 40, density=0.3, format="csr", random_state=0)
    >>> X_train, X_test = train_test_split_interactions(X, random_state=0)
    >>> bool(abs(X_train + X_test - X).sum() == 0)
    True
    """
    X = sp.csr_matrix(X, dtype=np.float64) if not sp.issparse(X) else X.tocsr().astype(np.float64)
    X.eliminate_zeros()
    X.sort_indices()
    rng = check_random_state(random_state)
    test_mask = np.zeros(X.nnz, dtype=bool)
    for u in range(X.shape[0]):
        start, stop = X.indptr[u], X.indptr[u + 1]
        n = stop - start
        if n >= min_interactions:
            n_test = max(1, int(round(test_size * n)))
            test_mask[start + rng.choice(n, n_test, replace=False)] = True
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))

    def part(mask):
        return sp.csr_matrix(
            (X.data[mask], (rows[mask], X.indices[mask])), shape=X.shape
        )

    return part(~test_mask), part(test_mask)

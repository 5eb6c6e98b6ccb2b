"""Metrics for evaluating clusterings against reference labels."""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.utils.validation import check_consistent_length, column_or_1d

__all__ = ["clustering_accuracy"]


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

"""The clusterer's cluster centres before refinement: k-means or the user's clusterer."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.cluster import KMeans, kmeans_plusplus

from ._nn import TrainingInterrupted

__all__ = ["initial_centers"]

def initial_centers(embedding, n_clusters: int, init, n_init, seed: int, interrupted: bool):
    """``n_clusters`` centres in ``embedding``: k-means (``init="k-means"``) or ``init``'s clusters.

    Once interrupted (``interrupted``, or Ctrl-C during k-means), k-means++
    seeds stand in for k-means. Returns ``(centers, interrupted)``.
    """
    k = n_clusters
    if isinstance(init, str):  # "k-means"
        if interrupted:
            return kmeans_plusplus(embedding, k, random_state=seed)[0], True
        kmeans = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
        try:
            kmeans.fit(embedding)
        except KeyboardInterrupt:
            warnings.warn(
                "Initialisation interrupted; the clusters start from k-means++ "
                "seeds and are not refined.",
                TrainingInterrupted,
            )
            return kmeans_plusplus(embedding, k, random_state=seed)[0], True
        return _cluster_means(embedding, kmeans.labels_, kmeans.cluster_centers_), False
    init = clone(init)
    params = init.get_params()
    overrides = {}
    if "n_clusters" in params:
        overrides["n_clusters"] = k
    if "random_state" in params and params["random_state"] is None:
        overrides["random_state"] = seed
    labels = np.asarray(init.set_params(**overrides).fit_predict(embedding))
    found = np.unique(labels[labels >= 0])
    if len(found) != k:
        raise ValueError(
            f"init={type(init).__name__} found {len(found)} clusters in the "
            f"embedding, but n_clusters={k}; pass a clusterer that finds "
            "n_clusters clusters."
        )
    return np.stack([embedding[labels == c].mean(axis=0) for c in found]), interrupted


def _cluster_means(embedding, labels, fallback):
    """Each cluster's mean, summed in row order (k-means' own centres sum per thread).

    A cluster without members keeps its ``fallback`` centre.
    """
    centers = fallback.copy()
    for c in range(centers.shape[0]):
        members = embedding[labels == c]
        if len(members):
            centers[c] = members.mean(axis=0)
    return centers

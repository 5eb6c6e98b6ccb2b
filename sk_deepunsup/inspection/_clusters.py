"""explain_clusters: what makes each cluster a cluster, in the user's features."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances
from sklearn.utils import check_random_state

from ._rank_tests import benjamini_hochberg, one_vs_rest_tests
from ._user_space import (
    as_float_table,
    check_positive_int,
    model_image_shape,
    resolve_user_space,
)

DIRECTIONS = ("auto", "both", "higher", "lower")

#: members of a cluster its prototypes are chosen among (a random subsample beyond)
PROTOTYPE_POOL = 1000


@dataclass
class ClusterExplanation:
    """What :func:`explain_clusters` found; print it for a text summary.

    Attributes
    ----------
    features : pandas.DataFrame
        One row per (cluster, rank), most distinctive first: ``cluster``,
        ``rank``, ``feature``, ``score``, ``direction`` ("higher" or "lower":
        where the cluster stands on the feature), ``mean_in`` and ``mean_out``
        (the feature's mean inside and outside the cluster), ``presence_in``
        and ``presence_out`` (the share of samples where it is non-zero),
        ``effect_size`` (``2 * AUC - 1`` of the one-vs-rest Mann-Whitney test:
        +1 when every member is above every other sample, -1 when below) and
        ``p_value`` (that test's two-sided p-value, Benjamini-Hochberg adjusted
        over every cluster and feature).
    effect_sizes : pandas.DataFrame of shape (n_clusters, n_features)
        ``effect_size`` for every cluster (rows) and feature (columns).
    prototypes : dict
        Cluster -> row positions in X of its most typical members, most
        typical first.
    borderline : dict
        Cluster -> row positions of its least typical members (the weakest
        assignments), least typical first.
    sizes : pandas.Series
        Members of each cluster.
    labels : ndarray of shape (n_samples,)
        The cluster of each row of X.
    image_shape : tuple or None
        The shape of one image when the features are pixels.
    sparse : bool
        Whether the features were sparse (text, counts): their ``score`` is
        then the mutual information of presence and membership.
    """

    features: object
    effect_sizes: object
    prototypes: dict
    borderline: dict
    sizes: object
    labels: np.ndarray
    image_shape: tuple | None = None
    sparse: bool = False

    def summary(self, n_features: int = 5) -> str:
        """A paragraph a person reads: each cluster's size, top features and prototypes."""
        lines = []
        total = int(self.sizes.sum())
        for cluster, size in self.sizes.items():
            rows = self.features[self.features["cluster"] == cluster].head(n_features)
            higher = ", ".join(rows.loc[rows["direction"] == "higher", "feature"].astype(str))
            lower = ", ".join(rows.loc[rows["direction"] == "lower", "feature"].astype(str))
            parts = [f"cluster {cluster}: {size} samples ({100.0 * size / total:.1f}%)"]
            if higher:
                parts.append(f"high on {higher}")
            if lower:
                parts.append(f"low on {lower}")
            prototypes = ", ".join(str(i) for i in self.prototypes[cluster])
            parts.append(f"typical rows {prototypes}")
            lines.append("; ".join(parts))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def cluster_labels(final, model_input, n_samples, labels=None):
    """The cluster of each sample: given, ``predict``, or the fitted ``labels_``."""
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n_samples,):
            raise ValueError(
                f"labels has shape {labels.shape}; X has {n_samples} rows, pass one label per row."
            )
        return labels
    if hasattr(final, "predict"):
        return np.asarray(final.predict(model_input))
    fitted = getattr(final, "labels_", None)
    if fitted is not None and len(fitted) == n_samples:
        return np.asarray(fitted)
    raise TypeError(
        f"{type(final).__name__} has no predict and its labels_ are not for these "
        f"{n_samples} rows; pass the training X, or labels=..."
    )


def _scores(auc, presence_in, presence_out, group_share, sparse, direction):
    """Each (cluster, feature)'s distinctiveness, and where the cluster stands on it."""
    effect = 2.0 * auc - 1.0
    if direction == "auto":
        direction = "higher" if sparse else "both"
    if sparse:
        score = _presence_information(presence_in, presence_out, group_share)
        side = np.where(presence_in >= presence_out, 1.0, -1.0)
    else:
        score, side = np.abs(effect), np.sign(effect)
    if direction == "higher":
        score = np.where(side > 0, score, 0.0)
    elif direction == "lower":
        score = np.where(side < 0, score, 0.0)
    return score, np.where(side >= 0, "higher", "lower")


def _entropy(p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def _presence_information(presence_in, presence_out, group_share):
    """Mutual information (nats) between a feature's presence and membership of the cluster."""
    share = group_share[:, None]
    overall = share * presence_in + (1 - share) * presence_out
    return np.maximum(
        _entropy(overall) - share * _entropy(presence_in) - (1 - share) * _entropy(presence_out),
        0.0,
    )


def _group_means(features, codes, n_groups):
    """Per-group mean value and share of non-zero values, inside and outside each group."""
    n = features.shape[0]
    onehot = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))
    sizes = np.bincount(codes, minlength=n_groups).astype(float)[:, None]
    nonzero = features != 0
    if sp.issparse(features):
        sums, counts = (onehot @ features).toarray(), (onehot @ nonzero).toarray()
        total, total_counts = np.asarray(features.sum(0)), np.asarray(nonzero.sum(0))
    else:
        sums, counts = onehot @ features, onehot @ nonzero.astype(float)
        total, total_counts = features.sum(0, keepdims=True), nonzero.sum(0, keepdims=True)
    rest = np.maximum(n - sizes, 1.0)
    return (
        sums / sizes,
        (total - sums) / rest,
        counts / sizes,
        (total_counts - counts) / rest,
    )


def _typical_members(space, codes, n_groups, n_prototypes, seed, rng):
    """Each cluster's prototypes: the members nearest the centres of a k-means of its members
    (k-medoids' answer, found the k-means way), the largest sub-cluster's first."""
    from threadpoolctl import threadpool_limits

    prototypes = []
    for group in range(n_groups):
        members = np.flatnonzero(codes == group)
        if len(members) > PROTOTYPE_POOL:
            members = np.sort(rng.choice(members, PROTOTYPE_POOL, replace=False))
        n_pick = min(n_prototypes, len(members))
        if n_pick == len(members):
            prototypes.append(members)
            continue
        with threadpool_limits(1):  # small problems: threads only wait on each other
            sub = KMeans(n_pick, n_init=10, random_state=seed).fit(space[members])
        order = np.argsort(-np.bincount(sub.labels_, minlength=n_pick), kind="stable")
        distances = pairwise_distances(sub.cluster_centers_[order], space[members])
        chosen = []
        for row in distances:  # the nearest member not taken by a larger sub-cluster
            row[chosen] = np.inf
            chosen.append(int(np.argmin(row)))
        prototypes.append(members[chosen])
    return prototypes


def _weakest_members(final, model_input, codes, n_groups, n_borderline):
    """Members with the weakest hold on their cluster, weakest first."""
    if hasattr(final, "predict_proba"):
        proba = np.asarray(final.predict_proba(model_input))
        strength = proba[np.arange(len(codes)), np.argmax(proba, axis=1)]
    else:
        space = as_float_table(model_input)
        centres = np.vstack(
            [np.asarray(space[codes == g].mean(axis=0)).ravel() for g in range(n_groups)]
        )
        distances = pairwise_distances(space, centres)
        own = distances[np.arange(len(codes)), codes]
        distances[np.arange(len(codes)), codes] = np.inf
        strength = distances.min(axis=1) - own  # margin to the nearest other centre
    out = []
    for group in range(n_groups):
        members = np.flatnonzero(codes == group)
        out.append(members[np.argsort(strength[members], kind="stable")[:n_borderline]])
    return out


def explain_clusters(model, X, *, n_features=10, n_prototypes=5, direction="auto", labels=None,
                     feature_names=None, image_shape=None, random_state=0):
    """What distinguishes each cluster, in the user's features, and its typical members.

    Every feature is tested for every cluster against the other samples
    (Mann-Whitney U, Benjamini-Hochberg adjusted, as ``scanpy``'s
    ``rank_genes_groups``); the features that tell a cluster apart best come
    first, named after X's columns, a pipeline vectorizer's terms or pixels.

    Parameters
    ----------
    model : estimator or Pipeline
        A fitted clusterer with ``predict`` or ``labels_`` (this package's
        or scikit-learn's, ``KMeans`` too), or a Pipeline ending in one.
    X : array-like, DataFrame, sparse matrix or raw input of the pipeline
        Samples to explain. When X is not a numeric table (raw text,
        categorical columns), it is explained in the output of the fewest
        leading pipeline steps that make it numeric.
    n_features : int, default=10
        Features listed per cluster (all of them when there are fewer).
    n_prototypes : int, default=5
        Typical and borderline members listed per cluster.
    direction : {"auto", "both", "higher", "lower"}, default="auto"
        Whether a cluster is described by features it is higher on, lower
        on, or both; ``"auto"``: ``"higher"`` for sparse X, else ``"both"``.
    labels : array-like of shape (n_samples,), default=None
        Clusters to explain instead of the model's predictions.
    feature_names : array-like of str, default=None
        Names to use instead of the ones found.
    image_shape : tuple of int, default=None
        One image's shape (the model's own by default): features are named
        ``pixel[r, c]`` and the Display draws prototypes as images.
    random_state : int, RandomState instance or None, default=0
        Seeds the k-means that picks each cluster's prototypes (and its
        subsample in clusters of more than 1 000 members).

    Returns
    -------
    explanation : ClusterExplanation
        ``features`` (a row per cluster and rank), ``effect_sizes``,
        ``prototypes``, ``borderline``, ``sizes``, ``labels``; print it.

    Notes
    -----
    ``score`` is ``|2 * AUC - 1|`` for a dense feature and, for a sparse one,
    the mutual information (nats) of its presence and membership; see
    :ref:`explaining` for the prototypes and borderline members.

    Examples
    --------
    >>> from sklearn.cluster import KMeans
    >>> from sklearn.datasets import load_iris
    >>> from sk_deepunsup.inspection import explain_clusters
    >>> X = load_iris(as_frame=True).data
    >>> model = KMeans(3, n_init=10, random_state=0).fit(X)
    >>> explain_clusters(model, X, n_features=2).features.groupby("cluster").size().tolist()
    [2, 2, 2]
    """
    import pandas as pd

    n_features, n_prototypes = _check_options(n_features, n_prototypes, direction)
    space = resolve_user_space(model, X, feature_names=feature_names, image_shape=image_shape)
    raw_labels = cluster_labels(space.final, space.model_input, space.features.shape[0], labels)
    clusters, codes = _cluster_codes(raw_labels)
    table, effect = _feature_table(space, clusters, codes, n_features, direction)
    rng, k = check_random_state(random_state), len(clusters)
    seed = random_state if isinstance(random_state, Integral) else rng.randint(2**31 - 1)
    typical = _typical_members(as_float_table(space.model_input), codes, k, n_prototypes, seed, rng)
    weakest = _weakest_members(space.final, space.model_input, codes, k, n_prototypes)
    return ClusterExplanation(
        features=table,
        effect_sizes=pd.DataFrame(effect, index=clusters, columns=space.names),
        prototypes={c: typical[i] for i, c in enumerate(clusters)},
        borderline={c: weakest[i] for i, c in enumerate(clusters)},
        sizes=pd.Series(np.bincount(codes, minlength=k), index=clusters, name="size"),
        labels=raw_labels,
        image_shape=image_shape if image_shape is not None else model_image_shape(space.final),
        sparse=sp.issparse(space.features),
    )


def _check_options(n_features, n_prototypes, direction):
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}.")
    return (check_positive_int(n_features, "n_features"),
            check_positive_int(n_prototypes, "n_prototypes"))


def _cluster_codes(labels):
    """The distinct clusters and each sample's position among them; at least two clusters."""
    clusters, codes = np.unique(labels, return_inverse=True)
    if len(clusters) < 2:
        raise ValueError(
            f"All {len(codes)} samples are in one cluster ({clusters[0]!r}): there is nothing "
            "to tell apart. Explain a clustering with at least two clusters."
        )
    return clusters, codes


def _feature_table(space, clusters, codes, n_features, direction):
    """The (cluster, rank) table of the most distinctive features, and every effect size."""
    import pandas as pd

    features, k = space.features, len(clusters)
    auc, p_value = one_vs_rest_tests(features, codes, k)
    mean_in, mean_out, presence_in, presence_out = _group_means(features, codes, k)
    share = np.bincount(codes, minlength=k) / features.shape[0]
    score, side = _scores(auc, presence_in, presence_out, share, sp.issparse(features), direction)
    p_adjusted = benjamini_hochberg(p_value)
    n_top = min(n_features, features.shape[1])
    # most distinctive first; ties by the smaller p-value, then by column
    columns = np.broadcast_to(np.arange(features.shape[1]), score.shape)
    rows = np.repeat(np.arange(k), n_top)
    cols = np.lexsort((columns, p_value, -score))[:, :n_top].ravel()
    table = pd.DataFrame(
        {
            "cluster": clusters[rows],
            "rank": np.tile(np.arange(1, n_top + 1), k),
            "feature": space.names[cols],
            "score": score[rows, cols],
            "direction": side[rows, cols],
            "mean_in": mean_in[rows, cols],
            "mean_out": mean_out[rows, cols],
            "presence_in": presence_in[rows, cols],
            "presence_out": presence_out[rows, cols],
            "effect_size": 2.0 * auc[rows, cols] - 1.0,
            "p_value": p_adjusted[rows, cols],
        }
    )
    return table, 2.0 * auc - 1.0


"""AutoencoderOutlierDetector: anomaly detection the way IsolationForest does it."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sklearn.utils._set_output import _get_output_config

from ._autoencoder import AutoencoderBase
from ._base import TRAINING_CONSTRAINTS, TorchEstimatorMixin
from ._devices import derive_seed
from ._validation import as_dense, non_finite_error, validate_input
from ._interrupts import restore_on_interrupt
from ._neighbor_graph import kneighbors_by_index
from ._pretraining import (
    RANKING_EPOCHS,
    PretrainingInterrupted,
    detector_autoencoder,
    fit_pretraining,
    prepare_pretraining,
    ranking_autoencoder,
)

#: samples each autoencoder trains on, and reference samples, when
#: ``max_samples="auto"`` (IsolationForest's trees take 256 each)
AUTO_MAX_SAMPLES = 512
#: epochs the default first model, once it has ranked the samples, goes on
#: training on the support (warm, with its optimiser's state): the model that
#: scores is not trained again from scratch
REFINE_EPOCHS = 20
#: epochs of the default model that scores, in all
SCORING_EPOCHS = RANKING_EPOCHS + REFINE_EPOCHS
#: per-feature residual scales are shrunk toward their mean by this share
SCALE_SHRINKAGE = 0.1
#: rows per chunk when splitting the distance part over features
CONTRIBUTION_CHUNK = 1024
#: training samples (a random subsample of larger data) that set the part
#: scales and, with ``contamination="auto"``, the threshold: quartiles, which
#: 2 048 values give to about 3% (ODDS AUCs changed by < 0.0002 from 4 096)
CALIBRATION_SAMPLES = 2048
#: share of the features left out when a sample's robust neighbours are found
#: (its most different ones), so that a few corrupted values cannot choose them
TRIMMED_SHARE = 1 / 3
#: elements of the (rows, references, features) differences held at once
DEVIATION_BLOCK = 2**22


def robust_deviations(X, reference, n_neighbors, *, leave_self_out=False):
    """Each feature's distance from its value at the sample's robust neighbours.

    A sample's robust neighbours are the ``n_neighbors`` reference samples
    nearest in the L1 distance over all but its ``TRIMMED_SHARE`` most
    different features; a feature's deviation is ``|x_j - median_j|`` over
    them. A value corrupted on its own, or one that breaks how the features
    go together, stands out; the neighbours are found on the other features.
    """
    n, d = X.shape
    keep = d - min(int(np.ceil(TRIMMED_SHARE * d)), d - 1)
    k = min(n_neighbors, reference.shape[0] - int(leave_self_out))
    out = np.empty((n, d))
    rows = max(1, DEVIATION_BLOCK // max(1, reference.shape[0] * d))
    ref32 = reference.astype(np.float32)  # neighbours are chosen in float32: half the traffic
    for start in range(0, n, rows):
        block = X[start : start + rows]
        diff = np.abs(block[:, None, :].astype(np.float32) - ref32[None])
        distance = np.partition(diff, keep - 1, axis=2)[:, :, :keep].sum(axis=2)
        if leave_self_out:
            distance[diff.sum(axis=2) == 0] = np.inf
        nearest = np.argpartition(distance, k - 1, axis=1)[:, :k]
        out[start : start + rows] = np.abs(block - np.median(reference[nearest], axis=1))
    return out


def has_distance_part(detector) -> bool:
    """Whether a fitted detector's score has a distance part: ``n_neighbors > 0``, 2+ references."""
    return detector.n_neighbors > 0 and detector.reference_.shape[0] > 1


def _row_shares(values):
    """Each row divided by its sum (an even split where the row is all zero)."""
    total = values.sum(axis=1, keepdims=True)
    even = np.full_like(values, 1.0 / values.shape[1], dtype=np.float64)
    return np.divide(values, total, out=even, where=total > 0)


def robust_spread(values) -> float:
    """Interquartile range of ``values``, never zero (the unit of a score part)."""
    q1, q3 = np.percentile(values, [25, 75])
    spread = float(q3 - q1)
    if spread > 0:
        return spread
    fallback = float(np.mean(np.abs(values - np.median(values))))
    return fallback if fallback > 0 else 1.0


class AutoencoderOutlierDetector(OutlierMixin, TorchEstimatorMixin, BaseEstimator):
    """Outlier detection with an autoencoder: samples it explains badly, far from normal ones.

    A sample's outlyingness adds two parts, each in units of its
    interquartile range over the training data:

    - **reconstruction**: how badly the autoencoder reconstructs the sample,
      summed over features as ``|x_j - x̂_j| / s_j``, where ``s_j`` is the
      typical residual of feature ``j`` on the autoencoder's training samples
      (its root median square, shrunk a little toward the mean over
      features), so that a feature the model reconstructs tightly counts more
      when it is off;
    - **distance**: the mean Manhattan (L1) distance to its ``n_neighbors``
      nearest reference samples, training samples judged normal (a sample
      identical to a reference sample is not its own neighbour). Like the
      reconstruction part it sums absolute offsets over features, which
      keeps more contrast between near and far samples than the Euclidean
      distance as features grow in number, and splits exactly over them.

    ``score_samples`` is minus that sum (higher is more normal), and
    :meth:`feature_contributions` splits it over the features.

    Fitting follows the ideas of ``MinCovDet`` and ``IsolationForest``: a
    first autoencoder, trained on a subsample of ``max_samples`` rows, ranks
    the training samples by its reconstruction part plus the squared
    standardised distance to the data's mean. The ``support_fraction`` of
    samples it ranks most normal are the support; the autoencoder then goes
    on training on a subsample of the support only (the default; a user's
    model trains again from scratch), so that it does not learn to explain
    the outliers, and the reference samples are another subsample
    of the support. The part scales and the ``"auto"`` threshold come from
    the training samples' score parts (from a random subsample of 2 048 of
    them on larger data).

    The API and sign conventions are IsolationForest's: ``score_samples``
    is higher for more normal samples, ``decision_function = score_samples
    - offset_`` is negative for outliers, and ``predict`` returns +1 for
    inliers and -1 for outliers. Scale features first (for example in a
    ``Pipeline`` with ``StandardScaler``): residuals and distances add up
    over features.

    Parameters
    ----------
    autoencoder : DeepAutoencoder, VariationalAutoencoder or None, default=None
        ``None`` trains ``VariationalAutoencoder(n_components=4,
        hidden_layer_sizes=(64, 32), loss="mse", batch_size=1024,
        learning_rate_init=1e-2)`` (its reconstruction is the decoded
        posterior mean) for 20 epochs, ranks the samples with it, then goes
        on training it for 20 more on the support: the model that scores
        trains 40 epochs in all (40 from the start with
        ``support_fraction=1``). An unfitted one is cloned and trained
        twice, from scratch each time; a fitted one is copied and used as is (no
        training; the support, the reference samples and the threshold come
        from X). This estimator's ``device`` and ``verbose`` override the
        autoencoder's, and ``random_state`` seeds an autoencoder that has
        none.
    max_samples : "auto", int or float, default="auto"
        Samples each autoencoder trains on, and number of reference samples,
        drawn without replacement: ``"auto"`` is ``min(512, n_samples)``,
        an int that many (at least 2, at most all), a float in (0, 1] that share of the
        samples. It bounds the fit time on large data, as in
        ``IsolationForest``.
    n_neighbors : int >= 0, default=10
        Reference samples the distance part averages over; 0 leaves the
        distance part out (reconstruction only).
    contamination : "auto" or float in (0, 0.5], default="auto"
        Expected share of outliers in the training data. A float sets
        ``offset_`` so that this share of the training samples is flagged.
        ``"auto"`` flags training samples whose score lies beyond Tukey's
        lower fence, ``Q1 - 1.5 * IQR`` of the training scores.
    support_fraction : float in (0, 1], default=0.9
        Share of the training samples, those the first model ranks most
        normal, on which the final autoencoder trains and from which the
        reference samples are drawn (so that a tight cluster of outliers
        are not each other's neighbours). 1.0 trains once, on a subsample
        of all samples.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsamples, and the autoencoders when they have no
        ``random_state`` of their own.
    device : str or torch.device, default="auto"
        Where the autoencoders train and run.
    verbose : bool or int, default=False
        Progress bar on stderr.
    n_threads : int, None or "adaptive", default=None
        torch threads on the CPU, as in :class:`~sk_deepunsup.DeepAutoencoder`: ``None``
        chooses from the network's size, never from the load, so results
        are reproducible; an int fixes the count; ``"adaptive"`` times.

    Attributes
    ----------
    autoencoder_ : DeepAutoencoder or VariationalAutoencoder
        The fitted autoencoder that scores (the second fit, with
        ``support_fraction < 1``).
    support_ : ndarray of bool of shape (n_samples,)
        Training samples the first model ranked most normal; the final
        autoencoder trained on (a subsample of) them.
    reference_ : ndarray of shape (n_reference, n_features_in_)
        The reference samples of the distance part.
    residual_scale_ : ndarray of shape (n_features_in_,)
        ``s_j``, the typical residual of each feature.
    part_scale_ : ndarray of shape (2,)
        Interquartile ranges of the reconstruction and distance parts over
        the training data: their units in the score.
    offset_ : float
        Threshold on ``score_samples``: ``decision_function`` is
        ``score_samples(X) - offset_``.
    interrupted_ : bool
        Whether Ctrl-C (KeyboardInterrupt) ended the fit early; the detector
        is usable (a warning says so).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.ensemble.IsolationForest : Tree-based outlier detection.
    sklearn.neighbors.LocalOutlierFactor : Density-based outlier detection.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.metrics import roc_auc_score
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sk_deepunsup import AutoencoderOutlierDetector
    >>> X, y = load_digits(return_X_y=True)
    >>> data = np.vstack([X[y == 1], X[y != 1][:9]])  # the 1s, and 9 other digits
    >>> is_foreign = np.r_[np.zeros(np.sum(y == 1)), np.ones(9)]
    >>> detector = AutoencoderOutlierDetector(contamination=0.05, random_state=0)
    >>> det = make_pipeline(StandardScaler(), detector).fit(data)
    >>> float(np.mean(det.predict(data) == -1))  # the contamination share
    0.05...
    >>> bool(roc_auc_score(is_foreign, -det.score_samples(data)) > 0.9)
    True
    """

    _parameter_constraints: dict = {
        "autoencoder": [None, AutoencoderBase],
        "max_samples": [
            StrOptions({"auto"}),
            Interval(Integral, 2, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
        ],
        "n_neighbors": [Interval(Integral, 0, None, closed="left")],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "support_fraction": [Interval(Real, 0, 1, closed="right")],
        "random_state": TRAINING_CONSTRAINTS["random_state"],
        "device": TRAINING_CONSTRAINTS["device"],
        "verbose": TRAINING_CONSTRAINTS["verbose"],
        "n_threads": TRAINING_CONSTRAINTS["n_threads"],
    }

    _fitted_attribute = "offset_"

    def __init__(
        self,
        autoencoder=None,
        *,
        max_samples="auto",
        n_neighbors=10,
        contamination="auto",
        support_fraction=0.9,
        random_state=None,
        device="auto",
        verbose=False,
        n_threads=None,
    ):
        self.autoencoder = autoencoder
        self.max_samples = max_samples
        self.n_neighbors = n_neighbors
        self.contamination = contamination
        self.support_fraction = support_fraction
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.n_threads = n_threads

    # -- fitting ---------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=False)
    @restore_on_interrupt
    def fit(self, X, y=None):
        """Train the autoencoder on X, pick the reference samples, set the threshold.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data, possibly with some outliers (see ``contamination``).
            The detector computes its score parts in memory, so sparse and
            streamed X are densified (here and when scoring).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted detector.
        """
        X = self._dense(validate_input(self, X, reset=True, training=True))
        self._deviation_scale = None  # of the reference samples this fit picks
        n = X.shape[0]
        seed = self._training_seed(first_call=True)
        rng = np.random.RandomState(derive_seed(seed, 0))  # the subsamples
        n_sub = self._n_subsample(n)
        n_support = int(np.ceil(self.support_fraction * n))
        if n_support < 2:
            raise ValueError(
                f"support_fraction={self.support_fraction} keeps {n_support} "
                f"of {n} samples; at least 2 are needed. Raise "
                "support_fraction or pass more samples."
            )
        refits = n_support < n  # otherwise the first model is the one that scores
        first = ranking_autoencoder if refits else (lambda: detector_autoencoder(SCORING_EPOCHS))
        model, needs_fit = prepare_pretraining(self, self.autoencoder, first, X, seed)
        quiet = self.autoencoder is None
        first_rows = np.arange(n)
        interrupted = False
        if needs_fit:
            first_rows = np.sort(rng.choice(n, n_sub, replace=False))
            try:
                fit_pretraining(model, X[first_rows], quiet)
            except PretrainingInterrupted as stop:  # usable; the refit is skipped
                model, interrupted = stop.estimator, True
        # most normal first: the first model's reconstruction part plus the
        # squared standardised distance to the data's mean, each in IQR units
        # (in float32: it only orders the samples, and runs over all of them)
        residuals = np.abs(X - self._reconstruct(model, X.astype(np.float32, copy=False)))
        centre, spread = np.mean(X, axis=0), np.std(X, axis=0)
        spread[spread == 0] = 1.0
        parts = [
            (residuals / self._residual_scale(residuals[first_rows])).sum(axis=1),
            np.sum(((X - centre) / spread) ** 2, axis=1),
        ]
        order = np.argsort(sum(p / robust_spread(p) for p in parts), kind="stable")
        support = np.zeros(n, dtype=bool)
        support[order[:n_support]] = True
        take = np.sort(rng.choice(order[:n_support], min(n_sub, n_support), replace=False))
        if needs_fit and refits and not interrupted:
            if self.autoencoder is None:  # the default: the ranking model goes on, on the support
                refit = model.set_params(warm_start=True, max_iter=REFINE_EPOCHS)
            else:
                refit = prepare_pretraining(
                    self, self.autoencoder, detector_autoencoder, X, derive_seed(seed, 1)
                )[0]
            try:
                model = fit_pretraining(refit, X[take], quiet)
            except PretrainingInterrupted as stop:
                model, interrupted = stop.estimator, True
            if self.autoencoder is None:
                model.set_params(warm_start=False, max_iter=SCORING_EPOCHS)
        elif needs_fit:
            take = first_rows
        reference = np.sort(rng.choice(order[:n_support], min(n_sub, n_support), replace=False))

        def store():
            self.autoencoder_ = model
            self.support_ = support
            self.reference_ = X[reference]
            self.residual_scale_ = self._residual_scale(
                np.abs(X[take] - self._reconstruct(model, X[take]))
            )
            self._calibrate(X, rng)

        self._finish_fit(store, interrupted=interrupted)
        return self

    def _calibrate(self, X, rng):
        """Set ``part_scale_`` and ``offset_`` from the training samples' score parts.

        On more than ``CALIBRATION_SAMPLES`` samples the part scales (and
        the ``"auto"`` threshold, from quartiles) come from a random
        subsample of that size; a float ``contamination`` still scores
        every training sample, so that exactly that share is flagged.
        """
        n = X.shape[0]
        rows = slice(None)
        if n > CALIBRATION_SAMPLES:
            rows = np.sort(rng.choice(n, CALIBRATION_SAMPLES, replace=False))
        recon, distance = self._parts(X[rows])
        self.part_scale_ = np.array([robust_spread(recon), robust_spread(distance)])
        if self.contamination != "auto" and n > CALIBRATION_SAMPLES:
            recon, distance = self._parts(X)
        self.offset_ = self._offset(-(recon / self.part_scale_[0] + distance / self.part_scale_[1]))

    @staticmethod
    def _dense(X):
        """The score parts are computed in memory: sparse or streamed X is densified."""
        dense = as_dense(X)
        if dense is not X and not sp.issparse(X) and not np.isfinite(dense).all():
            raise non_finite_error()  # streamed: values not checked before
        return dense

    def _validated(self, X):
        return self._dense(super()._validated(X))

    def _n_subsample(self, n: int) -> int:
        if self.max_samples == "auto":
            return min(AUTO_MAX_SAMPLES, n)
        if isinstance(self.max_samples, Integral):
            return min(int(self.max_samples), n)
        return max(2, int(np.ceil(self.max_samples * n)))

    @staticmethod
    def _reconstruct(model, X):
        return model.inverse_transform(model.transform(X))

    @staticmethod
    def _residual_scale(residuals):
        """Per-feature root median square residual, shrunk toward its mean; never zero."""
        typical = np.median(residuals**2, axis=0)
        scale = np.sqrt(typical + SCALE_SHRINKAGE * typical.mean())
        floor = np.finfo(np.float32).eps * max(1.0, float(np.max(scale)))
        return np.maximum(scale, floor)

    def _offset(self, scores) -> float:
        if self.contamination == "auto":
            q1, q3 = np.percentile(scores, [25, 75])
            # scores are negated outlyingness: the fence Q3 + 1.5 IQR on
            # outlyingness becomes the score fence Q1 - 1.5 IQR
            return float(q1 - 1.5 * (q3 - q1))
        return float(np.percentile(scores, 100.0 * self.contamination))

    # -- scoring ---------------------------------------------------------------------

    def _has_distance_part(self) -> bool:
        return has_distance_part(self)

    def _neighbours(self, X):
        """Distances to each sample's neighbours among the reference samples, and their rows."""
        k = min(self.n_neighbors, self.reference_.shape[0] - 1)
        search = NearestNeighbors(n_neighbors=k + 1, metric="manhattan").fit(self.reference_)
        dist, index = kneighbors_by_index(search, X, k + 1)
        # a sample identical to a reference sample is not its own neighbour
        own = dist[:, 0] == 0
        dist = np.where(own[:, None], dist[:, 1:], dist[:, :-1])
        index = np.where(own[:, None], index[:, 1:], index[:, :-1])
        return dist, index

    def _recon_residuals(self, X):
        return np.abs(X - self._reconstruct(self.autoencoder_, X)) / self.residual_scale_

    def _parts(self, X):
        """The reconstruction and distance parts of each sample, before the part scales."""
        recon = self._recon_residuals(X).sum(axis=1)
        distance = np.zeros(X.shape[0])
        if self._has_distance_part():
            distance = self._neighbours(X)[0].mean(axis=1)
        return recon, distance

    def _contributions(self, X):
        """Per-feature (reconstruction, distance) parts, before the part scales."""
        recon = self._recon_residuals(X)
        distance = np.zeros(X.shape, dtype=np.float64)
        if self._has_distance_part():
            index = self._neighbours(X)[1]
            # the L1 distance is the sum of |offset_j|: each feature's share is
            # its mean |offset_j| over the neighbours; in chunks of rows, to
            # bound the (rows, n_neighbors, features) offsets
            for start in range(0, X.shape[0], CONTRIBUTION_CHUNK):
                rows = slice(start, start + CONTRIBUTION_CHUNK)
                offsets = X[rows, None, :] - self.reference_[index[rows]]
                distance[rows] = np.abs(offsets).mean(axis=1)
        return recon, distance

    def score_samples(self, X):
        """Normality of each sample (higher is more normal): minus its outlyingness.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            ``-(reconstruction / part_scale_[0] + distance / part_scale_[1])``,
            the row sums of ``-feature_contributions(X)``; X's float dtype.
        """
        X = self._validated(X)  # before touching fitted attributes: NotFittedError first
        recon, distance = self._parts(X)
        return -(recon / self.part_scale_[0] + distance / self.part_scale_[1]).astype(X.dtype)

    def feature_contributions(self, X):
        """Each feature's share of each sample's outlyingness.

        ``feature_contributions(X).sum(axis=1) == -score_samples(X)``: the
        score is split over the features in proportion to the mean of two
        shares, each summing to 1 over the features:

        - the feature's share of the score's parts: its scaled reconstruction
          residual and its share of the distance to the normal neighbours;
        - its share of the sample's robust deviation: how far the feature
          is from its value at the sample's robust neighbours, reference
          samples found on all but its third most different features (so a
          few corrupted values do not choose them), in units of that
          deviation's mean over the reference samples.

        A large value says that feature is what is off for that sample: out
        of its usual range, or in range but at odds with the sample's other
        features. The columns follow ``feature_names_in_`` (a DataFrame with
        those columns and X's index when ``set_output(transform="pandas")``
        is set on the detector or globally, or use
        :func:`sk_deepunsup.inspection.explain_outliers`, which names them in
        a Pipeline too).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to explain.

        Returns
        -------
        contributions : ndarray or DataFrame of shape (n_samples, n_features_in_)
            Non-negative; X's float dtype.
        """
        X_valid = self._validated(X)
        recon, distance = self._contributions(X_valid)
        parts = recon / self.part_scale_[0] + distance / self.part_scale_[1]
        total = parts.sum(axis=1, keepdims=True)
        deviation = self._robust_deviations(X_valid)
        share = 0.5 * (_row_shares(parts) + _row_shares(deviation))
        out = (share * total).astype(X_valid.dtype)
        if _get_output_config("transform", self)["dense"] == "pandas":
            import pandas as pd

            index = X.index if hasattr(X, "index") else None
            return pd.DataFrame(out, columns=self._feature_names(), index=index)
        return out

    def _robust_deviations(self, X):
        """``robust_deviations`` of X in units of their mean over the reference samples."""
        n_neighbors = max(1, self.n_neighbors)
        scale = getattr(self, "_deviation_scale", None)
        if scale is None or scale.shape != (self.n_features_in_,):
            typical = robust_deviations(
                self.reference_, self.reference_, n_neighbors, leave_self_out=True
            ).mean(axis=0)
            scale = typical + SCALE_SHRINKAGE * typical.mean()
            scale = np.maximum(scale, np.finfo(np.float32).eps)
            self._deviation_scale = scale
        return robust_deviations(X, self.reference_, n_neighbors) / scale

    def _feature_names(self):
        if hasattr(self, "feature_names_in_"):
            return list(self.feature_names_in_)
        return [f"x{i}" for i in range(self.n_features_in_)]

    def set_output(self, *, transform=None):
        """Output container of :meth:`feature_contributions`: "default", "pandas" or None.

        Parameters
        ----------
        transform : {"default", "pandas"} or None, default=None
            ``"pandas"`` returns DataFrames, ``"default"`` numpy arrays, None
            leaves the setting as it is.

        Returns
        -------
        self : object
        """
        if transform is not None:
            if transform not in ("default", "pandas"):
                raise ValueError(
                    f"set_output(transform={transform!r}): choose 'default' or 'pandas'."
                )
            self._sklearn_output_config = {"transform": transform}
        return self

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        decision : ndarray of shape (n_samples,)
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for inliers, -1 for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to classify.

        Returns
        -------
        is_inlier : ndarray of shape (n_samples,)
        """
        return np.where(self.decision_function(X) < 0, -1, 1)

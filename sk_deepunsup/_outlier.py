"""AutoencoderOutlierDetector: anomaly detection the way IsolationForest does it."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ._autoencoder import AutoencoderBase, fit_autoencoder, prepare_autoencoder
from ._base import TRAINING_CONSTRAINTS, TorchEstimatorMixin, validate_input
from ._vae import VariationalAutoencoder


def default_autoencoder() -> VariationalAutoencoder:
    """The model trained when ``autoencoder=None``."""
    return VariationalAutoencoder(
        n_components=4, hidden_layer_sizes=(64, 32), loss="mse", max_iter=100
    )


class AutoencoderOutlierDetector(OutlierMixin, TorchEstimatorMixin, BaseEstimator):
    """Outlier detection with an autoencoder: samples it explains badly are outliers.

    An autoencoder is trained on X and scores every sample: the negative
    reconstruction error for a ``DeepAutoencoder``, the evidence lower bound
    (which adds how unusual the sample's code is) for a
    ``VariationalAutoencoder``, the default. Since the training data hold the
    outliers too, the model is by default trained a second time on the
    ``support_fraction`` of samples the first model found most normal, so
    that it does not learn to explain the outliers (the idea of
    ``support_fraction`` in ``MinCovDet``). The API and sign conventions are IsolationForest's:
    ``score_samples`` is higher for more normal samples (the negative
    reconstruction error, or the ELBO for a ``VariationalAutoencoder``),
    ``decision_function = score_samples - offset_`` is negative for outliers,
    and ``predict`` returns +1 for inliers and -1 for outliers.

    Parameters
    ----------
    autoencoder : DeepAutoencoder, VariationalAutoencoder or None, default=None
        ``None`` trains a ``VariationalAutoencoder(n_components=4,
        hidden_layer_sizes=(64, 32), loss="mse", max_iter=100)``: its ELBO
        adds up squared reconstruction errors and how unusual the sample's
        code is. It was the best of the models tried on the benchmark in the
        README (real data, noisy). On data that lie close to a
        low-dimensional manifold with little noise it blurs (its unit
        variance lets the KL term win); there a ``DeepAutoencoder`` or
        ``VariationalAutoencoder(loss="gaussian")`` separates off-manifold
        points better. An unfitted one is
        cloned and trained on X; a fitted one is copied and used as is (no
        training; the threshold is set from X). This estimator's ``device`` and
        ``verbose`` override the autoencoder's, and its ``random_state``
        seeds an autoencoder that has none. Scale X first (for example in a
        ``Pipeline`` with ``StandardScaler``): reconstruction errors add up
        over features.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Expected share of outliers in the training data. A float sets
        ``offset_`` so that this share of the training samples is flagged.
        ``"auto"`` flags training samples whose score lies beyond Tukey's
        lower fence, ``Q1 - 1.5 * IQR`` of the training scores.
    support_fraction : float in (0, 1], default=0.7
        Share of the training samples, those the first model scores most
        normal, on which the final model is trained. 1.0 trains once, on all
        samples.
    random_state : int, RandomState instance or None, default=None
        Seeds an autoencoder that has no ``random_state`` of its own.
    device : str or torch.device, default="auto"
        Where the autoencoder trains and runs.
    verbose : bool or int, default=False
        Progress bar on stderr.
    n_threads : int or None, default=None
        torch threads on the CPU, passed to the autoencoder; ``None`` chooses
        by measurement (see ``DeepAutoencoder``).

    Attributes
    ----------
    autoencoder_ : DeepAutoencoder or VariationalAutoencoder
        The fitted autoencoder (the second fit, with ``support_fraction < 1``).
    support_ : ndarray of bool of shape (n_samples,)
        Training samples the final model was trained on.
    offset_ : float
        Threshold on ``score_samples``: ``decision_function`` is
        ``score_samples(X) - offset_``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.ensemble.IsolationForest : Tree-based outlier detection.

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
        contamination="auto",
        support_fraction=0.7,
        random_state=None,
        device="auto",
        verbose=False,
        n_threads=None,
    ):
        self.autoencoder = autoencoder
        self.contamination = contamination
        self.support_fraction = support_fraction
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.n_threads = n_threads

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Train the autoencoder on X and set the outlier threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, possibly with some outliers (see ``contamination``).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted detector.
        """
        X = validate_input(self, X, reset=True, training=True)
        seed = self._training_seed(first_call=True)
        autoencoder, needs_fit = prepare_autoencoder(self, X, default_autoencoder, seed)
        support = np.ones(X.shape[0], dtype=bool)
        if needs_fit:
            quiet = self.autoencoder is None
            fit_autoencoder(autoencoder, X, quiet)
            n_support = int(np.ceil(self.support_fraction * X.shape[0]))
            if n_support < X.shape[0]:
                if n_support < 2:
                    raise ValueError(
                        f"support_fraction={self.support_fraction} keeps {n_support} "
                        f"of {X.shape[0]} samples; at least 2 are needed. Raise "
                        "support_fraction or pass more samples."
                    )
                # the most normal samples: the n_support highest scores
                support = np.zeros(X.shape[0], dtype=bool)
                support[np.argsort(-autoencoder.score_samples(X), kind="stable")[:n_support]] = True
                fit_autoencoder(autoencoder, X[support], quiet)
        self.autoencoder_ = autoencoder
        self.support_ = support
        self.offset_ = self._offset(autoencoder.score_samples(X))
        return self

    def _offset(self, scores) -> float:
        if self.contamination == "auto":
            q1, q3 = np.percentile(scores, [25, 75])
            # scores are negated errors: the error fence Q3 + 1.5 IQR becomes
            # the score fence Q1 - 1.5 IQR
            return float(q1 - 1.5 * (q3 - q1))
        return float(np.percentile(scores, 100.0 * self.contamination))

    def score_samples(self, X):
        """Normality of each sample: the autoencoder's score (higher is more normal).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            The negative reconstruction error (``DeepAutoencoder``) or the
            ELBO (``VariationalAutoencoder``).
        """
        X = self._validated(X)  # before touching autoencoder_: NotFittedError first
        return self.autoencoder_.score_samples(X)

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


"""Pretraining helpers shared by the estimators built on an autoencoder."""

from __future__ import annotations

import copy
import warnings

from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from ._nn import TrainingInterrupted


def prepare_autoencoder(owner, X, default, seed: int):
    """The autoencoder that a clusterer or detector (``owner``) builds on.

    ``owner.autoencoder`` is None (``default()`` is used), an unfitted
    autoencoder (cloned), or a fitted one (deep-copied, never changed, and
    checked against X's width). Unfitted ones get the owner's ``device``,
    ``verbose`` and ``n_threads``, and ``seed`` when they have no
    ``random_state``.

    Returns
    -------
    autoencoder : AutoencoderBase
    needs_fit : bool
    """
    given = owner.autoencoder
    if given is not None and hasattr(given, "module_"):
        if given.n_features_in_ != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but the fitted autoencoder "
                f"expects {given.n_features_in_}."
            )
        return copy.deepcopy(given), False
    autoencoder = clone(default() if given is None else given)
    overrides = {
        "device": owner.device,
        "verbose": owner.verbose,
        "n_threads": owner.n_threads,
    }
    if autoencoder.random_state is None:
        overrides["random_state"] = seed
    return autoencoder.set_params(**overrides), True


class PretrainingInterrupted(Exception):
    """Ctrl-C ended a pretraining; ``autoencoder`` is usable but was not cached."""

    def __init__(self, autoencoder):
        super().__init__("pretraining was interrupted")
        self.autoencoder = autoencoder


def fit_autoencoder(autoencoder, X, quiet: bool = False):
    """Fit ``autoencoder`` on X and return it (the unit that ``memory`` caches).

    ``quiet`` hides its ConvergenceWarning: a default network trains for a
    fixed budget by design. If Ctrl-C interrupts the fit, the warning is
    passed on and :class:`PretrainingInterrupted` raised with the usable,
    partly trained autoencoder (an exception, so ``memory`` does not cache it).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if quiet:
            warnings.simplefilter("ignore", ConvergenceWarning)
        autoencoder.fit(X)
    interrupted = False
    for w in caught:
        interrupted |= issubclass(w.category, TrainingInterrupted)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if interrupted:
        raise PretrainingInterrupted(autoencoder)
    return autoencoder

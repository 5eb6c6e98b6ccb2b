"""Pretraining the inner representation that the clusterer and the detector build on.

An autoencoder (:func:`prepare_autoencoder`, :func:`fit_autoencoder`), a
neighbour embedding of X, or N2D (a neighbour embedding of an image
autoencoder's code): :func:`pretrain_representation`. An interrupted
pretraining raises :class:`PretrainingInterrupted`, so ``memory=`` never caches it.
"""

from __future__ import annotations

import copy
import math
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


#: Pretraining budget of the clusterer's default autoencoder: this many sample
#: visits (epochs x samples), at most 150 and at least 10 epochs. Data sets of
#: up to 13 334 samples get 150 epochs; from there to 200 000 samples
#: pretraining takes about the same time whatever the size (fewer epochs of
#: more samples, as many optimisation steps), and it grows linearly beyond.
PRETRAINING_SAMPLES = 2_000_000


def pretraining_epochs(n_samples: int) -> int:
    """Epochs the clusterer's default autoencoder pretrains for on ``n_samples`` samples."""
    return int(min(150, max(10, math.ceil(PRETRAINING_SAMPLES / n_samples))))


def default_autoencoder(n_samples: int):
    """The autoencoder a clusterer pretrains with ``autoencoder=None``."""
    from ._autoencoder import DeepAutoencoder

    return DeepAutoencoder(
        n_components=10,
        hidden_layer_sizes=(500, 500),
        max_iter=pretraining_epochs(n_samples),
        tol=1e-5,
    )


def pretrain_representation(owner, X, seed: int):
    """Phase 1 of a clusterer (``owner``): its representation, pretrained on X.

    The neighbour embedding (``owner._uses_neighbor_embedding()``), or the
    autoencoder (the fitted one given, or one pretrained here), followed, for
    an image autoencoder with ``embedding="auto"``, by the neighbour embedding
    of its code (N2D). Fits go through ``owner._cached`` (``memory``).

    Returns
    -------
    representation : estimator
        Its ``module_.encoder`` maps X to the space the clusters live in.
    reconstruction_weight : float
        The refinement's weight of the decoder's loss (0: DEC, no decoder).
    loss : str
        That reconstruction loss.
    interrupted : bool
        Whether Ctrl-C ended a pretraining (the representation is usable).
    """
    from ._code_embedding import pretrain_code_embedding, uses_code_neighbors
    from ._neighbor_embedding import fit_neighbor_embedding, pretrain_neighbor_embedding

    cached_embedding = owner._cached(fit_neighbor_embedding)

    def embed(_, data, seed_):
        return pretrain_neighbor_embedding(owner, data, seed_, cached_embedding)

    n = X.shape[0]
    if owner._uses_neighbor_embedding():
        owner._say(f"pretraining the neighbour embedding on {n} samples")
        try:
            embedding, interrupted = embed(owner, X, seed), False
        except PretrainingInterrupted as stop:  # later phases run as briefly as they can
            embedding, interrupted = stop.autoencoder, True
        weight = owner.reconstruction_weight if embedding.module_.decoder is not None else 0.0
        return embedding, weight, "mse", interrupted
    autoencoder, needs_fit = prepare_autoencoder(owner, X, lambda: default_autoencoder(n), seed)
    if needs_fit:
        if owner.memory is not None and owner.random_state is None:
            warnings.warn(
                "memory caches the pretrained autoencoder keyed on its seed, and "
                "random_state=None draws a new seed every fit, so nothing would be "
                "reused; set random_state to an int.",
                UserWarning,
            )
        owner._say(
            f"pretraining the autoencoder for up to {autoencoder.max_iter} epochs on {n} samples"
        )
        pretrain = owner._cached(fit_autoencoder)
        try:
            autoencoder = pretrain(autoencoder, X, quiet=owner.autoencoder is None)
        except PretrainingInterrupted as stop:
            return stop.autoencoder, owner.reconstruction_weight, stop.autoencoder.loss, True
    if not uses_code_neighbors(owner):
        return autoencoder, owner.reconstruction_weight, autoencoder.loss, False
    owner._say(f"pretraining the neighbour embedding of the code of {n} samples")
    try:
        pair = pretrain_code_embedding(owner, X, autoencoder, seed, embed)
    except PretrainingInterrupted:  # the autoencoder alone, as when it was interrupted
        return autoencoder, owner.reconstruction_weight, autoencoder.loss, True
    return pair, 0.0, "mse", False  # no decoder: DEC

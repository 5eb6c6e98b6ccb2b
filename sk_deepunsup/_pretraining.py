"""Pretraining: the one home of the inner representation the clusterer and the detector build on.

- What a composite estimator starts from: :func:`prepare_pretraining` (the
  user's fitted or unfitted estimator, or a default) and
  :func:`fit_pretraining` (the unit that ``memory=`` caches; an interrupted
  fit raises :class:`PretrainingInterrupted`, so it is never cached).
- The defaults: the clusterer's autoencoder (:func:`clustering_autoencoder`)
  and neighbour embedding (:func:`clustering_embedding`), the detector's
  models (:func:`detector_autoencoder`, :func:`ranking_autoencoder`).
- The clusterer's three routes: a neighbour embedding of X
  (:func:`pretrain_neighbor_embedding`), an autoencoder, or N2D, a neighbour
  embedding of an image autoencoder's code (:func:`pretrain_code_embedding`);
  :func:`pretrain_representation` chooses among them.
"""

from __future__ import annotations

import copy
import warnings

from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from ._autoencoder import DeepAutoencoder
from ._base import budget_epochs
from ._code_embedding import CodeNeighborEmbedding
from ._neighbor_embedding import NeighborEmbedding
from ._nn import TrainingInterrupted
from ._representation import apply_module
from ._tensors import infer
from ._vae import VariationalAutoencoder


def prepare_pretraining(owner, given, default, X, seed: int):
    """The estimator that a clusterer or detector (``owner``) pretrains on X.

    ``given`` (the owner's ``autoencoder`` or ``embedding`` parameter) is None
    or a string (``default()`` is used), an unfitted estimator (cloned), or a
    fitted one (deep-copied, never changed, and checked against X's width).
    Unfitted ones get the owner's ``device``, ``verbose`` and ``n_threads``,
    and ``seed`` when they have no ``random_state``.

    Returns
    -------
    estimator : estimator
    needs_fit : bool
    """
    if given is not None and not isinstance(given, str) and hasattr(given, "module_"):
        kind = "NeighborEmbedding" if isinstance(given, NeighborEmbedding) else "autoencoder"
        if given.n_features_in_ != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but the fitted {kind} "
                f"expects {given.n_features_in_}."
            )
        return copy.deepcopy(given), False
    estimator = clone(default() if given is None or isinstance(given, str) else given)
    overrides = {
        "device": owner.device,
        "verbose": owner.verbose,
        "n_threads": owner.n_threads,
    }
    if estimator.random_state is None:
        overrides["random_state"] = seed
    return estimator.set_params(**overrides), True


class PretrainingInterrupted(Exception):
    """Ctrl-C ended a pretraining; ``estimator`` is usable but was not cached."""

    def __init__(self, estimator):
        super().__init__("pretraining was interrupted")
        self.estimator = estimator


def fit_pretraining(estimator, X, quiet: bool = False):
    """Fit ``estimator`` on X and return it (a module-level function ``memory`` caches).

    ``quiet`` hides its ConvergenceWarning: a default network trains for a
    fixed budget by design. If Ctrl-C interrupts the fit, the warning is
    passed on and :class:`PretrainingInterrupted` raised with the usable,
    partly trained estimator (an exception, so ``memory`` does not cache it).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if quiet:
            warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X)
    interrupted = False
    for w in caught:
        interrupted |= issubclass(w.category, TrainingInterrupted)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if interrupted:
        raise PretrainingInterrupted(estimator)
    return estimator


#: Pretraining budget of the clusterer's default autoencoder: this many sample
#: visits (epochs x samples), at most 150 and at least 10 epochs. Data sets of
#: up to 13 334 samples get 150 epochs; from there to 200 000 samples
#: pretraining takes about the same time whatever the size (fewer epochs of
#: more samples, as many optimisation steps), and it grows linearly beyond.
PRETRAINING_SAMPLES = 2_000_000


def pretraining_epochs(n_samples: int) -> int:
    """Epochs the clusterer's default autoencoder pretrains for on ``n_samples`` samples."""
    return budget_epochs(PRETRAINING_SAMPLES, n_samples, 10, 150)


def clustering_autoencoder(n_samples: int) -> DeepAutoencoder:
    """The autoencoder a clusterer pretrains with ``autoencoder=None``."""
    return DeepAutoencoder(
        n_components=10,
        hidden_layer_sizes=(500, 500),
        max_iter=pretraining_epochs(n_samples),
        tol=1e-5,
    )


#: The image route's conv autoencoder (``image_shape`` on the clusterer):
#: this many sample visits, within ``IMAGE_PRETRAINING_EPOCHS``. Its code
#: only has to bring images of one kind near each other for the neighbour
#: graph (N2D), not to reconstruct them finely, so a narrow network trains
#: briefly. Its batches are small (64): a convolution's cost on the CPU
#: follows its batch, and the code's quality the number of steps (10 000
#: MNIST images, 10 epochs, channels (16, 32, 64): N2D NMI 0.778 with
#: batches of 64 against 0.729 with batches of 256, at about the same time).
IMAGE_PRETRAINING_SAMPLES = 100_000
IMAGE_PRETRAINING_EPOCHS = (2, 30)
IMAGE_CONV_CHANNELS = (16, 32, 64)


def image_autoencoder(n_samples: int, image_shape) -> DeepAutoencoder:
    """The conv autoencoder a clusterer pretrains with ``image_shape`` and ``autoencoder=None``."""
    return DeepAutoencoder(
        n_components=10,
        image_shape=tuple(image_shape),
        conv_channels=IMAGE_CONV_CHANNELS,
        batch_size=64,
        max_iter=budget_epochs(IMAGE_PRETRAINING_SAMPLES, n_samples, *IMAGE_PRETRAINING_EPOCHS),
        tol=0.0,
    )


def clustering_embedding() -> NeighborEmbedding:
    """The neighbour embedding a clusterer pretrains with ``embedding="neighbors"``.

    UMAP's loss with ``min_dist=0`` packs each cluster tightly (the
    contrastive ``"infonce"`` loss split digits' clusters worse), with the
    negatives and noise that loss takes by default (10, none); 10
    dimensions, as N2D; 15 neighbours (UMAP's default: better than 10 on
    wine and iris); tanh hidden units: the smooth, bounded map lays the
    clusters out alike from every seed, where ReLU's layout varies with it
    (digits NMI 0.90 over 20 seeds, against 0.88 with ReLU).
    """
    return NeighborEmbedding(
        n_components=10, n_neighbors=15, loss="umap", min_dist=0.0, activation="tanh"
    )


#: Epochs of the detector's default first model, which only ranks the
#: samples: on the ODDS and bundled tasks (seeds 0-1) it ranks as well as 50
#: epochs do (mean ROC AUC 0.966 both) in less than half their time.
RANKING_EPOCHS = 20


def detector_autoencoder(max_iter: int = 40) -> VariationalAutoencoder:
    """The model a detector trains with ``autoencoder=None``.

    Full batches of the (at most 512-row) subsample at a step size of 1e-2
    for at most ``max_iter`` epochs: :data:`RANKING_EPOCHS` for the first
    one (:func:`ranking_autoencoder`), which the detector then trains on
    for more epochs on the support (40 in all), or 40 when it scores alone.
    """
    return VariationalAutoencoder(
        n_components=4,
        hidden_layer_sizes=(64, 32),
        loss="mse",
        batch_size=1024,
        learning_rate_init=1e-2,
        max_iter=max_iter,
    )


def ranking_autoencoder() -> VariationalAutoencoder:
    """The detector's default first model: it only ranks the samples to choose the support."""
    return detector_autoencoder(max_iter=RANKING_EPOCHS)


def pretrain_neighbor_embedding(owner, X, seed: int, fit=fit_pretraining):
    """The fitted neighbour embedding that a clusterer (``owner``) refines.

    ``owner.embedding`` is a string (:func:`clustering_embedding`), an
    unfitted :class:`NeighborEmbedding` (cloned, fitted on X) or a fitted one
    (copied, never changed). ``fit`` lets the owner cache the fit with
    ``memory``.

    Returns
    -------
    embedding : NeighborEmbedding
        Its ``module_.encoder`` maps X to the space the clusters live in;
        ``module_.decoder`` is None unless it was trained with a
        reconstruction term.
    """
    embedding, needs_fit = prepare_pretraining(owner, owner.embedding, clustering_embedding, X, seed)
    return fit(embedding, X) if needs_fit else embedding


def uses_neighbor_embedding(clusterer) -> bool:
    """Whether ``clusterer`` clusters in a neighbour embedding of X (its ``embedding``,
    ``autoencoder`` and ``image_shape``)."""
    if isinstance(clusterer.embedding, NeighborEmbedding):
        return True
    if clusterer.embedding == "auto":
        return clusterer.autoencoder is None and clusterer.image_shape is None
    return clusterer.embedding == "neighbors"


def uses_code_neighbors(clusterer) -> bool:
    """Whether ``clusterer`` takes the N2D route: ``embedding="auto"`` and an image
    autoencoder (given, or the default one for ``image_shape``)."""
    embedding, autoencoder = clusterer.embedding, clusterer.autoencoder
    if not isinstance(embedding, str) or embedding != "auto":
        return False
    if autoencoder is None:
        return clusterer.image_shape is not None
    return getattr(autoencoder, "image_shape", None) is not None


def default_autoencoder(clusterer, n_samples: int):
    """The autoencoder a clusterer pretrains with ``autoencoder=None``: convolutional
    with its ``image_shape``, else the MLP."""
    if clusterer.image_shape is not None:
        return image_autoencoder(n_samples, clusterer.image_shape)
    return clustering_autoencoder(n_samples)


def pretrain_code_embedding(clusterer, X, autoencoder, seed: int, fit=fit_pretraining):
    """The neighbour embedding of ``autoencoder``'s code of X, paired with it (N2D)."""
    code = infer(autoencoder.encoder_, X, apply_module, clusterer.n_threads)
    embedding = pretrain_neighbor_embedding(clusterer, code, seed, fit)
    return CodeNeighborEmbedding.from_fitted(autoencoder, embedding)


def pretrain_representation(owner, X, seed: int, cached, say):
    """Phase 1 of a clusterer (``owner``): its representation, pretrained on X.

    The neighbour embedding (:func:`uses_neighbor_embedding`), or the
    autoencoder (the fitted one given, or one pretrained here), followed, for
    an image autoencoder with ``embedding="auto"``, by the neighbour embedding
    of its code (N2D). Fits go through ``cached(fit_pretraining)`` (the
    owner's ``memory``); ``say(message)`` reports each phase (``verbose``).

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
    fit = cached(fit_pretraining)
    n = X.shape[0]
    if uses_neighbor_embedding(owner):
        say(f"pretraining the neighbour embedding on {n} samples")
        try:
            embedding, interrupted = pretrain_neighbor_embedding(owner, X, seed, fit), False
        except PretrainingInterrupted as stop:  # later phases run as briefly as they can
            embedding, interrupted = stop.estimator, True
        weight = owner.reconstruction_weight if embedding.module_.decoder is not None else 0.0
        return embedding, weight, "mse", interrupted
    autoencoder, needs_fit = prepare_pretraining(
        owner, owner.autoencoder, lambda: default_autoencoder(owner, n), X, seed
    )
    interrupted = False
    if needs_fit:
        if owner.memory is not None and owner.random_state is None:
            warnings.warn(
                "memory caches the pretrained autoencoder keyed on its seed, and "
                "random_state=None draws a new seed every fit, so nothing would be "
                "reused; set random_state to an int.",
                UserWarning,
            )
        say(
            f"pretraining the autoencoder for up to {autoencoder.max_iter} epochs on {n} samples"
        )
        try:
            autoencoder = fit(autoencoder, X, quiet=owner.autoencoder is None)
        except PretrainingInterrupted as stop:
            autoencoder, interrupted = stop.estimator, True
    if interrupted or not uses_code_neighbors(owner):
        return autoencoder, owner.reconstruction_weight, _decoder_loss(autoencoder), interrupted
    say(f"pretraining the neighbour embedding of the code of {n} samples")
    try:
        pair = pretrain_code_embedding(owner, X, autoencoder, seed, fit)
    except PretrainingInterrupted:  # the autoencoder alone, as when it was interrupted
        return autoencoder, owner.reconstruction_weight, _decoder_loss(autoencoder), True
    return pair, 0.0, "mse", False  # no decoder: DEC


def refined_inputs(representation, X, n_threads):
    """The rows and the network a clusterer refines, when a fixed first stage comes first.

    A neighbour embedding with a fixed input projection: the projected rows
    and the layers after it. The N2D pair: the autoencoder's code and the
    neighbour embedding's network; the autoencoder stays as pretrained (as
    in N2D), and each refinement step costs an MLP's pass, not a conv
    net's (on 10 000 MNIST images that phase took 26 of the fit's 62 CPU
    seconds when it tuned the conv encoder too). None: refine the whole
    encoder on X.
    """
    if isinstance(representation, NeighborEmbedding):
        return representation.projected_inputs(X)
    if isinstance(representation, CodeNeighborEmbedding):
        code = infer(representation.autoencoder.encoder_, X, apply_module, n_threads)
        return code, representation.embedding.encoder_
    return None


def _decoder_loss(autoencoder) -> str:
    """The refinement's reconstruction loss: a VAE's Gaussian decoder emits a mean (``"mse"``)."""
    return "mse" if autoencoder.loss == "gaussian" else autoencoder.loss

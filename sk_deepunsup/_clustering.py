"""DeepEmbeddingClusterer: deep embedded clustering (DEC) and its IDEC variant."""

from __future__ import annotations

import functools
import math
import sys
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import pairwise_distances_argmin, silhouette_score
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_memory

from ._autoencoder import DeepAutoencoder
from ._vae import VariationalAutoencoder
from ._neighbor_embedding import NeighborEmbedding
from ._base import TRAINING_CONSTRAINTS, TorchEstimatorMixin, budget_epochs
from ._devices import make_generator, resolve_device
from ._tensors import infer, make_source
from ._validation import validate_input
from ._interrupts import restore_on_interrupt
from ._nn import (
    ClusteringAutoencoder,
    SoftAssignment,
    distributed,
    TargetUpdater,
    clustering_objective,
    snapshot,
    student_t_assignment,
)
from ._centers import initial_centers
from ._images import resolve_image_shape
from ._code_embedding import place_on
from ._pretraining import pretrain_representation, refined_inputs
from ._representation import RepresentationMixin, apply_module, frozen_copy

#: Rows scored by :meth:`DeepEmbeddingClusterer.score` (a fixed subsample beyond it).
SCORE_SAMPLE_SIZE = 4000

#: ``max_iter="auto"``: the refinement's budget in sample visits, within
#: ``REFINEMENT_EPOCHS``. On 20 Newsgroups (18 821 documents: 27 epochs), whose
#: labels never settle on ``tol``, it gives the NMI of 100 epochs in a third of the time.
REFINEMENT_SAMPLES = 500_000
REFINEMENT_EPOCHS = (10, 100)


def refinement_epochs(n_samples: int) -> int:
    """Epochs of the clusterer's refinement with ``max_iter="auto"`` on ``n_samples`` samples."""
    return budget_epochs(REFINEMENT_SAMPLES, n_samples, *REFINEMENT_EPOCHS)


class DeepEmbeddingClusterer(
    RepresentationMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    ClusterMixin,
    TorchEstimatorMixin,
    BaseEstimator,
):
    """Deep embedded clustering: DEC (Xie et al., 2016) and IDEC (Guo et al., 2017).

    An autoencoder is pretrained on X; cluster centres are initialised in its
    embedding (k-means, or any scikit-learn clusterer given as ``init``); then
    the encoder and the centres are trained together to minimise
    ``KL(P || Q)``, where Q are Student's t soft assignments of the embedded
    samples to the centres and P is a sharpened target computed from Q over
    the **whole** data set every ``update_interval`` epochs. Training stops
    when fewer than ``tol`` of the samples changed cluster between two target
    updates, or after ``max_iter`` epochs (by default a budget that stops
    growing with the data size). With ``reconstruction_weight > 0``
    the decoder's reconstruction loss is kept in the objective (IDEC), which
    preserves the embedding's local structure.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    autoencoder : DeepAutoencoder, VariationalAutoencoder or None, default=None
        ``None`` pretrains a ``DeepAutoencoder(n_components=10,
        hidden_layer_sizes=(500, 500))`` for 150 epochs or 2 million sample
        visits, whichever is fewer (at least 10 epochs), so pretraining time
        stops growing with the data between 13 334 and 200 000 samples. An
        unfitted one is cloned and pretrained on X with its parameters. A
        fitted one is copied and used as is (it is never changed); note that
        ``clone``, and so ``GridSearchCV``, turns it back into an unfitted
        one, pretrained again in every fit (use ``memory`` to pretrain once
        per fold). This estimator's ``device``, ``verbose``
        and ``n_threads`` override the autoencoder's, and its
        ``random_state`` seeds an autoencoder that has none.
    embedding : {"auto", "neighbors", "autoencoder"} or NeighborEmbedding, \
default="auto"
        The representation pretrained before clustering. ``"neighbors"``: a
        :class:`NeighborEmbedding` of X (10 dimensions, UMAP's loss with
        ``min_dist=0``, tanh hidden units), in which distances mirror X's
        neighbourhoods; the clusters are initialised in it and refined by
        DEC's KL loss (the N2D idea, with a network: new samples need no
        refit).
        ``"autoencoder"``: the autoencoder route (DEC/IDEC) with
        ``autoencoder``. A ``NeighborEmbedding`` instance is used like
        ``autoencoder`` (unfitted: cloned and fitted on X; fitted: copied).
        ``"auto"``: ``"autoencoder"`` when ``autoencoder`` is given, else
        ``"neighbors"``; but with an image autoencoder (its ``image_shape``
        set, or this estimator's with no ``autoencoder``), the neighbour embedding is fitted to its code and chained to
        its encoder, and clustering runs there (N2D; the refinement tunes
        the embedding's network, the autoencoder stays as pretrained). A
        neighbour embedding has no decoder unless its
        ``reconstruction_weight > 0``, so ``reconstruction_weight`` below
        only applies when it has one.
    alpha : float > 0, default=1.0
        Degrees of freedom of the Student's t kernel of the soft assignments.
    reconstruction_weight : float >= 0, default=1.0
        Weight of the reconstruction loss next to the clustering loss:
        0 gives DEC, a positive value IDEC.
    init : "k-means" or clusterer, default="k-means"
        How the initial clusters are found in the pretrained embedding:
        k-means with ``n_init`` restarts, or any estimator with
        ``fit_predict`` (its ``n_clusters`` and, if unset, ``random_state``
        are set from this estimator); centres are then the per-cluster means
        of the embedding.
    n_init : int, default=20
        Restarts of k-means when ``init="k-means"``.
    update_interval : float > 0, default=3.0
        Epochs between target-distribution updates (a fraction of an epoch
        is allowed; at least one batch). Each update reads the whole data
        set once, so an interval in epochs keeps its cost a fixed share of
        training whatever the data size.
    tol : float >= 0, default=1e-3
        Stop when the share of samples whose label changed between two
        consecutive target updates falls below ``tol``.
    max_iter : int or "auto", default="auto"
        Maximum number of epochs of the clustering phase. ``"auto"``: 100
        epochs or 500 000 sample visits, whichever is fewer, and at least 10
        epochs; a fixed budget, spent without a ``ConvergenceWarning``
        (``converged_`` says whether ``tol`` stopped training). An int is
        used as given, with a warning when it runs out before ``tol``.
    batch_size : int or "auto", default=256
        Mini-batch size of the clustering phase (``"auto"``: ``min(256,
        n_samples)``).
    learning_rate_init : float > 0, default=1e-3
        Adam's step size in the clustering phase.
    memory : str, joblib.Memory or None, default=None
        Caches the pretrained autoencoder, keyed on the data and the
        autoencoder's parameters: a grid search over ``n_clusters`` then
        pretrains once per fold. The key includes the seed, so it needs an
        int ``random_state`` (a warning says so otherwise). An interrupted
        pretraining is not cached.
    image_shape : tuple of int or None, default=None
        ``(height, width)`` or ``(channels, height, width)`` when each row of
        X is one image, flattened in C order, channels first (one entry may
        be -1, inferred from X's width). With ``autoencoder=None`` the
        default autoencoder is then convolutional (strided convolutions of
        16, 32 and 64 channels, about 10 epochs of 10 000 images), and with
        ``embedding="auto"`` the clusters are found in a neighbour embedding
        of its code (N2D): new images need no refit. Ignored when
        ``autoencoder`` is given (set ``image_shape`` on it instead) or with
        ``embedding="neighbors"``.
    random_state : int, RandomState instance or None, default=None
        Seeds pretraining (for an autoencoder without a ``random_state``),
        initialisation and training. Neither torch's nor numpy's global random
        state is used or changed.
    device : str or torch.device, default="auto"
        Where pretraining and clustering run: ``"auto"``, ``"cpu"``,
        ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    verbose : bool or int, default=False
        Say each phase (pretraining, initialisation, refinement) and show
        progress bars, on stderr.
    n_threads : int, None or "adaptive", default=None
        torch threads on the CPU, as in :class:`~sk_deepunsup.DeepAutoencoder`: ``None``
        chooses from the network's size, never from the load, so results
        are reproducible; an int fixes the count; ``"adaptive"`` times.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample; equal to ``predict(X)``.
    cluster_centers_ : ndarray of shape (n_clusters, n_components)
        Centres in the embedding.
    autoencoder_ : DeepAutoencoder, NeighborEmbedding or CodeNeighborEmbedding
        The pretrained model after clustering (its encoder, and with IDEC its
        decoder, fine-tuned); on the N2D route (see ``embedding``) a pair
        holding the autoencoder (``.autoencoder``) and the neighbour
        embedding of its code (``.embedding``).
    n_iter_ : int
        Epochs of the clustering phase.
    converged_ : bool
        Whether training stopped on ``tol`` rather than on the epoch budget
        (``max_iter``).
    interrupted_ : bool
        Whether Ctrl-C (KeyboardInterrupt) ended the fit early; the model is
        usable all the same.
    loss_curve_ : list of float
        Mean clustering loss of each epoch.
    label_changes_ : list of float
        Share of samples that changed cluster at each target update.
    label_change_epochs_ : ndarray of shape (n_target_updates,)
        Epoch of the refinement (fractional) at which each of ``label_changes_``
        was measured; :class:`~sk_deepunsup.inspection.LossCurveDisplay` plots them there.
    device_ : str
        The device the network lives on.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.cluster.KMeans : Clustering in the input space.
    DeepAutoencoder : The embedding this clusterer refines.

    References
    ----------
    J. Xie, R. Girshick, A. Farhadi. "Unsupervised Deep Embedding for
    Clustering Analysis", ICML 2016.
    X. Guo, L. Gao, X. Liu, J. Yin. "Improved Deep Embedded Clustering with
    Local Structure Preservation", IJCAI 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_blobs
    >>> from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer
    >>> X, _ = make_blobs(n_samples=300, centers=3, random_state=0)
    >>> ae = DeepAutoencoder(n_components=2, hidden_layer_sizes=(32,), max_iter=50)
    >>> dec = DeepEmbeddingClusterer(n_clusters=3, autoencoder=ae, random_state=0)
    >>> labels = dec.fit_predict(X)
    >>> labels.shape, dec.cluster_centers_.shape
    ((300,), (3, 2))
    >>> bool(np.all(dec.predict(X) == labels))
    True
    """

    # the refinement stops when the labels settle, after a number of steps:
    # under torchrun "auto" stays the global batch, each rank computing a share
    _auto_batch_per_rank = False

    _parameter_constraints: dict = {
        **TRAINING_CONSTRAINTS,
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "autoencoder": [None, DeepAutoencoder, VariationalAutoencoder],
        "embedding": [StrOptions({"auto", "neighbors", "autoencoder"}), NeighborEmbedding],
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "reconstruction_weight": [Interval(Real, 0, None, closed="left")],
        "init": [StrOptions({"k-means"}), HasMethods(["fit_predict"])],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "update_interval": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "memory": [None, str, HasMethods(["cache"])],
        "image_shape": [None, tuple, list],
    }

    _fitted_attribute = "cluster_centers_"

    def __init__(
        self,
        n_clusters=8,
        *,
        autoencoder=None,
        embedding="auto",
        alpha=1.0,
        reconstruction_weight=1.0,
        init="k-means",
        n_init=20,
        update_interval=3.0,
        tol=1e-3,
        max_iter="auto",
        batch_size=256,
        learning_rate_init=1e-3,
        memory=None,
        image_shape=None,
        random_state=None,
        device="auto",
        verbose=False,
        n_threads=None,
    ):
        self.n_clusters = n_clusters
        self.autoencoder = autoencoder
        self.embedding = embedding
        self.alpha = alpha
        self.reconstruction_weight = reconstruction_weight
        self.init = init
        self.n_init = n_init
        self.update_interval = update_interval
        self.tol = tol
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.memory = memory
        self.image_shape = image_shape
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.n_threads = n_threads

    # -- fitting ---------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=False)
    @restore_on_interrupt
    def fit(self, X, y=None):
        """Pretrain the autoencoder, initialise the clusters, and refine them.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data, scaled (e.g. ``MinMaxScaler`` or ``StandardScaler``).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_input(self, X, reset=True, training=True)
        resolve_image_shape(self.image_shape, X.shape[1])  # a clear error on a mismatch
        n_samples = X.shape[0]
        if self.n_clusters > n_samples:
            raise ValueError(
                f"n_clusters={self.n_clusters} must be <= n_samples={n_samples}; "
                "use fewer clusters or more samples."
            )
        device = resolve_device(self.device)
        seed = self._training_seed(first_call=True)
        pretrained = pretrain_representation(self, X, seed, cached=self._cached, say=self._say)
        autoencoder, reconstruction_weight, reconstruction, self.interrupted_ = pretrained
        decoder = place_on(autoencoder, device)

        self._say(f"initialising {self.n_clusters} clusters in the embedding")
        # a fixed first stage (a neighbour embedding's input projection, N2D's
        # autoencoder) is applied once, and the network after it refined
        split = refined_inputs(autoencoder, X, self.n_threads)
        X_fit, encoder = (X, autoencoder.encoder_) if split is None else split
        embedding = distributed.map_rows(  # each rank its share, under data-parallel fits
            lambda rows: infer(encoder, rows, apply_module, self.n_threads), X_fit
        )
        # k-means once, on rank 0, under data-parallel training: all start alike
        centers = distributed.on_main(lambda: self._initial_centers(embedding, seed))

        module = ClusteringAutoencoder(
            encoder, decoder, torch.as_tensor(centers, dtype=torch.float32)
        ).to(device)
        initial = snapshot(module)
        history, updater, steps_per_epoch = self._refine(
            module, X_fit, reconstruction_weight, reconstruction, seed, device
        )

        def store():
            proba, centers = self._final_assignment(module, X_fit, initial, embedding)
            self.autoencoder_ = autoencoder  # its module_ holds the fine-tuned networks
            self.cluster_centers_ = centers
            self.device_ = str(device)
            self.n_iter_ = history.n_iter
            self.converged_ = updater.converged
            self.loss_curve_ = history.loss
            self.label_changes_ = updater.label_changes
            self.label_change_epochs_ = np.asarray(updater.change_steps) / steps_per_epoch
            self.labels_ = proba.argmax(axis=1)

        # the updater stops training on tol, so history.stopped_early covers it
        self._finish_fit(
            store, interrupted=self.interrupted_ or history.interrupted, history=history
        )
        self._warn_empty_clusters()
        return self

    def _epochs_are_a_budget(self) -> bool:
        return self.max_iter == "auto"  # a budget by design, spent without a warning

    def _cached(self, func):
        """``func`` through the ``memory`` cache (rank 0's, under data-parallel fits)."""
        return distributed.cached(check_memory(self.memory).cache(func), func)

    def _say(self, message: str) -> None:
        if self.verbose and distributed.is_main():
            print(f"{type(self).__name__}: {message}", file=sys.stderr, flush=True)

    def _refine(self, module, X, reconstruction_weight, loss, seed, device):
        """Phase 3: DEC/IDEC self-training of the encoder and the centres."""
        data = make_source(X, device, training=True)
        batch_size = self._resolve_batch_size(data.n_samples)
        steps_per_epoch = math.ceil(data.n_samples / batch_size)
        interval = max(1, round(self.update_interval * steps_per_epoch))
        max_iter = self.max_iter
        if max_iter == "auto":
            max_iter = refinement_epochs(data.n_samples)
        updater = TargetUpdater(data, self.alpha, interval, self.tol)
        params = [*module.encoder.parameters(), module.centers]
        if reconstruction_weight:
            params += list(module.decoder.parameters())
        trainer = self._trainer(
            module,
            clustering_objective(updater, self.alpha, reconstruction_weight, loss),
            generator=make_generator(seed, device),
            batch_size=batch_size,
            max_iter=0 if self.interrupted_ else max_iter,
            params=params,
            n_iter_no_change=None,
            shuffle=True,
            callbacks=[updater],
            with_index=True,
        )
        if not self.interrupted_:
            self._say(
                f"refining clusters ({'IDEC' if reconstruction_weight else 'DEC'}) "
                f"for up to {max_iter} epochs, targets updated every "
                f"{interval} batches"
            )
        history = trainer.fit(data)  # on_train_begin refreshes P even with max_iter=0
        return history, updater, steps_per_epoch

    def _initial_centers(self, embedding, seed) -> np.ndarray:
        centers, self.interrupted_ = initial_centers(
            embedding, self.n_clusters, self.init, self.n_init, seed, self.interrupted_
        )
        return centers

    def _final_assignment(self, module, X_fit, initial, embedding):
        """The centres and the soft assignments of ``X_fit`` after refinement, or,
        if refinement emptied clusters that the initial k-means clustering filled,
        those of the state before it (``module`` is restored; its encoder is the
        representation's)."""

        def assign():
            centers = module.centers.detach().cpu().numpy().astype(np.float64)
            forward = functools.partial(self._soft_assign, centers=centers)
            proba = distributed.map_rows(
                lambda rows: infer(module.encoder, rows, forward, self.n_threads), X_fit
            )
            return proba, centers

        proba, centers = assign()
        found = len(np.unique(proba.argmax(axis=1)))
        start = initial["centers"].cpu().numpy().astype(np.float64)
        before = len(np.unique(pairwise_distances_argmin(embedding, start)))
        if found >= before:
            return proba, centers
        module.load_state_dict(initial)
        warnings.warn(
            f"The refinement left {found} of n_clusters={self.n_clusters} clusters "
            f"non-empty (the k-means start had {before}); the clusterer keeps the "
            "k-means clustering of its pretrained embedding instead. If X is not "
            "scaled, scale it (StandardScaler); else try a larger "
            "reconstruction_weight or a smaller n_clusters.",
            ConvergenceWarning,
        )
        return assign()

    def _warn_empty_clusters(self) -> None:
        counts = np.bincount(self.labels_, minlength=self.n_clusters)
        n_empty = int(np.sum(counts == 0))
        if n_empty:
            warnings.warn(
                f"{n_empty} of n_clusters={self.n_clusters} clusters are empty after "
                "training (their centres collapsed onto others or drifted away). "
                "Try a smaller n_clusters or a larger reconstruction_weight.",
                ConvergenceWarning,
            )

    # -- inference -------------------------------------------------------------------

    def _soft_assign(self, encoder, x, centers=None):
        centers = self.cluster_centers_ if centers is None else centers
        centers = torch.as_tensor(centers, dtype=x.dtype, device=x.device)
        return student_t_assignment(encoder(x), centers, self.alpha)

    def _predict_proba(self, X):
        return infer(self.encoder_, X, self._soft_assign, self.n_threads)

    @property
    def encoder_(self) -> torch.nn.Module:
        """The fine-tuned encoder: model input to the space of ``cluster_centers_``."""
        return self.autoencoder_.encoder_

    def get_assignment_module(self) -> torch.nn.Module:
        """The network that maps the model input to ``predict_proba``'s soft assignment.

        Returns
        -------
        assignment : torch.nn.Module
            A copy on the CPU, in float32 and evaluation mode, with frozen
            parameters: Student's t similarity of ``get_encoder()(x)`` to
            ``cluster_centers_``, shape ``(n, n_clusters)``, rows summing to 1,
            differentiable with respect to its input ``x`` of shape
            ``(n, n_features_in_)``.
        """
        check_is_fitted(self)
        centers = torch.as_tensor(self.cluster_centers_, dtype=torch.float32)
        return frozen_copy(SoftAssignment(self.encoder_, centers, self.alpha))

    def predict_proba(self, X):
        """Soft assignments Q: Student's t similarity of each sample to each centre.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New data.

        Returns
        -------
        Q : ndarray of shape (n_samples, n_clusters)
            Rows sum to 1.
        """
        return self._predict_proba(self._validated(X))

    def predict(self, X):
        """Cluster of each sample: ``argmax`` of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.predict_proba(X).argmax(axis=1)

    def transform(self, X):
        """Embed X with the fine-tuned encoder (the space of ``cluster_centers_``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New data.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
        """
        X = self._validated(X)
        return infer(self.encoder_, X, apply_module, self.n_threads)

    def score(self, X, y=None):
        """Silhouette coefficient of the predicted clusters of X, in X's space.

        Label-free and comparable across ``n_clusters`` (it is measured in the
        input space, which does not depend on the fitted model), so
        ``GridSearchCV`` without ``y`` can choose the number of clusters. In
        [-1, 1], higher is better; -1 when fewer than two clusters are
        predicted. Beyond 4000 samples, a fixed random subsample is scored.
        Give ``GridSearchCV`` shuffled folds (``cv=KFold(5, shuffle=True,
        random_state=0)``): its default folds are unshuffled, and on data
        sorted by group a fold can miss whole groups.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        score : float
        """
        X = self._validated(X)
        labels = self._predict_proba(X).argmax(axis=1)
        n_samples = X.shape[0]
        n_labels = len(np.unique(labels))
        if n_labels < 2 or n_labels >= n_samples:
            return -1.0
        if n_samples > SCORE_SAMPLE_SIZE:
            # silhouette_score's own subsample, read in increasing row order
            # (as sparse and streamed X read best); the mean does not depend on it
            rows = np.random.RandomState(0).permutation(n_samples)[:SCORE_SAMPLE_SIZE]
            rows.sort()
            X, labels = X[rows], labels[rows]
            if len(np.unique(labels)) < 2:
                return -1.0
        return float(silhouette_score(X, labels))

    @property
    def _n_features_out(self):
        return self.cluster_centers_.shape[1]

    @property
    def classes_(self):
        """The cluster labels, ``arange(n_clusters)``: the columns of ``predict_proba``.

        Wrappers that map ``predict_proba`` over chunks (dask-ml's
        ``ParallelPostFit``) read the number of columns from it.
        """
        check_is_fitted(self)
        return np.arange(self.n_clusters)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

"""AutoencoderRecommender: EASE, Mult-VAE, Mult-DAE and their blend for implicit feedback."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted

from ._autoencoder import EncoderMixin
from ._base import NETWORK_CONSTRAINTS, NetworkEstimator
from ._devices import draw_seed, make_generator, resolve_device
from ._tensors import INFERENCE_CHUNK, infer
from ._validation import check_loss_range, hidden_sizes, validate_input
from ._interrupts import restore_on_interrupt, run_interruptibly
from ._nn import (
    L2_LADDER,
    Autoencoder,
    Blend,
    ItemItem,
    NormalizedInput,
    VAEModule,
    build_autoencoder,
    check_ease_memory,
    decode_output,
    ease_scorer,
    ease_solve,
    ease_spectrum,
    elbo_objective,
    multinomial_log_likelihood,
    reconstruction_objective,
)
from ._interactions import (
    binarize,
    check_held_out,
    interaction_matrix,
    ladder_search,
    rank_items,
    recommendations_frame,
    search_mix,
    validation_ndcg,
    validation_split,
)
from .metrics import ndcg_at_k

#: The values of ``mix`` that a validated search tries (from 0.5 outwards).
MIX_LADDER = tuple(np.round(np.linspace(0, 1, 11), 1).tolist())

__all__ = ["AutoencoderRecommender", "interaction_matrix", "recommendations_frame"]


class AutoencoderRecommender(EncoderMixin, NetworkEstimator):
    """Item recommendation from implicit feedback with EASE, Mult-VAE or both.

    Fitted on a users x items matrix (rows are users, columns items; a
    non-zero entry is an interaction, or with ``threshold`` an entry of at
    least ``threshold`` is). Four models:

    - ``model="ease"``: the shallow autoencoder EASE (Steck, 2019), a linear
      item-to-item map ``X ~ X B`` with ``diag(B) = 0`` solved in closed form
      with L2 penalty ``l2``. Seconds to fit on a few thousand items; its
      memory grows with the square of the number of items.
    - ``model="vae"`` (Mult-VAE) and ``model="dae"`` (Mult-DAE) (Liang et al.,
      2018, "Variational autoencoders for collaborative filtering"): each
      history is scaled to unit L2 norm, its items are dropped at random
      during training (input dropout), and the network is trained to put a
      multinomial over all items that gives the user's items high
      probability. The VAE's KL term is annealed from 0 to ``beta`` during
      the first ``n_anneal_epochs`` epochs.
    - ``model="hybrid"`` (default): EASE beside a Mult-VAE, their per-user
      standardised scores mixed with weight ``mix`` on the VAE (VASP's idea of
      a shallow item-item path beside a deep one). With ``l2="auto"`` or
      ``mix="auto"`` (defaults) ``fit`` holds out 20 % of each user's
      interactions, trains EASE and the VAE on the rest, picks ``l2`` and then
      ``mix`` by the NDCG@100 of those held-out items, refits EASE on all of
      X and trains the VAE ``ceil(max_iter / 3)`` more epochs on all of X
      (without it, both data sets of the benchmark ranked lower; not with
      ``early_stopping``, which keeps its best epoch).

    Users need not have been seen in ``fit``: :meth:`recommend` and
    :meth:`decision_function` take any histories over the same items and
    score them with one forward pass (fold-in, no refit). :meth:`score`
    is the NDCG@100 of the recommendations against held-out interactions,
    so ``GridSearchCV(...).fit(X, Y)`` with ``Y`` the held-out matrix tunes
    the model (give ``l2`` and ``mix`` numbers there); :meth:`transform` gives
    each user's latent vector (not for ``model="ease"``, which has none).

    Parameters
    ----------
    model : {"hybrid", "ease", "vae", "dae"}, default="hybrid"
        EASE and Mult-VAE blended, EASE alone, Mult-VAE or Mult-DAE.
        On held-out ratings of two MovieLens sets the blend ranked best, EASE
        next (and fits in a fraction of the time), Mult-VAE alone last.
    l2 : float > 0 or "auto", default="auto"
        EASE's L2 penalty (``"ease"`` and ``"hybrid"``). ``"auto"``: the best
        of 50, 100, 200, 500, 1000, 2000, 5000 and 10000 by validation NDCG@100
        (searched from 500 outwards); see ``l2_``.
    mix : float in [0, 1] or "auto", default="auto"
        Weight of the VAE's standardised scores against EASE's
        (``"hybrid"`` only). ``"auto"``: the best of 0, 0.1, ..., 1 by
        validation NDCG@100 (searched from 0.5 outwards); see ``mix_``.
    n_components : int, default=100
        Size of the latent user vector (the networks of ``"vae"``, ``"dae"``
        and ``"hybrid"``; this and the following training parameters do not
        apply to ``"ease"``). The defaults of the network and its training
        (100, (200,), 15 epochs, step 1e-2) make the hybrid's deep branch
        cheap; Mult-VAE's paper used 200, (600,), step 1e-3 and more epochs.
    hidden_layer_sizes : array-like of int, default=(200,)
        Widths of the encoder's hidden layers (items side first); the decoder
        mirrors them.
    activation : {"tanh", "relu", ...}, default="tanh"
        Activation after each hidden layer.
    input_dropout : float in [0, 1), default=0.5
        Share of each history dropped at random in training.
    beta : float >= 0, default=0.2
        Final weight of the KL term (``model="vae"`` only).
    n_anneal_epochs : int >= 0, default=5
        Epochs over which the KL weight rises linearly from 0 to ``beta``
        (0: no annealing).
    threshold : float or None, default=None
        Non-zero entries ``>= threshold`` are positives; ``None``: every positive
        entry (e.g. ``threshold=4`` turns 1-5 star ratings into "liked"). An
        empty (zero) cell is never a positive, so dense, sparse and streamed
        copies of the data give the same model, whatever the threshold.
    alpha : float >= 0, default=0.0
        L2 penalty on the weight matrices.
    batch_size : int or "auto", default="auto"
        Users per mini-batch; ``"auto"`` is ``min(256, n_users)``.
    learning_rate_init : float > 0, default=1e-2
        Adam's step size.
    max_iter : int, default=15
        Epochs of the deep network: a fixed budget, as in Mult-VAE's
        protocol (spending it raises no ConvergenceWarning), unless
        ``early_stopping``, which stops on the validation loss (then set it
        higher). With the default step size, 15 epochs of the default
        network gave the hybrid its gain over EASE on two MovieLens sets at
        a fraction of the time of Mult-VAE's 60 epochs. The hybrid
        adds ``ceil(max_iter / 3)`` epochs on all of X after its validation
        (counted in ``n_iter_``), unless ``early_stopping``.
    tol : float >= 0, default=1e-4
        Minimum improvement of the loss over ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=20
        See ``tol``. While the KL weight rises the training loss may rise
        too, so keep it at least ``n_anneal_epochs`` (or use ``early_stopping``,
        whose validation loss always uses the final ``beta``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the users, monitor their loss
        (with the final ``beta``) and keep the best epoch's weights.
    validation_fraction : float in (0, 1), default=0.1
        Share of users held out with ``early_stopping``.
    shuffle : bool, default=True
        Shuffle the users every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, dropout and the latent noise.
    verbose : bool or int, default=False
        Progress bar on stderr.
    warm_start : bool, default=False
        Continue from the previous fit's weights.
    device : str or torch.device, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    n_threads : int, None or "adaptive", default=None
        torch threads on the CPU, as in :class:`~sk_deepunsup.DeepAutoencoder`: ``None``
        chooses from the network's size, never from the load, so results
        are reproducible; an int fixes the count; ``"adaptive"`` times.

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted network (for ``"ease"`` the item-item matrix, for
        ``"hybrid"`` the blend of both).
    l2_ : float or None
        EASE's L2 penalty in use (``None`` for ``"vae"`` and ``"dae"``).
    mix_ : float or None
        The VAE's weight in the blend (``"hybrid"`` only, else ``None``).
    validation_ndcg_ : float or None
        NDCG@100 of the held-out 20 % with the chosen ``l2_`` / ``mix_``
        (``None`` when nothing was chosen by validation). At most 5000 users
        with held-out items are scored.
    item_popularity_ : ndarray of shape (n_features_in_,)
        Number of training users with each item (positives).
    device_, loss_curve_, validation_loss_curve_, best_loss_, n_iter_, \
n_features_in_, feature_names_in_
        As in :class:`DeepAutoencoder`.

    See Also
    --------
    VariationalAutoencoder : The general VAE (``loss="multinomial"``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from sk_deepunsup import AutoencoderRecommender
    >>> rng = np.random.RandomState(0)
    >>> X = sp.random(200, 50, density=0.1, format="csr", random_state=rng)
    >>> rec = AutoencoderRecommender(n_components=8, hidden_layer_sizes=(32,),
    ...                              max_iter=5, random_state=0).fit(X)
    >>> rec.recommend(X[:3], n_items=4).shape
    (3, 4)
    """

    _parameter_constraints: dict = {
        **NetworkEstimator._parameter_constraints,
        **{k: NETWORK_CONSTRAINTS[k] for k in ("n_components", "hidden_layer_sizes", "activation")},
        "model": [StrOptions({"hybrid", "ease", "vae", "dae"})],
        "l2": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "mix": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="both")],
        "input_dropout": [Interval(Real, 0, 1, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "n_anneal_epochs": [Interval(Integral, 0, None, closed="left")],
        "threshold": [None, Interval(Real, None, None, closed="neither")],
    }

    def __init__(
        self,
        model="hybrid",
        *,
        l2="auto",
        mix="auto",
        n_components=100,
        hidden_layer_sizes=(200,),
        activation="tanh",
        input_dropout=0.5,
        beta=0.2,
        n_anneal_epochs=5,
        threshold=None,
        alpha=0.0,
        batch_size="auto",
        learning_rate_init=1e-2,
        max_iter=15,
        tol=1e-4,
        n_iter_no_change=20,
        early_stopping=False,
        validation_fraction=0.1,
        shuffle=True,
        random_state=None,
        verbose=False,
        warm_start=False,
        device="auto",
        n_threads=None,
    ):
        self.model = model
        self.l2 = l2
        self.mix = mix
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.input_dropout = input_dropout
        self.beta = beta
        self.n_anneal_epochs = n_anneal_epochs
        self.threshold = threshold
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.device = device
        self.n_threads = n_threads

    # -- the network and its objective ---------------------------------------------

    def _variational(self):
        return self.model in ("vae", "hybrid")

    def _hidden_sizes(self) -> list[int]:
        return hidden_sizes(self.hidden_layer_sizes)

    def _build_module(self, n_features, generator):
        """The deep network (Mult-VAE or Mult-DAE); EASE's part is solved, not built."""
        vae = self._variational()
        autoencoder = build_autoencoder(
            n_features,
            self.n_components,
            self._hidden_sizes(),
            activation=self.activation,
            encoder_outputs=2 if vae else 1,
            generator=generator,
        )
        encoder = torch.nn.Sequential(NormalizedInput(self.input_dropout), autoencoder.encoder)
        if vae:
            return VAEModule(encoder, autoencoder.decoder, n_features, "multinomial")
        return Autoencoder(encoder, autoencoder.decoder)

    def _rebuild_module(self, name):
        if name != "module_":
            return None
        n = self.n_features_in_
        if self.model == "ease":
            return ItemItem(n)
        deep = self._build_module(n, make_generator(0))
        return Blend(ItemItem(n), deep, variational=True) if self.model == "hybrid" else deep

    def _network_signature(self, n_features):
        return (
            ("n_features_in_", n_features),
            ("model", self.model),
            ("n_components", self.n_components),
            ("hidden_layer_sizes", tuple(self._hidden_sizes())),
            ("activation", self.activation),
            ("input_dropout", self.input_dropout),
        )

    def _epochs_are_a_budget(self):
        return not self.early_stopping

    def _check_training_data(self, data, streamed):
        check_loss_range(data, "multinomial", streamed)

    def _objective(self, generator):
        if self.model == "dae":
            return reconstruction_objective("multinomial")
        return elbo_objective(self.beta, generator, anneal_rows=self._anneal_rows)

    def _network(self, module):
        if self.model == "ease":
            raise ValueError(
                "model='ease' has no latent space (it maps items to items); use "
                "model='hybrid', 'vae' or 'dae' for user vectors."
            )
        return module.network if isinstance(module, Blend) else module

    def _encode(self, module, x):
        module = self._network(module)
        if self._variational():
            return module.posterior(x)[0]
        return module.encoder(x)

    def _decode(self, module, z):
        return decode_output(self._network(module).decoder(z), "multinomial")

    def _scores(self, module, x):
        """Scores of the items, the ranking (the deep models: logits at the posterior mean)."""
        if isinstance(module, (ItemItem, Blend)):
            return module(x)
        return module.decoder(self._encode(module, x))

    def _score_samples_tensor(self, module, x):
        return multinomial_log_likelihood(x, self._scores(module, x))

    # -- fitting -------------------------------------------------------------------

    def _validated(self, X):
        check_is_fitted(self)
        n_cols = X.shape[1] if getattr(X, "ndim", 2) == 2 and hasattr(X, "shape") else None
        if n_cols is not None and n_cols != self.n_features_in_:
            raise ValueError(
                f"X has {n_cols} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input: histories must cover the "
                f"{self.n_features_in_} items seen in fit, in the same column order "
                "(drop items unknown at fit time)."
            )
        return binarize(validate_input(self, X, reset=False), self.threshold)

    @_fit_context(prefer_skip_nested_validation=True)
    @restore_on_interrupt
    def fit(self, X, y=None):
        """Fit on the interaction histories X (rows: users, columns: items).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Non-negative interactions; sparse matrices are densified one batch
            at a time.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.

        Notes
        -----
        One interruptible unit: a Ctrl-C once the EASE solve is done ends the
        fit with the model so far (``interrupted_`` is True); one before raises
        KeyboardInterrupt at once and leaves the estimator as it was.
        """
        X = binarize(validate_input(self, X, reset=True, training=True), self.threshold)
        if self.model in ("ease", "hybrid"):
            check_ease_memory(X.shape[1])
        previous = getattr(self, "module_", None)
        if isinstance(previous, ItemItem) or (isinstance(previous, Blend) and self.model != "hybrid"):
            del self.module_  # nothing to warm-start from
        self.l2_ = self.mix_ = self.validation_ndcg_ = None
        auto = self.l2 == "auto" or (self.model == "hybrid" and self.mix == "auto")
        split = None
        if self.model in ("ease", "hybrid") and auto:
            split = validation_split(X, draw_seed(self.random_state))
        if self.model == "ease":
            self._fit_ease(X, split)
        elif self.model == "hybrid":
            self._fit_hybrid(X, split)
        else:
            self._fit_network(X)
        popularity = np.asarray((X != 0).sum(axis=0)).ravel().astype(np.int64)
        store = lambda: setattr(self, "item_popularity_", popularity)  # noqa: E731
        self._finish_fit(store, interrupted=self.interrupted_)
        return self

    def _fit_network(self, X):
        n_train = X.shape[0]
        if self.early_stopping:
            n_train -= math.ceil(self.validation_fraction * n_train)
        self._anneal_rows = self.n_anneal_epochs * n_train
        self._fit(X, incremental=False)

    def _solve_ease(self, X, split):
        """EASE's item-item module on X; with a split, also the scores of its fit part.

        ``l2="auto"`` walks :data:`L2_LADDER` from 500 towards the better
        neighbour while the validation NDCG@100 rises; every step reuses one
        spectrum of the fit part (:func:`ease_spectrum`).
        """
        device = resolve_device(self.device)
        work = torch.device("cpu") if device.type == "mps" else device  # float64 linear algebra
        self.l2_ = 500.0 if self.l2 == "auto" else float(self.l2)
        val_scores = None
        if split is not None:
            X_fit, history, X_val = split
            spectrum = run_interruptibly(ease_spectrum, X_fit, INFERENCE_CHUNK, work)
            scorer = ease_scorer(spectrum, history)
            ndcg, best = validation_ndcg(history, X_val), {}

            def evaluate(l2):
                scores = scorer(l2)
                value = ndcg(scores)
                if not best or value > best["ndcg"]:
                    best.update(ndcg=value, l2=l2, scores=scores)
                return value

            if self.l2 == "auto":
                start = L2_LADDER.index(500.0)
                self.l2_, self.validation_ndcg_ = ladder_search(L2_LADDER, start, evaluate)
            else:
                self.validation_ndcg_ = evaluate(self.l2_)
            val_scores = best["scores"] if best["l2"] == self.l2_ else scorer(self.l2_)
            del scorer, best
        weight = run_interruptibly(ease_solve, X, self.l2_, INFERENCE_CHUNK, work)
        weight = weight.to(device, torch.float32)
        return ItemItem(X.shape[1], weight).to(device), val_scores

    def _fit_ease(self, X, split):
        module, _ = self._solve_ease(X, split)

        def store():
            self.module_ = module
            self.device_ = str(resolve_device(self.device))
            self.loss_curve_, self.validation_loss_curve_, self.n_iter_ = [], None, 0
            self.best_loss_ = math.inf

        self._finish_fit(store, interrupted=False)  # a closed-form solve: no epochs

    def _fit_hybrid(self, X, split):
        item_item, ease_val = self._solve_ease(X, split)
        if isinstance(getattr(self, "module_", None), Blend):
            self.module_ = self.module_.network  # warm_start continues the network
        X_fit, history, X_val = split if split is not None else (X, None, None)
        self._fit_network(X_fit)
        network = self.module_
        self.mix_ = 0.5 if self.mix == "auto" else float(self.mix)
        try:  # from here on a Ctrl-C ends the fit with the parts trained so far
            if not self.interrupted_ and self.mix == "auto" and X_val is not None:
                deep_val = infer(network, history, self._scores, self.n_threads)
                self.mix_, self.validation_ndcg_ = search_mix(
                    MIX_LADDER, deep_val, ease_val, history, X_val)
            # the 20 % too, at the final beta, unless interrupted
            extra = 0 if split is None or self.early_stopping else math.ceil(self.max_iter / 3)
            if extra:
                self._anneal_rows = 0
            for _ in range(extra):
                if self.interrupted_:
                    break
                self._fit(X, incremental=True)
                network = self.module_
        except KeyboardInterrupt:
            self.interrupted_ = True
        self.module_ = Blend(item_item, network, variational=True, mix=self.mix_)

    # -- recommendation ------------------------------------------------------------

    def decision_function(self, X):
        """Score of every item for each history in X; higher is recommended first.

        For ``"vae"`` and ``"dae"`` the decoder's logits (the log of the
        multinomial probability, up to a per-user constant), for ``"ease"``
        ``X @ B``, for ``"hybrid"`` the mix of both after standardising each
        row. Computed in chunks of rows.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            Histories, of users seen in ``fit`` or new ones.

        Returns
        -------
        scores : ndarray of shape (n_users, n_items)
        """
        X = self._validated(X)
        return infer(self.module_, X, self._scores, self.n_threads)

    @validate_params(
        {
            "X": ["array-like", "sparse matrix"],
            "n_items": [Interval(Integral, 1, None, closed="left")],
            "exclude_seen": ["boolean"],
        },
        prefer_skip_nested_validation=True,
    )
    def recommend(self, X, n_items=10, exclude_seen=True):
        """The ``n_items`` best items for each history in X, best first.

        Works for users never seen in ``fit`` (their history is folded in).
        A user without any history gets the most popular items of the
        training data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items_fit)
            Histories over the items seen in ``fit``.
        n_items : int, default=10
            Number of items per user.
        exclude_seen : bool, default=True
            Leave out the items already in the user's history.

        Returns
        -------
        items : ndarray of shape (n_users, n_items), dtype int64
            Column indices of the recommended items.
        """
        check_is_fitted(self)
        limit = self.n_features_in_
        if n_items > limit:
            raise ValueError(
                f"n_items={n_items} is larger than the catalogue of {limit} items "
                "seen in fit; ask for at most that many."
            )
        X = self._validated(X)
        out = np.empty((X.shape[0], n_items), dtype=np.int64)
        popular = self.item_popularity_.astype(np.float64)
        chunk = max(1, INFERENCE_CHUNK * 64 // max(limit, 1))
        weights_dtype = torch.empty(0, dtype=next(self.module_.parameters()).dtype).numpy().dtype
        for start in range(0, X.shape[0], chunk):
            rows = X[start : start + chunk]
            if sp.issparse(rows) or isinstance(rows, np.ndarray):
                rows = rows.astype(weights_dtype, copy=False)  # 0/1: exact; no module copy
            scores = infer(self.module_, rows, self._scores, self.n_threads)
            scores = scores.astype(np.float64, copy=False)
            seen = rows.toarray() != 0 if sp.issparse(rows) else np.asarray(rows) != 0
            out[start : start + chunk] = rank_items(scores, seen, popular, n_items, exclude_seen)
        return out

    def score(self, X, y=None):
        """NDCG@100 of the recommendations from histories X against held-out y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_users, n_items)
            The histories the recommendations are computed from (their items
            are excluded).
        y : {array-like, sparse matrix} of shape (n_users, n_items) or None
            Each user's held-out interactions. ``None`` scores how well the
            model ranks each user's own items (seen items not excluded): a
            fit score without held-out data.

        Returns
        -------
        ndcg : float
            Mean NDCG@100 over the users with held-out interactions.
        """
        check_is_fitted(self)
        k = min(100, self.n_features_in_)
        Xv = self._validated(X)
        if y is None:
            y_true, exclude = Xv, False
        else:
            y_true, exclude = check_held_out(y, Xv.shape), True
        scores = self.decision_function(X)
        if exclude:
            seen = (Xv != 0).toarray() if sp.issparse(Xv) else Xv != 0
            scores[seen] = -np.inf
        y_true = binarize(sp.csr_matrix(y_true), self.threshold)
        return ndcg_at_k(y_true, scores, k=k)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags


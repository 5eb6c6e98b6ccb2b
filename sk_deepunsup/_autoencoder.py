"""DeepAutoencoder: a nonlinear alternative to PCA, and the base of the autoencoders."""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from ._base import NETWORK_CONSTRAINTS, NetworkEstimator
from ._images import (
    CONV_AUTO_BATCH_SIZE,
    IMAGE_CONSTRAINTS,
    accelerated,
    auto_hidden_sizes,
    build_network,
    network_signature,
)
from ._interrupts import restore_on_interrupt
from ._representation import RepresentationMixin
from ._nn import (
    RECONSTRUCTION_LOSSES,
    build_autoencoder,
    decode_output,
    reconstruction_loss,
    reconstruction_objective,
)
from ._tensors import infer
from ._validation import FLOAT_DTYPES, check_loss_range, hidden_sizes, validate_input


class EncoderMixin(ClassNamePrefixFeaturesOutMixin, TransformerMixin):
    """``transform``, ``inverse_transform`` and ``score_samples`` of a fitted ``module_``.

    For estimators whose network encodes to ``n_components`` and decodes back:
    they say how to embed (``_encode``), decode (``_decode``) and score a
    sample (``_score_samples_tensor``).
    """

    def _encode(self, module, x):
        return module.encoder(x)

    def _decode(self, module, z):
        return decode_output(module.decoder(z), self.loss)

    def _score_samples_tensor(self, module, x):
        raise NotImplementedError

    def transform(self, X):
        """Embed X in the ``n_components``-dimensional code space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to embed.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            The embedding; float64 unless X is float32.
        """
        X = self._validated(X)
        return infer(self.module_, X, self._encode, self.n_threads)

    def inverse_transform(self, X):
        """Decode embeddings back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Embeddings, e.g. the output of :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
            The reconstruction.
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=FLOAT_DTYPES, input_name="X")
        if Z.shape[1] != self.n_components:
            raise ValueError(
                f"X has {Z.shape[1]} features, but inverse_transform expects "
                f"n_components={self.n_components} (the output of transform)."
            )
        return infer(self.module_, Z, self._decode, self.n_threads)

    def score_samples(self, X):
        """Score of each sample; higher means better explained by the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        X = self._validated(X)
        return infer(self.module_, X, self._score_samples_tensor, self.n_threads)

    def score(self, X, y=None):
        """Mean of :meth:`score_samples`: higher is better, so GridSearchCV needs no y.

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
        return float(np.mean(self.score_samples(X)))

    @property
    def _n_features_out(self):
        return self.n_components

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class AutoencoderBase(RepresentationMixin, EncoderMixin, NetworkEstimator):
    """Fitting of the autoencoder estimators: the MLP, a conv net or the user's modules.

    Subclasses say what to minimise (``_objective``) and may change the
    network (``_build_module``), the embedding (``_encode``) and the score.
    """

    _parameter_constraints: dict = {
        **NetworkEstimator._parameter_constraints,
        **NETWORK_CONSTRAINTS,
        **IMAGE_CONSTRAINTS,
        "hidden_layer_sizes": [StrOptions({"auto"}), *NETWORK_CONSTRAINTS["hidden_layer_sizes"]],
        "loss": [StrOptions(set(RECONSTRUCTION_LOSSES))],
    }

    _encoder_outputs = 1

    @property
    def encoder_(self) -> torch.nn.Module:
        """The fitted network's encoder: model input to code (the representation contract)."""
        return self.module_.encoder

    def _build_module(self, n_features: int, generator: torch.Generator):
        """The user's modules, a conv net (``image_shape``) or the MLP."""
        hidden = self._hidden_sizes()
        return build_network(
            self,
            n_features,
            hidden,
            generator,
            lambda: build_autoencoder(
                n_features,
                self.n_components,
                hidden,
                activation=self.activation,
                dropout=self.dropout,
                batch_norm=self.batch_norm,
                encoder_outputs=self._encoder_outputs,
                generator=generator,
            ),
        )

    def _network_signature(self, n_features: int) -> tuple:
        hidden = self._hidden_sizes()
        return (
            ("n_features_in_", n_features),
            ("n_components", self.n_components),
            ("hidden_layer_sizes", tuple(hidden)),
            ("activation", self.activation),
            ("dropout", self.dropout),
            ("batch_norm", self.batch_norm),
            ("loss", self.loss),
            *network_signature(self, n_features),
        )

    def _check_training_data(self, data, streamed: bool) -> None:
        check_loss_range(data, self.loss, streamed)

    def _check_batch_size(self, batch_size: int) -> None:
        if self.batch_norm and self.encoder is None and batch_size < 2:
            raise ValueError(
                "batch_norm=True needs batches of at least 2 samples to normalise "
                f"over, got batch_size={self.batch_size}; raise batch_size or set "
                "batch_norm=False."
            )

    def _training_context(self, module, device):
        return accelerated(module, device)

    def _draws_global_rng(self) -> bool:
        return self.encoder is not None

    def _hidden_sizes(self) -> list[int]:
        """``hidden_layer_sizes`` as a list of ints, validated ("auto" resolved)."""
        given = self.hidden_layer_sizes
        if isinstance(given, str) and given == "auto":
            given = auto_hidden_sizes(self)
        return hidden_sizes(given, self.hidden_layer_sizes)

    def _auto_batch_size(self, n_samples: int) -> int:
        if self.image_shape is not None:
            return CONV_AUTO_BATCH_SIZE
        return super()._auto_batch_size(n_samples)

    @_fit_context(prefer_skip_nested_validation=True)
    @restore_on_interrupt
    def fit(self, X, y=None):
        """Train the network on X for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. Standardise it first (``StandardScaler``), or scale
            it to [0, 1] for ``loss="bce"``. Sparse matrices are densified one
            batch at a time; numpy memmaps over 256 MB, h5py datasets and zarr
            arrays are read batch by batch (never loaded whole).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_input(self, X, reset=True, training=True)
        return self._fit(X, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    @restore_on_interrupt
    def partial_fit(self, X, y=None):
        """Train for one epoch over X, continuing from the current state.

        The first call builds the network; later calls keep its weights and
        the optimizer's moments, so calling it on successive chunks streams
        data that does not fit in memory.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            A chunk of training data.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The updated estimator.
        """
        first = not hasattr(self, "module_")
        X = validate_input(self, X, reset=first, training=True)
        return self._fit(X, incremental=True)


class DeepAutoencoder(AutoencoderBase):
    """Deep autoencoder: a nonlinear, trainable alternative to PCA.

    An MLP encoder maps each sample to ``n_components`` numbers and a mirrored
    decoder maps them back; both are trained with Adam to reconstruct the
    input. ``transform`` returns the embedding, ``inverse_transform`` the
    reconstruction, and ``score`` the negative reconstruction error, so model
    selection with ``GridSearchCV`` needs no labels.

    Training runs in float32 on ``device``. On the CPU, float64 input is
    transformed through a float64 copy of the network, so that each row's
    output does not depend on the other rows it is batched with.

    Parameters
    ----------
    n_components : int, default=2
        Size of the embedding (the bottleneck layer).
    hidden_layer_sizes : array-like of int or "auto", default="auto"
        Widths of the encoder's hidden layers, input side first; the decoder
        mirrors them. ``()`` gives a linear-bottleneck network with no hidden
        layer. ``"auto"``: ``(128, 64)``, or ``()`` with ``image_shape`` (the
        convolutions' feature maps map straight to the embedding).
    image_shape : tuple of int or None, default=None
        ``(height, width)`` or ``(channels, height, width)``: each row of X is
        one image, flattened in C order, channels first
        (``X = images.reshape(len(images), -1)``); one entry may be -1,
        inferred from the width of X. The network is then convolutional:
        strided 4x4 convolutions with ``conv_channels`` outputs halve the
        height and width (rounding down), ``hidden_layer_sizes`` are dense
        layers between the flattened feature maps and the embedding (none
        by default), and the decoder mirrors it all with transposed
        convolutions.
    conv_channels : array-like of int, default=(32, 64, 128)
        Output channels of the encoder's convolutions, input side first
        (one convolution each); used only with ``image_shape``.
    encoder, decoder : torch.nn.Module or None, default=None
        Any networks to train instead of the built-in ones (give both). The
        encoder maps a float32 batch of shape ``(n, n_features)`` (or
        ``(n, *image_shape)`` with ``image_shape``) to ``(n, n_components)``;
        the decoder maps ``(n, n_components)`` back to
        ``n_features`` values a row (any output shape; it is flattened in
        C order). They are deep-copied at fit and never changed; the
        copies start from the modules' weights as given (so pretrained
        weights carry over, and ``random_state`` does not re-initialise
        them), and layers such as ``nn.Dropout`` that draw from torch's global
        generator get a private stream of it seeded from ``random_state``
        (the caller's global state is untouched), so fits are deterministic. Activation,
        dropout, batch-norm and image parameters then do not apply. Such
        models pickle (the modules' classes must be importable) but
        :func:`sk_deepunsup.save` refuses them.
    activation : {"relu", "tanh", "logistic", "identity", "leaky_relu", "elu", \
"gelu"}, default="relu"
        Activation after each hidden layer. The embedding and the output are
        linear.
    dropout : float in [0, 1), default=0.0
        Dropout probability after each hidden activation.
    batch_norm : bool, default=False
        Batch normalisation after each hidden linear layer.
    noise : float >= 0, default=0.0
        Standard deviation of the Gaussian noise added to the inputs during
        training (a denoising autoencoder); the target stays clean.
    loss : {"mse", "bce", "multinomial"}, default="mse"
        Reconstruction loss. ``"bce"`` (binary cross-entropy, sigmoid output)
        suits data in [0, 1] such as pixel intensities. ``"multinomial"``
        (cross-entropy of a softmax over the features, as in NVDM and
        Mult-VAE) suits non-negative counts or weights such as word counts,
        TF-IDF rows or user-item interactions: it models which features a row
        spreads its mass over, not their scale; ``inverse_transform`` then
        returns each feature's share (rows sum to 1) and ``score_samples``
        the per-row log-likelihood.
    alpha : float >= 0, default=0.0
        L2 penalty on the weight matrices (not the biases).
    batch_size : int or "auto", default="auto"
        Mini-batch size; ``"auto"`` is ``min(256, n_samples)``, or
        ``min(64, n_samples)`` with ``image_shape`` (a convolution's cost
        follows its batch, so smaller batches give more steps an epoch at
        little extra time). Clipped to the number of samples.
    learning_rate_init : float > 0, default=1e-3
        Adam's step size.
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float >= 0, default=1e-4
        Training stops when the loss (the validation loss with
        ``early_stopping``) has not improved by at least ``tol`` for
        ``n_iter_no_change`` consecutive epochs.
    n_iter_no_change : int, default=10
        See ``tol``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data, monitor the
        loss on it, and keep the weights of the best epoch.
    validation_fraction : float in (0, 1), default=0.1
        Share of the training data held out when ``early_stopping=True``.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, dropout, noise and the
        validation split. An int gives identical fits on the same CPU setup
        (float32 sums depend on torch's thread count, so keep it). Neither
        torch's nor numpy's global random state is used or changed.
    verbose : bool or int, default=False
        Show a progress bar with the loss per epoch on stderr.
    warm_start : bool, default=False
        Reuse the weights of the previous ``fit`` as the starting point.
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or ``"mps"``.
    n_threads : int, None or "adaptive", default=None
        torch threads on the CPU, for fitting and inference. ``None`` counts
        the network's multiply-adds per step and uses one thread for small
        networks (where threads cost more than they gain, most of all on a
        busy machine) and more for large ones: the choice depends on the
        data, the network and the cores, never on the load, so an int
        ``random_state`` gives the same result on every call. An int fixes
        the count. ``"adaptive"`` times one thread against all and keeps
        the faster, re-measuring as the load changes: fastest on a busy
        machine, but results may then differ in the last bits between fits.
        torch's global setting is restored afterwards.

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted network, with ``encoder`` and ``decoder`` submodules.
    device_ : str
        The device the network lives on.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_loss_curve_ : list of float or None
        Validation loss of each epoch with ``early_stopping``, else None.
    best_loss_ : float
        Lowest monitored loss (validation loss with ``early_stopping``).
    n_iter_ : int
        Number of epochs run (summed over ``warm_start`` and ``partial_fit``).
    interrupted_ : bool
        Whether Ctrl-C (KeyboardInterrupt) ended the fit early; the model
        is usable (the best weights so far; a warning says so).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    sklearn.decomposition.PCA : The linear counterpart.
    VariationalAutoencoder : A generative autoencoder with a density score.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import MinMaxScaler
    >>> from sk_deepunsup import DeepAutoencoder
    >>> X = MinMaxScaler().fit_transform(load_digits().data)
    >>> ae = DeepAutoencoder(n_components=2, max_iter=20, random_state=0)
    >>> embedding = ae.fit_transform(X)
    >>> embedding.shape
    (1797, 2)
    >>> ae.get_feature_names_out()[:2].tolist()
    ['deepautoencoder0', 'deepautoencoder1']
    """

    _parameter_constraints: dict = {
        **AutoencoderBase._parameter_constraints,
        "noise": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=2,
        *,
        hidden_layer_sizes="auto",
        image_shape=None,
        conv_channels=(32, 64, 128),
        encoder=None,
        decoder=None,
        activation="relu",
        dropout=0.0,
        batch_norm=False,
        noise=0.0,
        loss="mse",
        alpha=0.0,
        batch_size="auto",
        learning_rate_init=1e-3,
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        shuffle=True,
        random_state=None,
        verbose=False,
        warm_start=False,
        device="auto",
        n_threads=None,
    ):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.image_shape = image_shape
        self.conv_channels = conv_channels
        self.encoder = encoder
        self.decoder = decoder
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.noise = noise
        self.loss = loss
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

    def _objective(self, generator):
        return reconstruction_objective(self.loss, self.noise, generator)

    def _score_samples_tensor(self, module, x):
        return -reconstruction_loss(module(x), x, self.loss, reduction="none")

    def score_samples(self, X):
        """Negative reconstruction error of each sample (higher is better).

        The error is the loss (``"mse"`` or ``"bce"``) averaged over features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        return super().score_samples(X)

"""VariationalAutoencoder: a density model and generator."""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted

from ._autoencoder import AutoencoderBase
from ._devices import draw_seed
from ._nn import PosteriorMean, VAEModule, elbo, elbo_objective

#: The likelihood p(x | z) behind each ``loss``.
LIKELIHOOD_OF_LOSS = {
    "mse": "unit_gaussian",
    "gaussian": "gaussian",
    "bce": "bernoulli",
    "multinomial": "multinomial",
}


class VariationalAutoencoder(AutoencoderBase):
    """Variational autoencoder: an embedding, a density score and a generator.

    The encoder maps each sample to a Gaussian posterior ``q(z | x)`` over
    ``n_components`` latent variables; the decoder maps ``z`` to the
    parameters of ``p(x | z)``: a unit-variance Gaussian (``loss="mse"``,
    whose log-likelihood is a squared error), a Gaussian whose per-feature
    scale is set to its maximum-likelihood value, the root mean squared
    residual (``loss="gaussian"``, a "calibrated decoder": the sharper
    density model; at the end of ``fit`` the scale is computed exactly on
    the training data), independent Bernoullis (``loss="bce"``, for data
    in [0, 1]), or a multinomial over the features (``loss="multinomial"``,
    for counts or TF-IDF rows, as in NVDM, ProdLDA and Mult-VAE). Training maximises the evidence lower bound (ELBO) with the KL
    term weighted by ``beta`` (beta-VAE).

    ``score_samples`` returns each sample's ELBO, a lower bound of its
    log-likelihood ``log p(x)`` under the model (an estimate of it, from 32
    fixed Monte Carlo draws, so it is deterministic); ``score`` is its mean,
    so ``GridSearchCV`` can tune ``beta`` or ``n_components`` without labels.
    ``sample`` draws new data from the prior through the decoder.

    Parameters
    ----------
    n_components : int, default=2
        Number of latent variables.
    hidden_layer_sizes : array-like of int or "auto", default="auto"
        Widths of the encoder's hidden layers; the decoder mirrors them.
        ``"auto"``: ``(128, 64)``, or ``()`` with ``image_shape``.
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
        ``(n, *image_shape)`` with ``image_shape``) to ``(n, n_components)``
        times 2 (the posterior's means, then its log-variances); the
        decoder maps ``(n, n_components)`` back to
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
        Activation after each hidden layer.
    dropout : float in [0, 1), default=0.0
        Dropout probability after each hidden activation.
    batch_norm : bool, default=False
        Batch normalisation after each hidden linear layer.
    beta : float >= 0, default=1.0
        Weight of the KL term in the training objective (1 is the ELBO).
        ``score_samples`` always reports the ELBO itself.
    loss : {"mse", "gaussian", "bce", "multinomial"}, default="gaussian"
        Likelihood ``p(x | z)``: ``"mse"`` a unit-variance Gaussian,
        ``"gaussian"`` a Gaussian with calibrated per-feature scale (use it
        when the ELBO should be a sharp density), ``"bce"`` Bernoulli (data
        in [0, 1]), ``"multinomial"`` a softmax over the features (non-negative
        counts or weights, e.g. TF-IDF; ``inverse_transform`` then returns
        each feature's share, rows summing to 1).
    alpha : float >= 0, default=0.0
        L2 penalty on the weight matrices.
    batch_size : int or "auto", default="auto"
        Mini-batch size; ``"auto"`` is ``min(256, n_samples)``, or
        ``min(64, n_samples)`` with ``image_shape``.
    learning_rate_init : float > 0, default=1e-3
        Adam's step size.
    max_iter : int, default=200
        Maximum number of epochs.
    tol : float >= 0, default=1e-4
        Minimum improvement of the loss (negative beta-ELBO per sample)
        over ``n_iter_no_change`` epochs to keep training.
    n_iter_no_change : int, default=10
        See ``tol``.
    early_stopping : bool, default=False
        Monitor the loss on a held-out ``validation_fraction`` and keep the
        best epoch's weights.
    validation_fraction : float in (0, 1), default=0.1
        Share held out with ``early_stopping``.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, the reparameterisation noise and
        :meth:`sample`. Global random states are neither used nor changed.
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
        The fitted network (``encoder``, ``decoder``, and the buffer
        ``log_scale`` of the Gaussian's per-feature log standard deviation,
        zero unless ``loss="gaussian"``).
    device_ : str
        The device the network lives on.
    loss_curve_ : list of float
        Mean training loss (negative beta-ELBO per sample) of each epoch.
    validation_loss_curve_ : list of float or None
        Validation loss per epoch with ``early_stopping``.
    best_loss_ : float
        Lowest monitored loss.
    n_iter_ : int
        Number of epochs run.
    interrupted_ : bool
        Whether Ctrl-C (KeyboardInterrupt) ended the fit early; the model
        is usable (the best weights so far; a warning says so).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    DeepAutoencoder : A deterministic autoencoder.
    sklearn.mixture.GaussianMixture : A classical density model with ``sample``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sk_deepunsup import VariationalAutoencoder
    >>> X = load_digits().data / 16.0
    >>> vae = VariationalAutoencoder(n_components=4, loss="bce", max_iter=30, random_state=0)
    >>> vae = vae.fit(X)
    >>> vae.sample(3).shape
    (3, 64)
    >>> noise = np.random.RandomState(0).uniform(size=(5, 64))
    >>> bool(vae.score(X[:100]) > vae.score(noise))
    True
    """

    _parameter_constraints: dict = {
        **AutoencoderBase._parameter_constraints,
        "beta": [Interval(Real, 0, None, closed="left")],
        "loss": [StrOptions(set(LIKELIHOOD_OF_LOSS))],
    }

    _encoder_outputs = 2

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
        beta=1.0,
        loss="gaussian",
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
        self.beta = beta
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

    def _build_module(self, n_features, generator):
        autoencoder = super()._build_module(n_features, generator)
        return VAEModule(
            autoencoder.encoder, autoencoder.decoder, n_features, LIKELIHOOD_OF_LOSS[self.loss]
        )

    def _objective(self, generator):
        return elbo_objective(self.beta, generator)

    def _after_fit(self, module, data):
        module.calibrate(data.chunks(1024))

    def _encode(self, module, x):
        return module.posterior(x)[0]

    @property
    def encoder_(self):
        """The posterior mean's network (shares the encoder's parameters)."""
        return PosteriorMean(self.module_.encoder)

    def _score_samples_tensor(self, module, x):
        return elbo(module, x)

    def transform(self, X):
        """Posterior mean of the latent variables of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to embed.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
        """
        return super().transform(X)

    def inverse_transform(self, X):
        """Decoder mean for each latent vector.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent vectors, e.g. from :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        return super().inverse_transform(X)

    def score_samples(self, X):
        """Evidence lower bound (ELBO) of each sample, in nats.

        ``ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x)``,
        estimated with 32 fixed antithetic Monte Carlo draws (deterministic).
        Higher means more likely under the model. For ``loss="mse"`` or
        ``"gaussian"`` it is a log-density, so it depends on the scale of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        elbo : ndarray of shape (n_samples,)
        """
        return super().score_samples(X)

    @validate_params(
        {"n_samples": [Interval(Integral, 1, None, closed="left")]},
        prefer_skip_nested_validation=True,
    )
    def sample(self, n_samples=1):
        """Generate new samples: latent codes from the prior through the decoder.

        Returns the decoder's mean for each code (no observation noise is
        added). With an int ``random_state`` the same samples come back on
        every call, as with ``GaussianMixture.sample``.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        rng = check_random_state(
            draw_seed(None) if self.random_state is None else self.random_state
        )
        z = rng.standard_normal((int(n_samples), self.n_components))
        return self.inverse_transform(z)

"""Plain ``nn.Module`` building blocks: MLP encoders and decoders.

Nothing here imports scikit-learn. Every module is built without touching
torch's global random number generator: layers are created on the ``meta``
device and their weights drawn from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import gradient_ready
from .losses import (
    bernoulli_log_likelihood,
    decode_draws,
    gaussian_log_likelihood,
    multinomial_log_likelihood,
    posterior_draws,
)

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "Autoencoder",
    "ClusteringAutoencoder",
    "PosteriorMean",
    "VAEModule",
    "GeneratorDropout",
    "NormalizedInput",
    "build_autoencoder",
    "set_generator",
]


def _identity(x):
    return x


#: Activation functions by name. The first four are scikit-learn's MLP names.
ACTIVATIONS = {
    "identity": _identity,
    "logistic": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,
    "elu": F.elu,
    "gelu": F.gelu,
}


class GeneratorDropout(nn.Module):
    """Dropout that draws its masks from an explicit ``torch.Generator``.

    ``nn.Dropout`` draws from torch's global generator, which would make
    training depend on (and change) global state. The training engine sets
    ``generator`` for the duration of a fit (see :func:`set_generator`).
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep.div_(1.0 - self.p)

    def extra_repr(self):
        return f"p={self.p}"


class NormalizedInput(nn.Module):
    """Rows scaled to unit L2 norm, then input dropout (Mult-VAE's and Mult-DAE's input).

    All-zero rows stay zero. Dropout (probability ``p``, the kept values
    scaled by ``1 / (1 - p)``) is applied in training mode only, with the
    masks drawn from the generator the engine sets (:func:`set_generator`).
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.dropout = GeneratorDropout(p)

    def forward(self, x):
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        return self.dropout(x / norm.clamp_min(torch.finfo(x.dtype).tiny))

    def extra_repr(self):
        return f"p={self.dropout.p}"


#: Derivative of each activation written in terms of its *output* ``y``; the
#: activations the fused MLP path supports.
_DERIVATIVES = {
    "identity": lambda g, y: g,
    "relu": lambda g, y: torch.ops.aten.threshold_backward(g, y, 0),
    "tanh": lambda g, y: g * (1.0 - y * y),
    "logistic": lambda g, y: g * y * (1.0 - y),
}


def _accumulate_mm(param, a, b):
    """``param.grad += a @ b`` in one BLAS call (autograd's accumulation rule)."""
    if param.grad is None:
        param.grad = torch.mm(a, b)
    else:
        param.grad.addmm_(a, b)
    gradient_ready(param)


def _accumulate(param, value):
    if param.grad is None:
        param.grad = value
    else:
        param.grad.add_(value)
    gradient_ready(param)


class _FusedMLPFunction(torch.autograd.Function):
    """A whole plain MLP as one autograd node.

    Autograd's bookkeeping (a node per linear, transpose and activation, and a
    gradient accumulation per parameter) costs more than the arithmetic of a
    small MLP on a 256-row batch. This node runs the same ``addmm`` forward
    and a hand-written backward that accumulates weight gradients straight
    into ``.grad`` (``addmm_``), as autograd would. First-order gradients
    only; :class:`MLP` uses it only when gradients are being recorded.
    """

    @staticmethod
    def forward(ctx, x, activation, *params):
        act = ACTIVATIONS[activation]
        n_layers = len(params) // 2
        inputs = []
        h = x
        for i in range(n_layers):
            inputs.append(h)
            h = torch.addmm(params[2 * i + 1], h, params[2 * i].t())
            if i < n_layers - 1:
                h = act(h)
        ctx.save_for_backward(*inputs, *params[0::2])
        ctx.params = params
        ctx.activation = activation
        return h

    @staticmethod
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        n_layers = len(saved) // 2
        inputs, weights = saved[:n_layers], saved[n_layers:]
        derivative = _DERIVATIVES[ctx.activation]
        g = grad_out
        for i in reversed(range(n_layers)):
            weight, bias = ctx.params[2 * i], ctx.params[2 * i + 1]
            if weight.requires_grad:
                _accumulate_mm(weight, g.t(), inputs[i])
            if bias.requires_grad:
                _accumulate(bias, g.sum(0))
            if i > 0 or ctx.needs_input_grad[0]:
                g = torch.mm(g, weights[i])
                if i > 0:
                    g = derivative(g, inputs[i])
        grad_x = g if ctx.needs_input_grad[0] else None
        return (grad_x, None, *([None] * len(ctx.params)))


def set_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    """Point every :class:`GeneratorDropout` inside ``module`` at ``generator``."""
    for sub in module.modules():
        if isinstance(sub, GeneratorDropout):
            sub.generator = generator


def materialize(module: nn.Module) -> nn.Module:
    """``module.to_empty(device="cpu")``: uninitialised CPU storage for its meta tensors.

    ``to_empty`` calls ``torch.empty_like`` on each meta tensor, whose Python
    reference imports sympy the first time (about half a second, once per
    process: the first fit's one-off cost); ``torch.empty`` of the same
    shape and dtype does not.
    """
    return module._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device="cpu"))


class MLP(nn.Module):
    """A stack of ``Linear`` layers with an activation between them.

    Hidden layers are ``Linear -> [BatchNorm1d] -> activation -> [dropout]``.
    The last layer is linear (no activation, normalisation or dropout): it
    is the embedding of an encoder, or the output of a decoder.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``(n_in, h1, ..., n_out)``; at least two entries.
    activation : str, default="relu"
        A key of :data:`ACTIVATIONS`.
    dropout : float, default=0.0
        Dropout probability after each hidden activation.
    batch_norm : bool, default=False
        Batch normalisation after each hidden ``Linear``.
    generator : torch.Generator, optional
        Source of the initial weights (Glorot uniform, zero biases). ``None``
        uses torch's default generator.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        sizes = [int(s) for s in layer_sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"layer_sizes needs >= 2 positive sizes, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        # Built on the meta device so construction consumes no random numbers.
        self.linears = nn.ModuleList(
            nn.Linear(a, b, device="meta") for a, b in zip(sizes[:-1], sizes[1:])
        )
        hidden = sizes[1:-1]
        self.norms = (
            nn.ModuleList(nn.BatchNorm1d(h, device="meta") for h in hidden)
            if batch_norm and hidden
            else None
        )
        self.dropout = GeneratorDropout(dropout) if dropout > 0 and hidden else None
        materialize(self)
        self.reset_parameters(generator)

    @property
    def in_features(self) -> int:
        return self.linears[0].in_features

    @property
    def out_features(self) -> int:
        return self.linears[-1].out_features

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Glorot-uniform weights and zero biases; batch-norm to identity."""
        with torch.no_grad():
            for lin in self.linears:
                bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))
                lin.weight.uniform_(-bound, bound, generator=generator)
                lin.bias.zero_()
            if self.norms is not None:
                for norm in self.norms:
                    norm.reset_parameters()

    def __setstate__(self, state):
        super().__setstate__(state)
        self._act = ACTIVATIONS[self.activation]

    @property
    def fusable(self) -> bool:
        """Whether training can use the single-node fused path."""
        return (
            self.norms is None
            and self.dropout is None
            and self.activation in _DERIVATIVES
        )

    def forward(self, x):
        if torch.is_grad_enabled() and self.fusable:
            params = []
            for lin in self.linears:
                params += (lin.weight, lin.bias)
            return _FusedMLPFunction.apply(x, self.activation, *params)
        last = len(self.linears) - 1
        for i, lin in enumerate(self.linears):
            # F.linear on the layer's tensors skips nn.Module.__call__ overhead,
            # which matters at small batch sizes.
            x = F.linear(x, lin.weight, lin.bias)
            if i < last:
                if self.norms is not None:
                    x = self._normalise(self.norms[i], x)
                x = self._act(x)
                if self.dropout is not None:
                    x = self.dropout(x)
        return x


    def _normalise(self, norm, x):
        if self.training and x.shape[0] == 1:
            # a one-row batch (the last of an epoch) has no batch statistics:
            # it is normalised with the running ones, which it leaves as they are
            return F.batch_norm(
                x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                False, 0.0, norm.eps,
            )
        return norm(x)


class Autoencoder(nn.Module):
    """An encoder and a decoder; ``forward`` reconstructs its input."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x):
        return self.decoder(self.encoder(x))


class ClusteringAutoencoder(Autoencoder):
    """An autoencoder plus trainable cluster centres in its embedding (DEC/IDEC)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, centers: torch.Tensor):
        super().__init__(encoder, decoder)
        self.centers = nn.Parameter(centers.detach().clone())


#: Likelihoods of :class:`VAEModule`.
LIKELIHOODS = ("unit_gaussian", "gaussian", "bernoulli", "multinomial")


class PosteriorMean(nn.Module):
    """A VAE's encoder read as a plain encoder: the posterior mean, the first half of its output.

    Shares ``encoder``'s parameters; ``forward`` is what :meth:`VAEModule.posterior`
    returns first.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder(x).chunk(2, dim=1)[0]


class VAEModule(nn.Module):
    """A variational autoencoder: Gaussian posterior, Gaussian or Bernoulli likelihood.

    The encoder emits ``2 * n_components`` numbers per sample, the posterior's
    mean and log-variance. With ``likelihood="bernoulli"`` the decoder emits
    logits; with ``"multinomial"`` the logits of a softmax over the features
    (documents, user histories). With ``"unit_gaussian"`` it emits the mean of a unit-variance
    Gaussian ``p(x | z)`` (the log-likelihood is a squared error). With
    ``"gaussian"`` it emits the mean of a Gaussian whose
    per-feature standard deviation is not learned by gradient steps (slow:
    Adam moves it by about the learning rate per step) but set to its
    maximum-likelihood value, the root mean squared residual, as in
    "calibrated decoders" (Rybkin et al., 2021): in training, that of the
    batch; in evaluation, the buffer ``log_scale`` (a running average of
    the batch values, which :meth:`calibrate` can set exactly). The scale is
    floored at ``exp(min_log_scale)`` so that constant features cannot make
    the density infinite.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        n_features: int,
        likelihood: str = "gaussian",
        min_log_scale: float = -5.0,
        momentum: float = 0.1,
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.min_log_scale = min_log_scale
        self.momentum = momentum
        self.register_buffer("log_scale", torch.zeros(n_features))

    def posterior(self, x):
        """Mean and log-variance of ``q(z | x)``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def _ml_log_scale(self, sq_residual):
        floor = math.exp(2.0 * self.min_log_scale)
        return 0.5 * torch.log(sq_residual.mean(dim=0).clamp_min(floor))

    def log_likelihood(self, x, output):
        """Per-sample ``log p(x | z)`` given the decoder's raw ``output``."""
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, output)
        if self.likelihood == "multinomial":
            return multinomial_log_likelihood(x, output)
        if self.likelihood == "unit_gaussian":
            return gaussian_log_likelihood(x, output, self.log_scale)  # zeros
        if self.training:
            with torch.no_grad():
                log_scale = self._ml_log_scale((x - output).square())
                self.log_scale.lerp_(log_scale, self.momentum)
        else:
            log_scale = self.log_scale.clamp_min(self.min_log_scale)
        return gaussian_log_likelihood(x, output, log_scale)

    @torch.no_grad()
    def calibrate(self, x, n_draws: int = 32, chunk: int = 1024) -> None:
        """Set ``log_scale`` to its maximum-likelihood value on ``x``.

        That is the root mean squared residual per feature, averaged over the
        same posterior draws as :func:`~.losses.elbo`. ``x`` is a tensor or
        an iterable of row chunks (e.g. a batch source's ``chunks()``).
        """
        if self.likelihood != "gaussian":
            return
        was_training = self.training
        self.eval()
        total = torch.zeros_like(self.log_scale)
        n_rows = 0
        for xb in x.split(chunk) if isinstance(x, torch.Tensor) else x:
            z = posterior_draws(*self.posterior(xb), n_draws)
            out = decode_draws(self, z).reshape(z.shape[0], xb.shape[0], -1)
            total += (xb.unsqueeze(0) - out).square().sum(dim=(0, 1))
            n_rows += xb.shape[0] * z.shape[0]
        mean_sq = total / n_rows
        self.log_scale.copy_(self._ml_log_scale(mean_sq.unsqueeze(0)))
        self.train(was_training)

    def forward(self, x):
        return self.decoder(self.posterior(x)[0])


def build_autoencoder(
    n_features: int,
    n_components: int,
    hidden_layer_sizes: Sequence[int] = (),
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    encoder_outputs: int = 1,
    generator: torch.Generator | None = None,
) -> Autoencoder:
    """A mirrored MLP autoencoder.

    The encoder maps ``n_features -> hidden... -> n_components *
    encoder_outputs`` (``encoder_outputs=2`` gives a VAE encoder its mean and
    log-variance); the decoder mirrors it back to ``n_features``.
    """
    hidden = [int(h) for h in hidden_layer_sizes]
    encoder = MLP(
        [n_features, *hidden, n_components * encoder_outputs],
        activation,
        dropout,
        batch_norm,
        generator,
    )
    decoder = MLP(
        [n_components, *reversed(hidden), n_features],
        activation,
        dropout,
        batch_norm,
        generator,
    )
    return Autoencoder(encoder, decoder)

"""Convolutional encoders and decoders over flattened images, and wrappers for users' modules.

Nothing here imports scikit-learn. The estimators keep X two-dimensional
(one image a row, flattened in C order, channels first), so every network
here takes and returns flat rows: :class:`ConvEncoder` reshapes a row to
``(channels, height, width)`` before its convolutions, and
:class:`ConvDecoder` flattens its output back. Losses, the VAE's
likelihoods, the clusterer and chunked inference then work unchanged.

Layers are built on the ``meta`` device and initialised from an explicit
``torch.Generator`` (Glorot uniform, zero biases), as the MLPs are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .modules import ACTIVATIONS, MLP, Autoencoder, GeneratorDropout, materialize

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "FlatOutput",
    "ImageInput",
    "build_conv_autoencoder",
    "conv_geometry",
]

#: Kernel and stride of every strided (transposed) convolution; padding 1.
#: A kernel divisible by the stride gives transposed convolutions without
#: checkerboard artefacts; each layer halves the height and width (rounding
#: down); a side of length 1 is left alone (kernel 1, stride 1).
KERNEL, STRIDE = 4, 2


def _side(size: int) -> tuple[int, int, int]:
    """(kernel, stride, padding) along a side of ``size`` pixels."""
    return (1, 1, 0) if size == 1 else (KERNEL, STRIDE, 1)


def conv_geometry(height: int, width: int, n_layers: int) -> list[tuple[int, int]]:
    """Feature-map sizes ``[(h0, w0), (h1, w1), ...]`` through ``n_layers`` convolutions."""
    sizes = [(int(height), int(width))]
    for _ in range(n_layers):
        h, w = sizes[-1]
        sizes.append(tuple(s if s == 1 else (s + 2 - KERNEL) // STRIDE + 1 for s in (h, w)))
    return sizes


#: Activations whose layers get He initialisation (variance 2 / fan_in).
_HE_ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu")


def _glorot_(weight: torch.Tensor, fan_in: int, fan_out: int, generator) -> None:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    weight.uniform_(-bound, bound, generator=generator)


class _ConvStack(nn.Module):
    """Shared parts: activation, optional batch norm and dropout, initialisation."""

    def _setup(self, convs, norm_sizes, activation, dropout, batch_norm, generator):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        self.convs = nn.ModuleList(convs)
        self.norms = (
            nn.ModuleList(nn.BatchNorm2d(c, device="meta") for c in norm_sizes)
            if batch_norm and norm_sizes
            else None
        )
        self.dropout = GeneratorDropout(dropout) if dropout > 0 else None
        # Channels-last weights and feature maps: measured up to 2x faster per
        # training step on the CPU (oneDNN; 8x8 images), and the layout cuDNN
        # prefers; outputs are reshaped back to C order.
        self.channels_last = True
        materialize(self)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """He-uniform weights for ReLU-like activations (Glorot otherwise), zero biases.

        The conv stack, its dense layers and the mirrored decoder make a deep
        path; Glorot's variance halves the signal at every ReLU, and the
        network then sat on the predict-the-mean plateau for tens of epochs.
        """
        he = self.activation in _HE_ACTIVATIONS
        with torch.no_grad():
            weights = []
            for conv in self.convs:
                w = conv.weight  # Conv: (out, in, kh, kw); ConvTranspose: (in, out, kh, kw)
                receptive = w.shape[2] * w.shape[3]
                fan_in = (w.shape[0] if isinstance(conv, nn.ConvTranspose2d) else w.shape[1])
                weights.append((w, fan_in * receptive, (sum(w.shape[:2]) * receptive) - fan_in * receptive))
                conv.bias.zero_()
            for child in self.children():
                if isinstance(child, MLP):
                    child.reset_parameters(generator)
                    weights += [(lin.weight, lin.in_features, lin.out_features) for lin in child.linears]
            for w, fan_in, fan_out in weights:
                if he:
                    bound = math.sqrt(6.0 / fan_in)
                    w.uniform_(-bound, bound, generator=generator)
                else:
                    _glorot_(w, fan_in, fan_out, generator)
            if self.norms is not None:
                for norm in self.norms:
                    norm.reset_parameters()

    def __setstate__(self, state):
        super().__setstate__(state)
        self._act = ACTIVATIONS[self.activation]

    def _conv(self, conv, x):
        """``conv(x)``, channels-last when set.

        The weight is converted on the fly: the optimiser keeps parameters as
        views of one contiguous buffer, and oneDNN runs the small kernels
        about twice as fast with channels-last weights and inputs.
        """
        weight = conv.weight
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            weight = weight.contiguous(memory_format=torch.channels_last)
        if isinstance(conv, nn.ConvTranspose2d):
            return F.conv_transpose2d(
                x, weight, conv.bias, conv.stride, conv.padding, conv.output_padding
            )
        return F.conv2d(x, weight, conv.bias, conv.stride, conv.padding)

    def _hidden(self, x, i):
        if self.norms is not None and i < len(self.norms):
            x = self.norms[i](x)
        x = self._act(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


class ConvEncoder(_ConvStack):
    """Flat images -> strided convolutions -> flatten -> MLP -> ``n_out`` numbers.

    Parameters
    ----------
    image_shape : (channels, height, width)
    channels : sequence of int
        Output channels of each strided convolution.
    hidden : sequence of int
        Widths of the dense layers between the flattened feature maps and
        the output.
    n_out : int
        Output width (the code, or a VAE's mean and log-variance).
    activation, dropout, batch_norm, generator
        As for :class:`~.modules.MLP`.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int],
        hidden: Sequence[int],
        n_out: int,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        c, h, w = self.image_shape
        channels = [int(ch) for ch in channels]
        sizes = conv_geometry(h, w, len(channels))
        convs = []
        for c_in, c_out, (sh, sw) in zip([c, *channels[:-1]], channels, sizes[:-1]):
            (kh, st_h, ph), (kw, st_w, pw) = _side(sh), _side(sw)
            convs.append(
                nn.Conv2d(c_in, c_out, (kh, kw), (st_h, st_w), (ph, pw), device="meta")
            )
        self.feature_shape = (channels[-1], *sizes[-1])
        self.mlp = MLP(
            [math.prod(self.feature_shape), *hidden, n_out], activation, dropout,
            batch_norm, generator,
        )
        self._setup(convs, channels, activation, dropout, batch_norm, generator)

    def forward(self, x):
        x = x.reshape(x.shape[0], *self.image_shape)
        for i, conv in enumerate(self.convs):
            x = self._hidden(self._conv(conv, x), i)
        return self.mlp(x.flatten(1))


class ConvDecoder(_ConvStack):
    """The mirror of a :class:`ConvEncoder`: MLP -> transposed convolutions -> flat images.

    ``output_padding`` makes every transposed convolution restore the exact
    size its encoder counterpart reduced, so odd sides (7 = 28 / 4) come back.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: Sequence[int],
        hidden: Sequence[int],
        n_in: int,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        c, h, w = self.image_shape
        channels = [int(ch) for ch in channels]
        sizes = conv_geometry(h, w, len(channels))
        self.feature_shape = (channels[-1], *sizes[-1])
        self.mlp = MLP(
            [n_in, *hidden, math.prod(self.feature_shape)], activation, dropout,
            batch_norm, generator,
        )
        outs = [c, *channels[:-1]]
        convs = []
        for i in reversed(range(len(channels))):
            (sh, sw), (th, tw) = sizes[i + 1], sizes[i]
            (kh, st_h, ph), (kw, st_w, pw) = _side(th), _side(tw)
            pad_out = (th - ((sh - 1) * st_h - 2 * ph + kh), tw - ((sw - 1) * st_w - 2 * pw + kw))
            convs.append(
                nn.ConvTranspose2d(
                    channels[i], outs[i], (kh, kw), (st_h, st_w), (ph, pw), pad_out,
                    device="meta",
                )
            )
        self._setup(convs, list(reversed(outs[1:])), activation, dropout, batch_norm, generator)

    def forward(self, z):
        x = self._act(self.mlp(z)).reshape(z.shape[0], *self.feature_shape)
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            x = self._conv(conv, x)
            if i < last:
                x = self._hidden(x, i)
        return x.reshape(z.shape[0], -1)


def build_conv_autoencoder(
    image_shape: Sequence[int],
    n_components: int,
    channels: Sequence[int] = (32, 64, 128),
    hidden: Sequence[int] = (),
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    encoder_outputs: int = 1,
    generator: torch.Generator | None = None,
) -> Autoencoder:
    """A mirrored convolutional autoencoder over flat rows of ``image_shape`` images."""
    if len(channels) < 1 or min(int(c) for c in channels) < 1:
        raise ValueError(f"channels needs >= 1 positive width, got {list(channels)}")
    encoder = ConvEncoder(
        image_shape, channels, hidden, n_components * encoder_outputs,
        activation, dropout, batch_norm, generator,
    )
    decoder = ConvDecoder(
        image_shape, channels, list(reversed(hidden)), n_components,
        activation, dropout, batch_norm, generator,
    )
    return Autoencoder(encoder, decoder)


class ImageInput(nn.Module):
    """Hands a user's encoder each flat row reshaped to ``(n, *shape)``."""

    def __init__(self, module: nn.Module, shape: Sequence[int] | None):
        super().__init__()
        self.module = module
        self.shape = None if shape is None else tuple(int(s) for s in shape)

    def forward(self, x):
        if self.shape is not None:
            x = x.reshape(x.shape[0], *self.shape)
        return self.module(x)


class FlatOutput(nn.Module):
    """Flattens a user's decoder output to one row per sample (C order)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, z):
        out = self.module(z)
        return out.reshape(out.shape[0], -1)

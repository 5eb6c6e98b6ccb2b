"""Images and users' torch modules behind the autoencoder estimators.

The autoencoders' ``image_shape``, ``conv_channels``, ``encoder`` and
``decoder`` parameters: which network a fit builds (an MLP, a convolutional
network over flattened images, or the user's modules), how it is described
for ``warm_start``'s signature check, and the checks that turn image-shaped
input into a ValueError that shows the fix.
"""

from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import torch
from torch import nn

from ._nn import Autoencoder
from ._nn import FlatOutput, ImageInput, build_conv_autoencoder

#: Constraints of the parameters this module serves.
IMAGE_CONSTRAINTS = {
    "image_shape": [None, tuple, list],
    "conv_channels": ["array-like"],
    "encoder": [None, nn.Module],
    "decoder": [None, nn.Module],
}

#: ``hidden_layer_sizes="auto"``: dense layers of the MLP, and of the conv
#: network between its feature maps and the code. None for the conv network
#: (its flattened feature maps map straight to the code, as in DCEC): on
#: Fashion-MNIST (5 000 images, 10 epochs, batches of 256 and of 64) held-out
#: MSE 8% lower than with (128, 64), at about the same cost.
AUTO_HIDDEN = {"mlp": (128, 64), "conv": ()}

#: ``batch_size="auto"`` of a conv network: a conv step on the CPU costs
#: about its batch's share of an epoch, so smaller batches buy more Adam
#: steps an epoch at little cost (Fashion-MNIST, 5 000 images, 10 epochs:
#: held-out MSE 27% lower with 64 than with 256, epoch time within 10%;
#: 32 gained 8% more but took 1.6x the time).
CONV_AUTO_BATCH_SIZE = 64

_FIX = "pass one image a row, flattened in C order, channels first: X.reshape(len(X), -1)"


def check_two_dimensional(X) -> None:
    """A ValueError showing the fix when X holds images as a 3-D or 4-D array."""
    ndim = getattr(X, "ndim", None)
    if ndim is None and isinstance(X, (list, tuple)):
        try:
            ndim = np.ndim(X)
        except ValueError:  # ragged: let scikit-learn's validation say so
            return
    if isinstance(ndim, int) and ndim > 2:
        shape = tuple(getattr(X, "shape", np.shape(X)))
        channels_last = (
            " (channels-last images (n, height, width, channels): "
            "X.transpose(0, 3, 1, 2).reshape(len(X), -1))"
            if ndim == 4
            else ""
        )
        raise ValueError(
            f"X has shape {shape}, but the estimators take a 2-D array: {_FIX}"
            f"{channels_last}, and set image_shape={shape[1:]} on the autoencoder."
        )


def resolve_image_shape(image_shape, n_features: int) -> tuple[int, int, int] | None:
    """``image_shape`` as ``(channels, height, width)`` for rows of ``n_features``.

    ``(height, width)`` means one channel; one entry may be -1, inferred
    from ``n_features`` as in ``numpy.reshape``. None stays None.
    """
    if image_shape is None:
        return None
    shape = list(image_shape)
    if len(shape) not in (2, 3) or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and (s >= 1 or s == -1)
        for s in shape
    ) or shape.count(-1) > 1:
        raise ValueError(
            f"image_shape must be (height, width) or (channels, height, width) of "
            f"positive ints (one may be -1, inferred), got {image_shape!r}."
        )
    if len(shape) == 2:
        shape = [1, *shape]
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if n_features % known:
            raise ValueError(
                f"X has {n_features} features, which image_shape={tuple(image_shape)} "
                f"cannot split into images (not a multiple of {known}); {_FIX}."
            )
        shape[shape.index(-1)] = n_features // known
    elif known != n_features:
        raise ValueError(
            f"X has {n_features} features, but image_shape={tuple(image_shape)} "
            f"needs {known} a row; {_FIX}, or correct image_shape."
        )
    return tuple(int(s) for s in shape)


def auto_hidden_sizes(est) -> tuple[int, ...]:
    """What ``hidden_layer_sizes="auto"`` means for ``est``'s network."""
    conv = getattr(est, "image_shape", None) is not None
    return AUTO_HIDDEN["conv" if conv else "mlp"]


def uses_custom_modules(est) -> bool:
    """Whether ``est`` trains the user's ``encoder`` / ``decoder``; checks they come together."""
    given = (getattr(est, "encoder", None) is not None, getattr(est, "decoder", None) is not None)
    if given[0] != given[1]:
        raise ValueError(
            "encoder and decoder are given together: pass both torch modules (the "
            "encoder maps a batch to its code, the decoder maps codes back), or "
            "neither for the built-in network."
        )
    return given[0]


def module_fingerprint(module: nn.Module | None):
    """What identifies a user's module for ``warm_start``: its class, layers and shapes."""
    if module is None:
        return None
    shapes = tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())
    return (f"{type(module).__module__}.{type(module).__qualname__}", repr(module), shapes)


def network_signature(est, n_features: int) -> tuple:
    """The image and custom-module entries of ``warm_start``'s network signature."""
    image_shape = getattr(est, "image_shape", None)  # subclasses may lack the parameters
    return (
        ("image_shape", resolve_image_shape(image_shape, n_features)),
        ("conv_channels", conv_channels(est) if image_shape is not None else None),
        ("encoder", module_fingerprint(getattr(est, "encoder", None))),
        ("decoder", module_fingerprint(getattr(est, "decoder", None))),
    )


def conv_channels(est) -> tuple[int, ...]:
    channels = np.atleast_1d(np.asarray(est.conv_channels)).ravel().tolist()
    if not channels or any(not float(c).is_integer() or c < 1 for c in channels):
        raise ValueError(
            f"conv_channels must be one or more positive integers, got {est.conv_channels!r}."
        )
    return tuple(int(c) for c in channels)


def build_network(est, n_features: int, hidden: list[int], generator, mlp_builder):
    """The network a fit trains: the user's modules, a conv net, or ``mlp_builder()``."""
    shape = resolve_image_shape(getattr(est, "image_shape", None), n_features)
    if uses_custom_modules(est):
        return _custom_network(est, n_features, shape)
    if shape is None:
        return mlp_builder()
    return build_conv_autoencoder(
        shape,
        est.n_components,
        conv_channels(est),
        hidden,
        activation=est.activation,
        dropout=est.dropout,
        batch_norm=est.batch_norm,
        encoder_outputs=est._encoder_outputs,
        generator=generator,
    )


def _custom_network(est, n_features: int, shape) -> Autoencoder:
    """Copies of the user's modules (never changed), shape-checked on a dummy batch."""
    module = Autoencoder(
        ImageInput(copy.deepcopy(est.encoder), shape), FlatOutput(copy.deepcopy(est.decoder))
    )
    n_code = est.n_components * est._encoder_outputs
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            params = list(module.parameters())
            like = params[0] if params else torch.zeros(())
            x = torch.zeros(2, n_features, dtype=like.dtype, device=like.device)
            code = module.encoder(x)
            if tuple(code.shape) != (2, n_code):
                raise ValueError(
                    f"encoder maps a batch of 2 samples to shape {tuple(code.shape)}, but "
                    f"{type(est).__name__} needs (2, {n_code})"
                    + (" (mean and log-variance of each of n_components)" if n_code != est.n_components else "")
                    + f" with n_components={est.n_components}."
                )
            out = module.decoder(code[:, : est.n_components])
            if tuple(out.shape) != (2, n_features):
                raise ValueError(
                    f"decoder maps 2 codes to {tuple(out.shape)} values, but X has "
                    f"{n_features} features a row; make it output (2, {n_features})"
                    + (f" or (2, *{shape})." if shape is not None else ".")
                )
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"the encoder/decoder failed on a dummy batch: {str(exc).rstrip('.')}. The encoder gets a float32 "
            f"batch of shape (n, {n_features})"
            + (f" reshaped to (n, *{shape})" if shape is not None else "")
            + f" and must return (n, {n_code}); the decoder gets (n, {est.n_components})."
        ) from exc
    module.train(was_training)
    return module


@contextlib.contextmanager
def accelerated(module: nn.Module, device: torch.device):
    """cuDNN autotuning while a conv network trains on CUDA; the flag is restored.

    The autotuner picks the fastest convolution algorithm for the fixed
    batch shapes of a fit. (Conv networks run channels-last everywhere: see
    :mod:`._nn.conv`.)
    """
    has_conv = any(hasattr(sub, "channels_last") for sub in module.modules())
    if device.type != "cuda" or not has_conv:
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous

"""The representation contract: what the clusterer, the detector and inspection build on.

A *representation* is a fitted transformer whose ``transform`` runs a torch
network over X's rows. It offers:

- ``transform(X)``: the code, an ndarray of shape ``(n_samples, n_components)``.
- ``encoder_``: the live ``nn.Module`` that maps the model input, a float
  tensor of shape ``(n, n_features_in_)`` (X's validated rows, densified;
  any fixed input projection is its first layer), to that code. It shares
  its parameters with the estimator: a clusterer refines it in place.
- ``get_encoder()``: a copy of ``encoder_`` for inspection and export: on the
  CPU, float32, in evaluation mode, its parameters frozen
  (``requires_grad=False``), differentiable with respect to its input.

:class:`~sk_deepunsup.DeepAutoencoder`,
:class:`~sk_deepunsup.VariationalAutoencoder` (the posterior mean),
:class:`~sk_deepunsup.NeighborEmbedding` and the N2D pair
(:class:`~sk_deepunsup._code_embedding.CodeNeighborEmbedding`) satisfy it;
so does an autoencoder built around a user's modules.
"""

from __future__ import annotations

import copy

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._nn import set_generator

__all__ = ["RepresentationMixin", "apply_module", "frozen_copy"]


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` on the CPU, float32, in evaluation mode, parameters frozen."""
    module = copy.deepcopy(module).to(device="cpu", dtype=torch.float32).eval()
    set_generator(module, None)
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def apply_module(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``: the forward that :func:`~._tensors.infer` runs for an encoder."""
    return module(x)


class RepresentationMixin:
    """``get_encoder()`` from the estimator's ``encoder_`` (see the module's contract)."""

    def get_encoder(self) -> nn.Module:
        """The network that maps the model input to the code ``transform`` returns.

        Returns
        -------
        encoder : torch.nn.Module
            A copy (changing it does not change the estimator) on the CPU, in
            float32 and evaluation mode, with frozen parameters. It maps a float
            tensor of shape ``(n, n_features_in_)``, X's rows as ``transform``
            reads them, to a tensor of shape ``(n, n_components)`` equal to
            ``transform(X)`` up to float32 rounding, and is differentiable with
            respect to its input.
        """
        check_is_fitted(self)
        return frozen_copy(self.encoder_)

"""Item-item pieces of the recommenders: EASE's closed form and its blend with a deep network.

EASE (Steck 2019, "Embarrassingly shallow autoencoders for sparse data") is a
linear autoencoder over items, ``X ~ X B`` with ``diag(B) = 0``, solved in
closed form from the item-item Gram matrix ``G = X'X``:
``P = (G + l2 I)^-1``, ``B = -P / diag(P)`` (column-wise), ``diag(B) = 0``.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

__all__ = [
    "L2_LADDER",
    "Blend",
    "ItemItem",
    "check_ease_memory",
    "dense_product",
    "ease_memory_bytes",
    "ease_weights",
    "gram_matrix",
    "standardize_rows",
]

#: The values of EASE's ``l2`` that a validated search tries (from 500 outwards).
L2_LADDER = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)


def ease_memory_bytes(n_items: int, itemsize: int = 8) -> int:
    """Peak memory of :func:`ease_weights` for ``n_items`` items: about three n x n matrices."""
    return 3 * n_items * n_items * itemsize


def check_ease_memory(n_items: int) -> None:
    """Refuse (ValueError) an EASE solve whose item-item matrices would not fit in free memory."""
    need = ease_memory_bytes(n_items)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on this platform: do not guess
        return
    if need > available:
        raise ValueError(
            f"EASE needs about {need / 2**30:.1f} GiB for its {n_items} x {n_items} "
            f"item-item matrices, more than the {available / 2**30:.1f} GiB of free "
            "memory; keep fewer items (e.g. drop the rarest) or use model='vae', "
            "whose memory grows linearly with the number of items."
        )


def gram_matrix(X, chunk_elements: int) -> torch.Tensor:
    """X'X (items x items, float64) of a sparse matrix, an array or row-sliceable storage.

    Storage that is neither (memmaps, h5py, zarr) is read in chunks of about
    ``chunk_elements * 64`` values.
    """
    if sp.issparse(X):
        gram = (X.T @ X).toarray()
    elif isinstance(X, np.ndarray) and not isinstance(X, np.memmap):
        gram = X.T.astype(np.float64) @ X.astype(np.float64)
    else:
        gram = np.zeros((X.shape[1], X.shape[1]))
        step = max(1, chunk_elements * 64 // max(X.shape[1], 1))
        for start in range(0, X.shape[0], step):
            rows = np.asarray(X[start : start + step], dtype=np.float64)
            gram += rows.T @ rows
    return torch.as_tensor(np.ascontiguousarray(gram, dtype=np.float64))


def dense_product(X, weight: torch.Tensor) -> np.ndarray:
    """``X @ weight`` as a float64 numpy array (X sparse or dense, weight a tensor)."""
    return np.asarray(X @ weight.detach().cpu().numpy().astype(np.float64, copy=False))


def ease_weights(gram: torch.Tensor, l2: float) -> torch.Tensor:
    """EASE's item-item matrix ``B`` from the Gram matrix ``gram`` (n x n, symmetric).

    Only the items with interactions (non-zero diagonal) enter the solve: the
    rows and columns of the others are exactly zero in ``B``. The inverse is
    taken through a Cholesky factorisation (``gram + l2 I`` is positive
    definite for ``l2 > 0``).
    """
    active = torch.nonzero(gram.diagonal() > 0).ravel()
    B = torch.zeros(gram.shape, dtype=gram.dtype, device=gram.device)
    if active.numel() == 0:
        return B
    G = gram.index_select(0, active).index_select(1, active)
    G.diagonal().add_(l2)
    P = torch.cholesky_inverse(torch.linalg.cholesky(G))
    del G
    P.div_(-P.diagonal())
    P.diagonal().zero_()
    B[active.unsqueeze(1), active.unsqueeze(0)] = P
    return B


def standardize_rows(scores: torch.Tensor) -> torch.Tensor:
    """Each row minus its mean, over its standard deviation (constant rows: zeros)."""
    centred = scores - scores.mean(dim=1, keepdim=True)
    std = centred.pow(2).mean(dim=1, keepdim=True).sqrt()
    return centred / torch.where(std > 0, std, torch.ones_like(std))


class ItemItem(nn.Module):
    """Scores ``x @ weight`` with a fixed item-item matrix (EASE's ``B``)."""

    def __init__(self, n_items: int, weight: torch.Tensor | None = None):
        super().__init__()
        if weight is None:
            weight = torch.zeros(n_items, n_items)
        self.weight = nn.Parameter(weight.contiguous(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Histories are sparse: on the CPU a sparse product is about twice as fast.
        if x.device.type == "cpu" and x.layout == torch.strided and x.dim() == 2:
            if int(torch.count_nonzero(x)) < 0.1 * x.numel():
                return torch.sparse.mm(x.to_sparse(), self.weight.to(x.dtype))
        return x @ self.weight


class Blend(nn.Module):
    """``(1 - mix) * z(item_item(x)) + mix * z(deep scores of x)``, z standardising each row.

    ``network`` is a Mult-VAE (scored at its posterior mean, ``variational``)
    or a Mult-DAE; its scores are the decoder's logits. Standardising each
    user's two score vectors puts them on one scale, so ``mix`` is the share of
    the deep branch in the ranking (VASP's idea of a shallow item-item path
    beside a deep one, combined here after training).
    """

    def __init__(self, item_item: ItemItem, network: nn.Module, variational: bool, mix: float = 0.5):
        super().__init__()
        self.item_item = item_item
        self.network = network
        self.variational = variational
        self.register_buffer("mix", torch.tensor(float(mix)))

    def deep_scores(self, x: torch.Tensor) -> torch.Tensor:
        if self.variational:
            return self.network.decoder(self.network.posterior(x)[0])
        return self.network.decoder(self.network.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = standardize_rows(self.item_item(x))
        deep = standardize_rows(self.deep_scores(x))
        return (1 - self.mix) * shallow + self.mix * deep

"""Item-item pieces of the recommenders: EASE's closed form and its blend with a deep network.

EASE (Steck 2019, "Embarrassingly shallow autoencoders for sparse data") is a
linear autoencoder over items, ``X ~ X B`` with ``diag(B) = 0``, solved in
closed form from the item-item Gram matrix ``G = X'X``:
``P = (G + l2 I)^-1``, ``B = -P / diag(P)`` (column-wise), ``diag(B) = 0``.

With the spectrum of ``G``, ``G = V diag(s) V'`` (``s > 0``), every penalty is
cheap: ``P = I / l2 - V diag(s / (l2 (s + l2))) V'``. When there are fewer
users than items the spectrum comes from the users' Gram matrix ``X X'``
(``V = X' U / sqrt(s)``), far smaller than ``X'X``.
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
    "ease_memory_bytes",
    "ease_scorer",
    "ease_solve",
    "ease_spectrum",
    "ease_weights",
    "gram_matrix",
    "spectral_ease_weights",
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


def _in_memory_array(X) -> bool:
    """Whether X is a numpy array held in memory (not a memory map or other row storage)."""
    return isinstance(X, np.ndarray) and not isinstance(X, np.memmap)


def _active_items(V: torch.Tensor) -> torch.Tensor:
    """Indices of the items (rows of the spectrum's ``V``) that have interactions."""
    return torch.nonzero((V != 0).any(dim=1)).ravel()


def gram_matrix(X, chunk_elements: int) -> torch.Tensor:
    """X'X (items x items, float64) of a sparse matrix, an array or row-sliceable storage.

    Storage that is neither (memmaps, h5py, zarr) is read in chunks of about
    ``chunk_elements * 64`` values.
    """
    if sp.issparse(X):
        gram = (X.T @ X).toarray()
    elif _in_memory_array(X):
        gram = X.T.astype(np.float64) @ X.astype(np.float64)
    else:
        gram = np.zeros((X.shape[1], X.shape[1]))
        step = max(1, chunk_elements * 64 // max(X.shape[1], 1))
        for start in range(0, X.shape[0], step):
            rows = np.asarray(X[start : start + step], dtype=np.float64)
            gram += rows.T @ rows
    return torch.as_tensor(np.ascontiguousarray(gram, dtype=np.float64))


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


def ease_spectrum(
    X, chunk_elements: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``V`` (n_items x r) and ``s`` (r, all > 0) with ``X'X = V diag(s) V'``, float64.

    A sparse matrix or an in-memory array with fewer rows than columns is
    decomposed through its rows' Gram matrix ``X X'`` (rows x rows); other
    input through ``X'X`` (:func:`gram_matrix`). Directions with a negligible
    eigenvalue (below ``1e-10`` of the largest) are dropped.
    """
    in_memory = sp.issparse(X) or _in_memory_array(X)
    if in_memory and X.shape[0] < X.shape[1]:
        Xd = X.astype(np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
        K = Xd @ Xd.T
        K = K.toarray() if sp.issparse(K) else K
        K = torch.as_tensor(np.ascontiguousarray(K), device=device)
        s, U = torch.linalg.eigh(K)
        keep = s > 1e-10 * s.max().clamp(min=1e-300)
        s = s[keep]
        V = torch.as_tensor(np.asarray(Xd.T @ U[:, keep].cpu().numpy()), device=device) / s.sqrt()
        return V, s
    s, V = torch.linalg.eigh(gram_matrix(X, chunk_elements).to(device))
    keep = s > 1e-10 * s.max().clamp(min=1e-300)
    return V[:, keep], s[keep]


def spectral_ease_weights(spectrum: tuple[torch.Tensor, torch.Tensor], l2: float) -> torch.Tensor:
    """EASE's ``B = I - P diag(P)^-1`` (so ``diag(B) = 0``) from :func:`ease_spectrum`.

    ``P = (X'X + l2 I)^-1``; items without interactions get zero rows and
    columns, as in :func:`ease_weights`.
    """
    V, s = spectrum
    active = _active_items(V)
    Va = V.index_select(0, active)
    shrink = s / (l2 * (s + l2))
    P = -(Va * shrink) @ Va.T
    P.diagonal().add_(1.0 / l2)
    P.div_(-P.diagonal().clone())
    P.diagonal().zero_()
    B = torch.zeros(V.shape[0], V.shape[0], dtype=V.dtype, device=V.device)
    B[active.unsqueeze(1), active.unsqueeze(0)] = P
    return B


def ease_scorer(spectrum: tuple[torch.Tensor, torch.Tensor], history):
    """``score(l2)``: the float64 array ``history @ B`` of EASE with penalty ``l2``.

    ``history`` is a dense or sparse users x items matrix; each call costs
    about ``n_users * r * n_items`` (``r`` the spectrum's size), without
    forming ``B``: ``history - (history P) / diag(P)`` over the items with
    interactions (the others' columns of ``B`` are zero).
    """
    V, s = spectrum
    active = _active_items(V)
    H = history.toarray() if sp.issparse(history) else np.asarray(history)
    H = torch.as_tensor(H, dtype=V.dtype, device=V.device)
    Ha, Va = H.index_select(1, active), V.index_select(0, active)
    HV, V2 = Ha @ Va, Va * Va

    def score(l2: float) -> np.ndarray:
        shrink = s / (l2 * (s + l2))
        HP = Ha / l2 - (HV * shrink) @ Va.T
        out = torch.zeros_like(H)
        out[:, active] = Ha - HP / (1.0 / l2 - V2 @ shrink)
        return out.cpu().numpy()

    return score


def ease_solve(X, l2: float, chunk_elements: int, device: torch.device) -> torch.Tensor:
    """EASE's ``B`` for X with penalty ``l2`` (float64), by the cheaper route.

    With ``u`` users and ``n`` items with interactions: through the users'
    Gram matrix (:func:`ease_spectrum`, about ``10 u**3 + 2 u n**2``
    operations) when that is fewer than a Cholesky factorisation and inverse
    of ``X'X + l2 I`` (:func:`ease_weights`, about ``n**3``); streamed input
    always takes the latter.
    """
    if sp.issparse(X):
        n = int(np.unique(sp.csr_matrix(X).indices).size)  # stored zeros: only the route changes
    elif _in_memory_array(X):
        n = int(np.count_nonzero(X.any(axis=0)))
    else:
        n = 0  # streamed: no spectral route
    u = X.shape[0]
    if 10 * u**3 + 2 * u * n**2 < n**3:
        return spectral_ease_weights(ease_spectrum(X, chunk_elements, device), l2)
    return ease_weights(gram_matrix(X, chunk_elements).to(device), l2)


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

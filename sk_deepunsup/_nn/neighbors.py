"""Neighbour-embedding losses: learn a map whose distances mirror a neighbour graph.

The estimator layer builds a weighted k-nearest-neighbour graph of the data
(a fuzzy simplicial set, as in UMAP) and hands its edges to the engine as the
training "data": each batch is a set of edges ``(head, tail, weight)``. The
objective embeds both ends of every edge with the network, and contrasts the
pair against *negative* pairs formed by re-pairing the batch's heads with
other points of the batch (the in-batch negative sampling of parametric
UMAP: no extra forward pass).

Two losses are offered:

- ``"umap"``: UMAP's fuzzy cross-entropy under negative sampling. A pair at
  distance ``d`` in the embedding is "connected" with probability
  ``q(d) = 1 / (1 + a d^(2b))``; an edge contributes ``-log q`` and each of
  its negative pairs ``-log(1 - q)``.
- ``"infonce"``: a contrastive (InfoNCE) loss with the Cauchy kernel
  ``q(d) = 1 / (1 + d^2)``: ``-log(q_pos / (q_pos + sum q_neg))``. With many
  negatives it behaves like t-SNE's normalised objective (Damrich et al.,
  "From t-SNE to UMAP with contrastive learning", ICLR 2023).

Nothing here imports scikit-learn.
"""

from __future__ import annotations

import torch

from .losses import reconstruction_loss

__all__ = [
    "NEIGHBOR_LOSSES",
    "Embedder",
    "edge_kernel",
    "infonce_edge_loss",
    "negative_pairs",
    "neighbor_embedding_objective",
    "umap_edge_loss",
]

#: The neighbour-embedding losses of :func:`neighbor_embedding_objective`.
NEIGHBOR_LOSSES = ("umap", "infonce")

_EPS = 1e-4


class Embedder(torch.nn.Module):
    """An encoder, and optionally a decoder that maps the embedding back.

    ``forward`` embeds. The decoder (``None`` when there is no reconstruction
    term) is only used by the training objective.
    """

    def __init__(self, encoder: torch.nn.Module, decoder: torch.nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x):
        return self.encoder(x)


def edge_kernel(sq_dist, a: float = 1.0, b: float = 1.0):
    """Similarity ``1 / (1 + a * sq_dist^b)`` of pairs at squared distance ``sq_dist``."""
    if b == 1.0:
        return 1.0 / (1.0 + a * sq_dist)
    return 1.0 / (1.0 + a * sq_dist.clamp_min(1e-12).pow(b))


def negative_pairs(z_head, z_tail, n_negatives: int, generator=None):
    """``n_negatives`` random partners per head, drawn from the batch's points.

    Returns a tensor of shape ``(n_negatives, batch, n_components)``: row
    ``r`` holds the ``r``-th negative partner of every head, drawn uniformly
    from the batch's heads and tails (a point may, rarely, meet its own
    neighbour or itself; with batches of hundreds of edges this is noise).
    """
    pool = torch.cat([z_head, z_tail])
    idx = torch.randint(
        pool.shape[0],
        (n_negatives, z_head.shape[0]),
        generator=generator,
        device=pool.device,
    )
    # index_select's backward sums repeated rows in a fixed order; the
    # backward of advanced indexing (pool[idx]) does not on several threads
    return pool.index_select(0, idx.flatten()).view(*idx.shape, pool.shape[1])


def umap_edge_loss(z_head, z_tail, z_neg, weight, a: float, b: float):
    """UMAP's cross-entropy for a batch of edges and their negative pairs.

    ``-log q(head, tail)`` attracts neighbours; ``-log(1 - q(head, neg))``
    repels the negatives. Each edge and its negatives are weighted by the
    edge's membership strength (sampling edges in proportion to their weight,
    as UMAP does, has the same expectation). Mean over the batch.
    """
    q_pos = edge_kernel((z_head - z_tail).square().sum(dim=1), a, b)
    q_neg = edge_kernel((z_head.unsqueeze(0) - z_neg).square().sum(dim=2), a, b)
    attract = -torch.log(q_pos.clamp_min(_EPS))
    repel = -torch.log((1.0 - q_neg).clamp_min(_EPS)).sum(dim=0)
    return (weight * (attract + repel)).sum() / weight.sum()


def infonce_edge_loss(z_head, z_tail, z_neg, weight):
    """InfoNCE with a Cauchy kernel: ``-log(q_pos / (q_pos + sum_k q_neg_k))``."""
    sq_pos = (z_head - z_tail).square().sum(dim=1)
    sq_neg = (z_head.unsqueeze(0) - z_neg).square().sum(dim=2)
    # log q = -log1p(d^2); logsumexp over the positive and the negatives.
    log_q = -torch.log1p(torch.cat([sq_pos.unsqueeze(0), sq_neg]))
    loss = torch.logsumexp(log_q, dim=0) - log_q[0]
    return (weight * loss).sum() / weight.sum()


def neighbor_embedding_objective(
    data: torch.Tensor,
    loss: str = "umap",
    *,
    a: float = 1.0,
    b: float = 1.0,
    negative_sample_rate: int = 5,
    reconstruction_weight: float = 0.0,
    reconstruction: str = "mse",
    noise: float = 0.0,
    generator: torch.Generator | None = None,
):
    """Training loss of a neighbour embedding, for :class:`~.training.Trainer`.

    Batches are edges ``(head, tail, weight)``: row indices into ``data`` (a
    tensor, or a batch source from :mod:`.data`, e.g. sparse rows densified
    per batch) and the edge's membership strength. ``module`` is an :class:`Embedder`; with
    ``reconstruction_weight > 0`` its decoder's reconstruction error of the
    batch's points (as in parametric UMAP) is added. ``noise > 0`` embeds
    the points with Gaussian noise of that standard deviation added (in
    training mode): the network then maps a neighbourhood of each training
    point, not the point alone, to its place, and places new samples more
    faithfully. A reconstruction term reconstructs the clean points.
    """
    if loss not in NEIGHBOR_LOSSES:
        raise ValueError(f"unknown neighbour loss {loss!r}; use one of {NEIGHBOR_LOSSES}")

    rows = data.rows if hasattr(data, "rows") else data.__getitem__

    def objective(module, head, tail, weight):
        x = rows(torch.cat([head, tail]))
        inp = x
        if noise and module.training:
            inp = x + noise * torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        z = module.encoder(inp)
        z_head, z_tail = z.split(head.shape[0])
        if loss == "umap":
            z_neg = negative_pairs(z_head, z_tail, negative_sample_rate, generator)
            value = umap_edge_loss(z_head, z_tail, z_neg, weight, a, b)
        else:
            z_neg = negative_pairs(z_head, z_tail, negative_sample_rate, generator)
            value = infonce_edge_loss(z_head, z_tail, z_neg, weight)
        if reconstruction_weight:
            value = value + reconstruction_weight * reconstruction_loss(
                module.decoder(z), x, reconstruction
            )
        return value

    return objective

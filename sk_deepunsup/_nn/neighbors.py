"""Neighbour-embedding losses: learn a map whose distances mirror a neighbour graph.

The estimator layer builds a weighted k-nearest-neighbour graph of the data
(a fuzzy simplicial set, as in UMAP) and hands its edges to the engine as the
training "data" (an :class:`EdgeSampler`): each batch is a set of edges
``(head, tail)`` drawn in proportion to their weight, as UMAP samples them.
The objective embeds each distinct point of the batch once with the network
(a batch of 2048 edges among 1 800 points touches most points several times:
one forward pass per point, not two per edge), and contrasts every edge
against *negative* pairs formed by re-pairing its head with other points of
the batch (the in-batch negative sampling of parametric UMAP: no extra
forward pass). :class:`LinearDecay` lowers the step size linearly to zero
over the run, as UMAP anneals its own.

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

import math

import torch

from .data import BatchSource, local_bounds
from .losses import reconstruction_loss
from .callbacks import Callback

__all__ = [
    "NEIGHBOR_LOSSES",
    "EdgeSampler",
    "Embedder",
    "FixedProjection",
    "LinearDecay",
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


class FixedProjection(torch.nn.Module):
    """A frozen first layer: ``(x - mean) @ components.T`` (e.g. a PCA fitted outside).

    With ``normalize``, each projected row is then scaled to unit length
    (latent semantic analysis: a truncated SVD, then a normaliser). Its
    tensors are buffers, not parameters: the optimiser never changes them,
    and they move and change dtype with the module.
    """

    def __init__(self, n_features: int, n_components: int, normalize: bool = False):
        super().__init__()
        self.normalize = bool(normalize)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("components", torch.zeros(n_components, n_features))

    def forward(self, x):
        y = (x - self.mean) @ self.components.T
        if self.normalize:
            norm = torch.linalg.vector_norm(y, dim=1, keepdim=True)
            y = y / norm.clamp_min(torch.finfo(y.dtype).tiny)
        return y

    def extra_repr(self):
        shape = f"{self.components.shape[1]} -> {self.components.shape[0]}"
        return shape + (", normalize=True" if self.normalize else "")


def edge_kernel(sq_dist, a: float = 1.0, b: float = 1.0):
    """Similarity ``1 / (1 + a * sq_dist^b)`` of pairs at squared distance ``sq_dist``."""
    if b == 1.0:
        return 1.0 / (1.0 + a * sq_dist)
    return 1.0 / (1.0 + a * sq_dist.clamp_min(1e-12).pow(b))


def negative_pairs(pool, n_heads: int, n_negatives: int, generator=None):
    """``n_negatives`` random partners for each of ``n_heads`` heads, drawn from ``pool``.

    ``pool`` holds the embedded points of the batch (each distinct point
    once). Returns a tensor of shape ``(n_negatives, n_heads,
    n_components)``: row ``r`` holds the ``r``-th negative partner of every
    head, drawn uniformly from the pool (a point may, rarely, meet its own
    neighbour or itself; with batches of hundreds of points this is noise).
    """
    idx = torch.randint(
        pool.shape[0],
        (n_negatives, n_heads),
        generator=generator,
        device=pool.device,
    )
    # index_select's backward sums repeated rows in a fixed order; the
    # backward of advanced indexing (pool[idx]) does not on several threads
    return pool.index_select(0, idx.flatten()).view(*idx.shape, pool.shape[1])


class EdgeSampler(BatchSource):
    """A graph's edges as batches ``(head, tail)`` drawn in proportion to their weight.

    An epoch draws as many edges (with replacement) as the graph has, each
    with probability ``weight / weight.sum()``: strong edges are trained on
    more often, as UMAP's ``epochs_per_sample`` does, and the loss needs no
    weights. The draws come from the engine's generator, so a fit is
    reproducible.

    Parameters
    ----------
    head, tail : integer Tensor of shape (n_edges,)
        The edges' ends (row indices of the points). Kept as int32 (an
        int32 tensor, e.g. a view of a scipy graph's ``row``, is not copied);
        batches are int64.
    weight : Tensor of shape (n_edges,)
        Their (positive) weights.

    Memory: 16 bytes an edge (two int32 ends, the float64 cumulative
    weights), against 24 with int64 ends.
    """

    def __init__(self, head: torch.Tensor, tail: torch.Tensor, weight: torch.Tensor):
        if not len(head):
            raise ValueError("the neighbour graph has no edges to train on")
        narrow = max(int(head.max()), int(tail.max())) < 2**31
        index = torch.int32 if narrow else torch.int64
        self.head, self.tail = head.to(index), tail.to(index)
        # float64 cumulative weights keep millions of small weights distinct
        self.cumulative = torch.cumsum(weight.to(torch.float64), 0)
        self.n_samples = int(head.shape[0])
        self.n_features = 2
        self.device = head.device
        self.dtype = torch.int64

    def batches(
        self, batch_size, *, shuffle=False, generator=None, with_index=False, part=(0, 1)
    ):
        """One epoch of ``(head, tail)`` batches of ``batch_size`` weighted draws.

        ``part=(rank, world_size)``: every rank draws the same global batch
        (the generators agree) and keeps its share of it.
        """
        total = float(self.cumulative[-1])
        last = self.n_samples - 1
        lo, hi = local_bounds(batch_size, batch_size, part)[0]
        for _ in range(max(1, math.ceil(self.n_samples / batch_size))):
            u = torch.rand(
                batch_size, generator=generator, device=self.device, dtype=torch.float64
            )
            edge = torch.searchsorted(self.cumulative, u[lo:hi] * total).clamp_max_(last)
            yield self.head[edge].long(), self.tail[edge].long()


class LinearDecay(Callback):
    """Lowers the optimiser's step size linearly to zero over ``n_steps`` steps."""

    agreed_stop = True  # it never stops training

    def __init__(self, n_steps: int):
        self.n_steps = max(1, int(n_steps))
        self.initial = None

    def on_train_begin(self, trainer) -> None:
        self.initial = trainer.optimizer.lr

    def on_batch_end(self, trainer) -> None:
        left = max(0.0, 1.0 - trainer.history.n_steps / self.n_steps)
        trainer.optimizer.lr = self.initial * left


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

    Batches are edges ``(head, tail)`` drawn in proportion to their weight
    (an :class:`EdgeSampler`), or ``(head, tail, weight)`` to weight each
    edge's term instead: row indices into ``data`` (a tensor, or a batch
    source from :mod:`.data`, e.g. sparse rows densified per batch). Each
    distinct point of the batch is embedded once; the negatives are drawn
    among them. ``module`` is an :class:`Embedder`; with
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

    def objective(module, head, tail, weight=None):
        points, ends = torch.unique(torch.cat([head, tail]), return_inverse=True)
        x = rows(points)
        inp = x
        if noise and module.training:
            inp = x + noise * torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        z = module.encoder(inp)
        n_heads = head.shape[0]
        z_head, z_tail = z[ends[:n_heads]], z[ends[n_heads:]]
        if weight is None:
            weight = torch.ones(n_heads, device=z.device, dtype=z.dtype)
        z_neg = negative_pairs(z, n_heads, negative_sample_rate, generator)
        if loss == "umap":
            value = umap_edge_loss(z_head, z_tail, z_neg, weight, a, b)
        else:
            value = infonce_edge_loss(z_head, z_tail, z_neg, weight)
        if reconstruction_weight:
            value = value + reconstruction_weight * reconstruction_loss(
                module.decoder(z), x, reconstruction
            )
        return value

    return objective

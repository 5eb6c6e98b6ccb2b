"""The clusterer's route for image autoencoders: a neighbour embedding of the code (N2D).

With an image autoencoder (``image_shape``) and ``embedding="auto"``,
:class:`~sk_deepunsup.DeepEmbeddingClusterer` pretrains the autoencoder,
fits the neighbour embedding it would fit on X (``embedding="neighbors"``)
to the autoencoder's code instead, and clusters in that embedding; its
network is then the chain: the autoencoder's encoder, then the neighbour
embedding's encoder (McConville et al., "N2D: (Not Too) Deep Clustering via
Clustering the Local Manifold of an Autoencoded Embedding", ICPR 2020).
Neighbours are found among codes, where convolutions have made images of
one kind close, rather than among raw pixels.

:class:`CodeNeighborEmbedding` holds the two fitted estimators and shows
the representation contract of :mod:`sk_deepunsup._representation`
(``transform``, ``encoder_``: the chained network, ``get_encoder()``), as an
autoencoder or a neighbour embedding does; it has no decoder (DEC).
:func:`place_on` moves any representation's networks to a device.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator
from torch import nn

from ._representation import RepresentationMixin


__all__ = ["CodeNeighborEmbedding", "place_on"]


class ChainedEncoder(nn.Module):
    """``second(first(x))``: the autoencoder's encoder, then the embedding's."""

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, x):
        return self.second(self.first(x))


class CodeNeighborEmbedding(RepresentationMixin, BaseEstimator):
    """A fitted autoencoder and a neighbour embedding fitted to its code.

    Built by :class:`~sk_deepunsup.DeepEmbeddingClusterer` (its
    ``autoencoder_`` on the N2D route); not meant to be fitted directly.

    Parameters
    ----------
    autoencoder : DeepAutoencoder or VariationalAutoencoder
        Fitted; maps X to its code.
    embedding : NeighborEmbedding
        Fitted to the autoencoder's code of X.
    """

    def __init__(self, autoencoder=None, embedding=None):
        self.autoencoder = autoencoder
        self.embedding = embedding

    @classmethod
    def from_fitted(cls, autoencoder, embedding) -> "CodeNeighborEmbedding":
        """The pair, with the fitted attributes the clusterer reads."""
        pair = cls(autoencoder=autoencoder, embedding=embedding)
        pair.n_features_in_ = autoencoder.n_features_in_
        pair.n_components = embedding.n_components
        pair.device_ = autoencoder.device_
        return pair

    @property
    def encoder_(self) -> nn.Module:
        """The autoencoder's encoder, then the embedding's; their own submodules."""
        return ChainedEncoder(self.autoencoder.encoder_, self.embedding.encoder_)


    def transform(self, X):
        """X's coordinates in the neighbour embedding of its code."""
        return self.embedding.transform(self.autoencoder.transform(X))


def place_on(representation, device):
    """Move a fitted representation's networks to ``device``; its decoder (None for the pair).

    Each estimator holding a network records the device in ``device_``
    (unpickling and :func:`sk_deepunsup.load` map its tensors there).
    """
    pair = isinstance(representation, CodeNeighborEmbedding)
    holders = (representation.autoencoder, representation.embedding) if pair else (representation,)
    for holder in holders:
        holder.module_.to(device)
        holder.device_ = str(device)
    representation.device_ = str(device)
    return None if pair else representation.module_.decoder

"""A fixed first layer for wide inputs: PCA for dense rows, LSA for sparse ones (scikit-learn).

A network whose first layer multiplies 784 pixels (or 29 000 terms) by every
unit of the first hidden layer spends most of its time there. Wide inputs
therefore reach :class:`~sk_deepunsup.NeighborEmbedding`'s MLP through a
frozen :class:`~sk_deepunsup._nn.FixedProjection`: training runs on the
projected rows, and ``transform`` still takes the original features.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ._validation import as_dense, is_streamed
from ._nn import FixedProjection

__all__ = ["fit_input_projection", "project"]

#: Dense inputs with more features than this reach the default MLP through a
#: fixed first layer: their projection on ``PROJECTED_COMPONENTS`` principal
#: components (NeighborEmbedding builds its neighbour graph on them too).
#: Training then runs on the projected rows, so the first layer costs 50
#: rather than 784 multiply-adds per unit on Fashion-MNIST images.
PROJECT_ABOVE = 256
PROJECTED_COMPONENTS = 50
#: Sparse inputs wider than ``PROJECT_ABOVE`` get latent semantic analysis
#: instead: a truncated SVD on this many components, rows scaled to unit
#: length (scikit-learn's text-clustering recipe), and the neighbour graph is
#: built on those rows.
LSA_COMPONENTS = 100


def fit_input_projection(X, seed):
    """The fixed first layer for wide X (None when X goes in as it is).

    Dense: a PCA on ``PROJECTED_COMPONENTS``. Sparse: latent semantic
    analysis, a truncated SVD on ``LSA_COMPONENTS`` then unit-length rows
    (scikit-learn's text-clustering recipe).
    """
    sparse = sp.issparse(X)
    width = LSA_COMPONENTS if sparse else PROJECTED_COMPONENTS
    if is_streamed(X) or X.shape[1] <= PROJECT_ABOVE or min(X.shape) <= width:
        return None
    from sklearn.decomposition import PCA, TruncatedSVD

    layer = FixedProjection(X.shape[1], width, normalize=sparse)
    if sparse:
        svd = TruncatedSVD(width, random_state=seed).fit(X)
        layer.components.copy_(torch.as_tensor(svd.components_))
    else:
        pca = PCA(width, svd_solver="randomized", random_state=seed).fit(X)
        layer.mean.copy_(torch.as_tensor(pca.mean_))
        layer.components.copy_(torch.as_tensor(pca.components_))
    return layer


def project(layer, X) -> np.ndarray:
    """``layer`` (a FixedProjection) applied to X, dense or sparse: float32 rows for
    float32 X, else float64 (as the network's inference runs)."""
    components = layer.components.detach().cpu().numpy().astype(np.float64)
    mean = layer.mean.detach().cpu().numpy().astype(np.float64)
    if sp.issparse(X):
        rows = np.asarray(X @ components.T) - mean @ components.T
    else:
        rows = as_dense(X) @ components.T - mean @ components.T
    if layer.normalize:
        norm = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows / np.maximum(norm, np.finfo(np.float64).tiny)
    return rows.astype(np.float32 if X.dtype == np.float32 else np.float64)

"""The representation contract: ``get_encoder()`` (and the clusterer's
``get_assignment_module()``) compute what ``transform`` (``predict_proba``) returns."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler
from torch import nn

from sk_deepunsup import (
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    NeighborEmbedding,
    VariationalAutoencoder,
)

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def X():
    return MinMaxScaler().fit_transform(load_digits().data[:240]).astype(np.float32)


def wide(X):
    """300 columns (past the input projection's threshold of 256)."""
    rng = np.random.RandomState(0)
    return (X @ rng.uniform(size=(64, 300))).astype(np.float32) / 10


def fitted(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


def net(**kw):
    return dict(hidden_layer_sizes=(16,), max_iter=2, random_state=0, **kw)


def conv(**kw):
    return DeepAutoencoder(n_components=4, image_shape=(8, 8), conv_channels=(4, 8),
                           hidden_layer_sizes=(16,), max_iter=1, random_state=0, **kw)


ROUTES = {
    "autoencoder": lambda X: (DeepAutoencoder(**net()), X),
    "autoencoder-batchnorm-dropout": lambda X: (
        DeepAutoencoder(**net(batch_norm=True, dropout=0.2, activation="gelu")), X),
    "conv-autoencoder": lambda X: (conv(), X),
    "users-modules": lambda X: (DeepAutoencoder(
        n_components=3, encoder=nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 3)),
        decoder=nn.Linear(3, 64), max_iter=2, random_state=0), X),
    "vae": lambda X: (VariationalAutoencoder(**net(n_components=3)), X),
    "neighbors": lambda X: (NeighborEmbedding(max_iter=2, random_state=0), X),
    "neighbors-pca": lambda X: (NeighborEmbedding(max_iter=2, random_state=0), wide(X)),
    "neighbors-lsa": lambda X: (NeighborEmbedding(max_iter=2, random_state=0),
                                sp.csr_matrix(wide(X) * (wide(X) > 1.5))),
    "clusterer-neighbors": lambda X: (DeepEmbeddingClusterer(3, max_iter=2, random_state=0), X),
    "clusterer-neighbors-pca": lambda X: (
        DeepEmbeddingClusterer(3, max_iter=2, random_state=0), wide(X)),
    "clusterer-autoencoder": lambda X: (DeepEmbeddingClusterer(
        3, autoencoder=DeepAutoencoder(**net()), max_iter=2, random_state=0), X),
    "clusterer-vae": lambda X: (DeepEmbeddingClusterer(
        3, autoencoder=VariationalAutoencoder(**net()), max_iter=2, random_state=0), X),
    "clusterer-n2d": lambda X: (DeepEmbeddingClusterer(
        3, autoencoder=conv(), max_iter=2, random_state=0), X),
}


def as_input(X):
    dense = X.toarray() if sp.issparse(X) else X
    return torch.as_tensor(dense, dtype=torch.float32)


@pytest.mark.parametrize("route", ROUTES)
def test_get_encoder_computes_transform(X, route):
    est, data = ROUTES[route](X)
    est = fitted(est, data)
    if route.startswith("neighbors-"):  # wide data: the fixed projection is the first layer
        assert est.input_projection_ == route.split("-")[1]
    encoder = est.get_encoder()
    assert isinstance(encoder, nn.Module) and not encoder.training
    assert all(not p.requires_grad and p.device.type == "cpu" for p in encoder.parameters())
    x = as_input(data).requires_grad_(True)
    code = encoder(x)
    np.testing.assert_allclose(code.detach().numpy(), est.transform(data), **TOL)
    # differentiable with respect to the input
    (grad,) = torch.autograd.grad(code.sum(), x)
    assert grad.shape == x.shape and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0
    # a copy: changing it leaves the estimator alone
    before = est.transform(data)
    for p in encoder.parameters():
        p.data.add_(1.0)
    np.testing.assert_array_equal(est.transform(data), before)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.startswith("clusterer")])
def test_get_assignment_module_computes_predict_proba(X, route):
    est, data = ROUTES[route](X)
    est = fitted(est, data)
    assignment = est.get_assignment_module()
    assert not assignment.training
    x = as_input(data).requires_grad_(True)
    proba = assignment(x)
    np.testing.assert_allclose(proba.detach().numpy(), est.predict_proba(data), **TOL)
    (grad,) = torch.autograd.grad(proba[:, 0].sum(), x)
    assert bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0


def test_clusterer_takes_a_variational_autoencoder(X):
    dec = fitted(DeepEmbeddingClusterer(
        3, autoencoder=VariationalAutoencoder(**net(n_components=4)), max_iter=2,
        random_state=0), X)
    assert isinstance(dec.autoencoder_, VariationalAutoencoder)
    assert dec.transform(X).shape == (X.shape[0], 4)  # the posterior mean, not mean and variance
    assert dec.cluster_centers_.shape == (3, 4)


def test_get_encoder_needs_a_fitted_estimator():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        NeighborEmbedding().get_encoder()
    with pytest.raises(NotFittedError):
        DeepEmbeddingClusterer().get_assignment_module()

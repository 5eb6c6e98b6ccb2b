"""NeighborEmbedding, its graph, its losses, and the clusterer's neighbour route."""

import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_blobs
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils._param_validation import InvalidParameterError

from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer, NeighborEmbedding
from sk_deepunsup import _neighbor_embedding as ne_module
from sk_deepunsup._neighbor_graph import (
    distinct_rows,
    fit_ab,
    fuzzy_neighbor_graph,
    nearest_neighbors,
    prune_shared_neighbors,
)
from sk_deepunsup._nn import Trainer
from sk_deepunsup._nn.neighbors import (
    EdgeSampler,
    Embedder,
    LinearDecay,
    infonce_edge_loss,
    neighbor_embedding_objective,
    umap_edge_loss,
)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return MinMaxScaler().fit_transform(d.data), d.target


@pytest.fixture(scope="module")
def digits_map(digits):
    X, y = digits
    train = np.arange(len(X)) % 5 != 0
    ne = NeighborEmbedding(n_components=2, max_iter=15, random_state=0, device="cpu")
    ne.fit(X[train])
    return ne, X, y, train


def small(**params):
    defaults = dict(
        n_components=2, hidden_layer_sizes=(16,), max_iter=5, random_state=0, device="cpu"
    )
    defaults.update(params)
    return NeighborEmbedding(**defaults)


# -- the estimator learns ---------------------------------------------------------------


def test_map_beats_pca_on_trustworthiness_and_knn(digits_map):
    ne, X, y, train = digits_map
    Z = ne.embedding_
    Z_pca = PCA(2, random_state=0).fit_transform(X[train])
    knn = KNeighborsClassifier(5)
    acc = cross_val_score(knn, Z, y[train], cv=3).mean()
    acc_pca = cross_val_score(knn, Z_pca, y[train], cv=3).mean()
    assert acc > acc_pca + 0.2
    tw = trustworthiness(X[train], Z, n_neighbors=10)
    assert tw > trustworthiness(X[train], Z_pca, n_neighbors=10) + 0.05


def test_transform_embeds_held_out_samples(digits_map):
    ne, X, y, train = digits_map
    Z_held = ne.transform(X[~train])
    assert Z_held.shape == ((~train).sum(), 2)
    # held-out digits land among training digits of their own class
    knn = KNeighborsClassifier(5).fit(ne.embedding_, y[train])
    assert knn.score(Z_held, y[~train]) > 0.85
    np.testing.assert_allclose(ne.transform(X[train]), ne.embedding_)


def test_dtypes_names_and_attributes(digits_map):
    ne, X, _, train = digits_map
    assert ne.transform(X[:5].astype(np.float32)).dtype == np.float32
    assert ne.transform(X[:5]).dtype == np.float64
    assert ne.get_feature_names_out().tolist() == ["neighborembedding0", "neighborembedding1"]
    assert ne.n_iter_ == 15 and len(ne.loss_curve_) == 15
    assert ne.loss_curve_[-1] < ne.loss_curve_[0]
    assert ne.n_edges_ > train.sum() * 10


def test_deterministic_with_random_state():
    X, _ = make_blobs(200, n_features=5, random_state=0)
    a = small().fit_transform(X)
    b = small().fit_transform(X)
    np.testing.assert_array_equal(a, b)
    c = small(random_state=1).fit_transform(X)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("loss", ["umap", "infonce"])
def test_both_losses_separate_blobs(loss):
    X, y = make_blobs(300, centers=3, n_features=10, random_state=0)
    Z = small(loss=loss, max_iter=20).fit_transform(X)
    assert KNeighborsClassifier(5).fit(Z, y).score(Z, y) > 0.95


def test_user_encoder_and_reconstruction():
    X, y = make_blobs(200, centers=3, n_features=6, random_state=0)
    encoder = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    ne = small(n_components=3, encoder=encoder, max_iter=10).fit(X)
    assert ne.transform(X).shape == (200, 3)
    for k, v in encoder.state_dict().items():  # the user's module is copied
        torch.testing.assert_close(v, before[k])
    with pytest.raises(ValueError, match="reconstruction_weight > 0 needs the default MLP"):
        small(encoder=encoder, reconstruction_weight=1.0).fit(X)
    ne = small(reconstruction_weight=1.0).fit(X)
    assert ne.module_.decoder is not None
    assert small().fit(X).module_.decoder is None


def test_bad_parameters_are_refused():
    X, _ = make_blobs(50, random_state=0)
    with pytest.raises(InvalidParameterError, match="loss"):
        small(loss="tsne").fit(X)
    with pytest.raises(InvalidParameterError, match="max_iter"):
        small(max_iter="forever").fit(X)
    with pytest.raises(InvalidParameterError, match="min_shared_neighbors"):
        small(min_shared_neighbors=1.0).fit(X)
    with pytest.raises(InvalidParameterError, match="noise"):
        small(noise=-0.1).fit(X)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be positive integers"):
        small(hidden_layer_sizes=(4.5,)).fit(X)


# -- the graph ----------------------------------------------------------------------------


def test_fuzzy_graph_is_symmetric_with_calibrated_rows(digits):
    X, _ = digits
    idx, dist = nearest_neighbors(X[:300], 10)
    assert idx.shape == (300, 10) and not np.any(idx == np.arange(300)[:, None])
    W = fuzzy_neighbor_graph(idx, dist).tocsr()
    assert abs(W - W.T).max() < 1e-12
    assert W.data.min() > 0 and W.data.max() <= 1.0 + 1e-12
    # Before symmetrisation each row's weights sum to log2(k): check one row.
    rho = dist[0][dist[0] > 0].min()
    row = W[0, idx[0]].toarray().ravel()
    assert row.max() == pytest.approx(1.0)  # the nearest neighbour (d == rho)
    assert dist[0].min() == pytest.approx(rho)


def test_distinct_rows_finds_repeats_in_first_appearance_order():
    X = np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 2.0], [-0.0, 1.0], [3.0, 3.0]])
    first, inverse = distinct_rows(X)
    np.testing.assert_array_equal(first, [0, 1, 4])  # -0.0 repeats 0.0
    np.testing.assert_array_equal(X[first][inverse], X)
    assert distinct_rows(np.eye(3)) is None


def test_repeated_rows_are_one_point_and_do_not_split_their_group():
    """A table where a row repeats more often than n_neighbors: its copies are
    one point of the graph, not an island (the groups stay as k-means finds them)."""
    rng = np.random.RandomState(0)
    a = np.repeat([[1.0, 1.0, 1.0]], 60, axis=0)  # one row, repeated 60 times
    b = np.clip(1 + rng.randint(0, 3, size=(60, 3)), 1, 10).astype(float)  # near it
    c = np.clip(7 + rng.randint(0, 4, size=(120, 3)), 1, 10).astype(float)  # far
    X = MinMaxScaler().fit_transform(np.vstack([a, b, c]))
    y = np.r_[np.zeros(120), np.ones(120)]
    ne = small(n_components=2, max_iter=30)
    Z = ne.fit_transform(X)
    assert Z.shape == (240, 2)
    np.testing.assert_allclose(Z, ne.transform(X), atol=1e-5)
    assert np.ptp(Z[:60], axis=0).max() < 1e-6  # the copies land on one place
    first, _ = distinct_rows(X)
    assert ne.n_edges_ <= len(first) * 2 * 15  # the graph holds each distinct row once
    dec = DeepEmbeddingClusterer(2, embedding=small(max_iter=30), n_init=3, random_state=0)
    assert adjusted_rand_score(y, dec.fit(X).labels_) > 0.9


def test_shared_neighbor_pruning_cuts_bridges_between_groups():
    # two tight groups and a thin chain of points joining them
    rng = np.random.RandomState(0)
    left = rng.normal(0.0, 0.3, size=(60, 2))
    right = rng.normal(0.0, 0.3, size=(60, 2)) + [6.0, 0.0]
    chain = np.c_[np.linspace(1.0, 5.0, 9), np.zeros(9)]
    X = np.vstack([left, right, chain])
    group = np.r_[np.zeros(60), np.ones(60), np.full(9, 2)]
    idx, dist = nearest_neighbors(X, 8)
    W = fuzzy_neighbor_graph(idx, dist)
    assert prune_shared_neighbors(W, idx, 0.0) is W
    P = prune_shared_neighbors(W, idx, 0.3)
    assert abs(P - P.T).max() < 1e-12
    assert np.all(np.diff(P.tocsr().indptr) > 0)  # every point keeps an edge
    # kept edges keep their weights; edges between a group and the chain go first
    np.testing.assert_allclose(np.asarray(W.tocsr()[P.row, P.col]).ravel(), P.data)

    bridge_W = np.sum(group[W.row] != group[W.col])
    bridge_P = np.sum(group[P.row] != group[P.col])
    assert bridge_P / bridge_W < 0.5 * (P.nnz - bridge_P) / (W.nnz - bridge_W)


def test_noise_trains_on_perturbed_inputs_only():
    X, y = make_blobs(200, centers=3, n_features=5, random_state=0)
    ne = small(noise=0.3, max_iter=20).fit(X)
    assert not np.allclose(ne.embedding_, small(max_iter=20).fit_transform(X))
    np.testing.assert_array_equal(ne.transform(X), ne.embedding_)  # none at inference
    Z = ne.embedding_
    assert KNeighborsClassifier(5).fit(Z, y).score(Z, y) > 0.95
    np.testing.assert_array_equal(small(noise=0.3, max_iter=20).fit_transform(X), Z)
    # the noise follows the data's scale
    scaled = small(noise=0.3, max_iter=1).fit(10 * X)
    assert scaled.noise_scale_ == pytest.approx(10 * ne.noise_scale_)
    assert small(noise=0.0, max_iter=1).fit(X).noise_scale_ == 0.0


def test_nndescent_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynndescent", None)
    X, _ = make_blobs(50, random_state=0)
    with pytest.raises(ImportError, match=r"sk-deepunsup\[nndescent\]"):
        small(neighbors_algorithm="nndescent").fit(X)
    small(neighbors_algorithm="auto").fit(X)  # falls back to the exact search


def test_fit_ab_matches_min_dist_curve():
    a, b = fit_ab(0.1)
    assert 1.4 < a < 1.8 and 0.8 < b < 1.0
    d = 2.0
    assert 1 / (1 + a * d ** (2 * b)) == pytest.approx(np.exp(-(d - 0.1)), abs=0.03)


# -- the losses ---------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["umap", "infonce"])
def test_losses_prefer_close_neighbours_and_far_negatives(loss):
    head = torch.zeros(4, 2)
    near, far = torch.full((4, 2), 0.1), torch.full((4, 2), 3.0)
    weight = torch.ones(4)

    def value(tail, neg):
        if loss == "umap":
            return float(umap_edge_loss(head, tail, neg.expand(5, 4, 2), weight, 1.58, 0.9))
        return float(infonce_edge_loss(head, tail, neg.expand(5, 4, 2), weight))

    assert value(near, far) < value(far, far)
    assert value(near, far) < value(near, near)


def test_objective_trains_an_embedder():
    gen = torch.Generator().manual_seed(0)
    data = torch.randn(20, 3, generator=gen)
    module = Embedder(torch.nn.Linear(3, 2), torch.nn.Linear(2, 3))
    objective = neighbor_embedding_objective(
        data, "umap", negative_sample_rate=3, reconstruction_weight=1.0, generator=gen
    )
    head, tail = torch.arange(10), torch.arange(10, 20)
    loss = objective(module, head, tail, torch.ones(10))
    loss.backward()
    assert loss.ndim == 0 and module.decoder.weight.grad is not None
    with pytest.raises(ValueError, match="unknown neighbour loss"):
        neighbor_embedding_objective(data, "tsne")


def test_edge_sampler_draws_edges_in_proportion_to_weight():
    head, tail = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    sampler = EdgeSampler(head, tail, torch.tensor([1.0, 3.0, 0.0]))
    gen = torch.Generator().manual_seed(0)
    batches = list(sampler.batches(2, generator=gen))
    assert len(batches) == 2  # an epoch draws as many edges as the graph has
    draws = torch.cat([h for h, _ in sampler.batches(30_000, generator=gen)])
    share = torch.bincount(draws, minlength=3).float() / len(draws)
    assert share[1] == pytest.approx(0.75, abs=0.02) and share[2] == 0  # weight 0: never
    again = [h for h, _ in sampler.batches(2, generator=torch.Generator().manual_seed(0))]
    assert all(torch.equal(a, b[0]) for a, b in zip(again, batches))
    with pytest.raises(ValueError, match="no edges"):
        EdgeSampler(head[:0], tail[:0], torch.ones(0))


def test_objective_embeds_each_distinct_point_once():
    data = torch.randn(6, 3)
    seen = []

    class Counting(torch.nn.Linear):
        def forward(self, x):
            seen.append(x.shape[0])
            return super().forward(x)

    objective = neighbor_embedding_objective(data, "infonce", negative_sample_rate=4)
    head, tail = torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 1])
    objective(Embedder(Counting(3, 2)), head, tail).backward()
    assert seen == [3]  # points 0, 1, 2 once each, not 8 edge ends


def test_linear_decay_brings_the_step_size_to_zero():
    module = torch.nn.Linear(2, 1)
    x = torch.randn(8, 2)
    decay = LinearDecay(n_steps=4)
    trainer = Trainer(
        module, lambda m, xb: m(xb).square().mean(), learning_rate=0.1, batch_size=4,
        max_iter=2, n_iter_no_change=None, callbacks=[decay], n_threads=1,
    )
    trainer.fit(x)
    assert decay.initial == 0.1 and trainer.optimizer.lr == 0.0


def test_wide_dense_input_goes_through_a_fixed_pca_layer():
    X = np.random.RandomState(0).rand(120, 300)
    ne = small(max_iter=1).fit(X)
    assert ne.n_projected_ == 50
    projection = ne.module_.encoder[0]
    assert not any(p is projection.mean for p in ne.module_.parameters())
    C = projection.components.numpy().astype(np.float64)
    np.testing.assert_allclose(C @ C.T, np.eye(50), atol=1e-4)  # orthonormal directions
    np.testing.assert_allclose(projection.mean.numpy(), X.mean(axis=0), atol=1e-5)
    captured = ((X - X.mean(axis=0)) @ C.T).var(axis=0).sum()
    best = PCA(50, svd_solver="full").fit(X).explained_variance_.sum() * (119 / 120)
    assert captured == pytest.approx(best, rel=0.02)  # the leading principal components
    np.testing.assert_allclose(ne.transform(X), ne.embedding_, atol=1e-5)
    assert small(max_iter=1).fit(X[:, :200]).n_projected_ is None  # narrow: X goes in as is


# -- the clusterer's neighbour route ------------------------------------------------------


def test_clusterer_neighbor_route_recovers_blobs():
    X, y = make_blobs(300, centers=4, n_features=8, random_state=0)
    X = MinMaxScaler().fit_transform(X)
    dec = DeepEmbeddingClusterer(
        4, embedding=small(n_components=4, max_iter=20), n_init=3, random_state=0, device="cpu"
    ).fit(X)
    assert adjusted_rand_score(y, dec.labels_) > 0.9
    assert isinstance(dec.autoencoder_, NeighborEmbedding)
    assert dec.transform(X).shape == (300, 4)
    np.testing.assert_array_equal(dec.predict(X), dec.labels_)


def test_clusterer_route_choice():
    X, _ = make_blobs(120, centers=3, n_features=4, random_state=0)
    ae = DeepAutoencoder(n_components=2, hidden_layer_sizes=(8,), max_iter=5)
    dec = DeepEmbeddingClusterer(3, autoencoder=ae, n_init=2, max_iter=3, random_state=0)
    assert isinstance(dec.fit(X).autoencoder_, DeepAutoencoder)  # "auto" with an autoencoder
    fitted = small(max_iter=3).fit(X)
    before = fitted.transform(X)
    dec = DeepEmbeddingClusterer(3, embedding=fitted, n_init=2, max_iter=3, random_state=0)
    dec.fit(X)
    assert dec.autoencoder_ is not fitted
    np.testing.assert_array_equal(fitted.transform(X), before)  # never changed
    with pytest.raises(ValueError, match="fitted NeighborEmbedding expects 4"):
        dec.fit(X[:, :3])


def test_wide_sparse_input_goes_through_lsa_and_the_clusterer_refines_after_it():
    import scipy.sparse as sp

    X, y = make_blobs(300, centers=3, n_features=400, random_state=0)
    S = sp.csr_matrix(np.where(np.abs(X) > 8, np.abs(X), 0.0))  # sparse, non-negative
    ne = small(max_iter=1).fit(S)
    assert (ne.input_projection_, ne.n_projected_) == ("lsa", 100)
    rows = ne.module_.encoder[0](torch.as_tensor(S.toarray(), dtype=torch.float32))
    np.testing.assert_allclose(rows.norm(dim=1).numpy(), 1.0, atol=1e-5)  # unit-length rows
    clusterer = DeepEmbeddingClusterer(3, max_iter=2, random_state=0, device="cpu").fit(S)
    np.testing.assert_array_equal(clusterer.predict(S), clusterer.labels_)
    assert clusterer.autoencoder_.input_projection_ == "lsa"


def record_argument(monkeypatch, name, argument, module=ne_module):
    """The values of keyword ``argument`` in the calls ``fit`` makes to ``module.<name>``."""
    seen = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append(kwargs[argument])
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def test_auto_negatives_and_noise_follow_the_loss(monkeypatch):
    X, _ = make_blobs(120, centers=3, n_features=4, random_state=0)
    rates = record_argument(monkeypatch, "neighbor_embedding_objective", "negative_sample_rate")
    assert small(loss="umap", max_iter=1).fit(X).noise_scale_ == 0.0
    assert small(loss="infonce", max_iter=1).fit(X).noise_scale_ > 0.0
    assert rates == [10, 20]
    # numbers given are used as they are
    assert small(loss="umap", noise=0.5, negative_sample_rate=3, max_iter=1).fit(X).noise_scale_ > 0
    assert rates[-1] == 3


def test_min_shared_neighbors_is_deprecated():
    X, _ = make_blobs(120, centers=3, n_features=4, random_state=0)
    with pytest.warns(FutureWarning, match="min_shared_neighbors is deprecated"):
        small(min_shared_neighbors=0.2, max_iter=1).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        small(max_iter=1).fit(X)


def test_auto_batch_gives_small_graphs_ten_steps_an_epoch(monkeypatch):
    X, _ = make_blobs(120, centers=3, n_features=4, random_state=0)
    import sk_deepunsup._base as base_module  # where every estimator builds its Trainer

    sizes = record_argument(monkeypatch, "Trainer", "batch_size", base_module)
    n_edges = small(max_iter=1).fit(X).n_edges_
    assert sizes[-1] == -(-n_edges // 10) < 2048  # a tenth of the edges, rounded up
    small(max_iter=1, batch_size=64).fit(X)
    assert sizes[-1] == 64  # an int is used as it is
    small(max_iter=1, batch_size=10**6).fit(X)
    assert sizes[-1] == n_edges  # ... up to the whole graph
    assert ne_module.NeighborEmbedding()._resolve_batch_size(10**6) == 2048
    with pytest.raises(InvalidParameterError, match="batch_size"):
        small(batch_size="large").fit(X)

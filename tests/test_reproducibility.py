"""Same seed, same result: whatever the thread setting, the load, or other fits running at once."""

import threading

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler

from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer, NeighborEmbedding

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def X():
    return MinMaxScaler().fit_transform(load_digits().data[:300]).astype(np.float32)


def neighbor_embedding(**params):
    return NeighborEmbedding(hidden_layer_sizes=(32,), max_iter=2, random_state=0, **params)


@pytest.mark.parametrize("n_threads", [None, 2])
def test_neighbor_embedding_refits_are_identical(X, n_threads):
    # the negatives' gradients are summed in a fixed order on every thread count
    a = neighbor_embedding(n_threads=n_threads).fit_transform(X)
    b = neighbor_embedding(n_threads=n_threads).fit_transform(X)
    np.testing.assert_array_equal(a, b)


def test_default_thread_count_does_not_follow_the_load(X, monkeypatch):
    # the default rule never times steps: a clock that makes two threads look
    # fast, then slow, must not change the result
    import sk_deepunsup._nn.threads as threads

    ticks = iter(range(10**7))
    monkeypatch.setattr(threads.time, "perf_counter", lambda: float(next(ticks)) ** 3)
    a = DeepEmbeddingClusterer(n_clusters=5, max_iter=3, random_state=0).fit(X)
    monkeypatch.undo()
    b = DeepEmbeddingClusterer(n_clusters=5, max_iter=3, random_state=0).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


class DropoutEncoder(torch.nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_in, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(32, n_out)
        )

    def forward(self, x):
        return self.net(x)


def custom_autoencoder():
    torch.manual_seed(0)  # the modules' initial weights, as a user would make them
    enc, dec = DropoutEncoder(64, 3), DropoutEncoder(3, 64)
    return DeepAutoencoder(n_components=3, encoder=enc, decoder=dec, max_iter=3, random_state=0)


def test_concurrent_fits_match_serial_fits_and_leave_global_state(X):
    est = custom_autoencoder()
    serial = est.fit(X).transform(X)
    plain = DeepAutoencoder(n_components=3, hidden_layer_sizes=(32,), max_iter=3, random_state=1)
    plain_serial = plain.fit(X).transform(X)
    rng_before = torch.get_rng_state()
    threads_before = torch.get_num_threads()
    results = {}

    def run(name, estimator):
        results[name] = estimator.fit(X).transform(X)

    workers = [
        threading.Thread(target=run, args=("custom", custom_autoencoder())),
        threading.Thread(
            target=run,
            args=("plain", DeepAutoencoder(n_components=3, hidden_layer_sizes=(32,), max_iter=3,
                                           random_state=1, n_threads=2)),
        ),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    np.testing.assert_array_equal(results["custom"], serial)
    # n_threads=2 rounds differently from the default's one thread, but
    # runs its own steps at its own count, whatever runs beside it
    twice = DeepAutoencoder(n_components=3, hidden_layer_sizes=(32,), max_iter=3, random_state=1,
                            n_threads=2).fit(X).transform(X)
    np.testing.assert_array_equal(results["plain"], twice)
    assert plain_serial.shape == twice.shape
    assert torch.equal(rng_before, torch.get_rng_state())
    assert torch.get_num_threads() == threads_before


def test_user_dropout_fit_leaves_global_generator_alone(X):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    custom_autoencoder().fit(X)  # seeds its own modules before fitting
    torch.manual_seed(123)
    est = custom_autoencoder()
    torch.manual_seed(123)
    est.fit(X)
    assert torch.equal(torch.rand(3), expected)

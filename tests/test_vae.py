"""VariationalAutoencoder: a density model and a generator in scikit-learn's conventions."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.utils._param_validation import InvalidParameterError

from sk_deepunsup import VariationalAutoencoder

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def small(**params):
    defaults = dict(hidden_layer_sizes=(16,), max_iter=10, random_state=0)
    defaults.update(params)
    return VariationalAutoencoder(**defaults)


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data / 16.0
    return train_test_split(X, test_size=0.25, random_state=0)


@pytest.fixture(scope="module")
def X():
    return np.random.RandomState(0).normal(size=(50, 4))


@pytest.mark.parametrize("loss", ["gaussian", "mse", "bce"])
def test_held_out_digits_are_far_likelier_than_uniform_noise(digits, loss):
    X_train, X_test = digits
    vae = VariationalAutoencoder(n_components=8, loss=loss, max_iter=60, random_state=0)
    vae.fit(X_train)
    noise = np.random.RandomState(1).uniform(size=(200, 64))
    test_score, noise_score = vae.score(X_test), vae.score(noise)
    assert test_score > noise_score + 3.0
    # nearly every held-out digit beats the best-scoring noise image
    assert np.mean(vae.score_samples(X_test) > vae.score_samples(noise).max()) > 0.95


def test_calibrated_scale_is_the_rms_residual():
    # y = 3x + noise(0.5): the best Gaussian scale is about 0.5
    rng = np.random.RandomState(0)
    t = rng.normal(size=(400, 1))
    X = np.hstack([t, 3 * t + 0.5 * rng.normal(size=(400, 1))])
    vae = VariationalAutoencoder(n_components=1, max_iter=150, random_state=0).fit(X)
    scale = np.exp(vae.module_.log_scale.numpy())
    assert np.all(scale < 1.0)  # far below the unit variance it starts from
    unit = VariationalAutoencoder(n_components=1, loss="mse", max_iter=150, random_state=0)
    assert np.all(unit.fit(X).module_.log_scale.numpy() == 0.0)


def test_score_is_mean_elbo_and_deterministic(X):
    vae = small().fit(X)
    scores = vae.score_samples(X)
    assert scores.shape == (50,) and scores.dtype == np.float64
    assert vae.score(X) == pytest.approx(scores.mean())
    np.testing.assert_array_equal(vae.score_samples(X), scores)
    one_by_one = np.concatenate([vae.score_samples(row[None]) for row in X])
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-10)


def test_transform_inverse_transform_shapes(X):
    vae = small(n_components=3).fit(X)
    Z = vae.transform(X)
    assert Z.shape == (50, 3)
    assert vae.inverse_transform(Z).shape == X.shape
    assert vae.get_feature_names_out().tolist() == [
        "variationalautoencoder0",
        "variationalautoencoder1",
        "variationalautoencoder2",
    ]


def test_sample_shape_and_reproducibility(X):
    vae = small(random_state=3).fit(X)
    a = vae.sample(7)
    assert a.shape == (7, 4) and a.dtype == np.float64
    np.testing.assert_array_equal(a, vae.sample(7))
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    b = small(random_state=None).fit(X).sample(7)
    assert not np.allclose(a, b)
    assert torch.equal(torch_state, torch.random.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])


def test_bce_samples_lie_in_unit_interval(digits):
    vae = small(loss="bce").fit(digits[0][:200])
    s = vae.sample(20)
    assert s.min() >= 0.0 and s.max() <= 1.0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda v: v.sample(0), InvalidParameterError, "'n_samples' parameter"),
        (lambda v: v.sample(2.5), InvalidParameterError, "'n_samples' parameter"),
        (lambda v: v.set_params(beta=-1).fit(np.ones((5, 2))), InvalidParameterError, "'beta'"),
        (lambda v: v.set_params(loss="l1").fit(np.ones((5, 2))), InvalidParameterError, "'loss'"),
    ],
)
def test_errors(X, call, error, match):
    vae = small().fit(X)
    with pytest.raises(error, match=match):
        call(vae)


def test_sample_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        small().sample(3)


def test_constant_columns_stay_finite():
    rng = np.random.RandomState(0)
    X = np.hstack([rng.normal(size=(40, 3)), np.zeros((40, 2))])
    vae = small(max_iter=30).fit(X)
    assert np.isfinite(vae.score_samples(X)).all()
    assert np.isfinite(vae.sample(5)).all()


def test_grid_search_tunes_without_labels(digits):
    X_train = digits[0][:300]
    search = GridSearchCV(
        VariationalAutoencoder(loss="bce", max_iter=20, random_state=0),
        {"n_components": [1, 8]},
        cv=2,
    ).fit(X_train)
    assert search.best_params_ == {"n_components": 8}


def test_pickle_round_trip(X):
    vae = small().fit(X)
    again = pickle.loads(pickle.dumps(vae))
    np.testing.assert_array_equal(again.score_samples(X), vae.score_samples(X))
    np.testing.assert_array_equal(again.sample(3), vae.sample(3))


def test_partial_fit_and_warm_start(X):
    vae = small()
    for _ in range(3):
        vae.partial_fit(X)
    assert vae.n_iter_ == 3
    warm = small(warm_start=True, max_iter=4).fit(X).fit(X)
    assert warm.n_iter_ == 8

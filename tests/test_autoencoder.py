"""DeepAutoencoder behaviour: it learns, refuses bad input clearly, and fits in scikit-learn."""

import pickle
import re

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sk_deepunsup import DeepAutoencoder
from sk_deepunsup._nn import TrainingInterrupted
from sk_deepunsup._nn.training import Trainer

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def small(**params):
    defaults = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    defaults.update(params)
    return DeepAutoencoder(**defaults)


@pytest.fixture(scope="module")
def X():
    return np.random.RandomState(0).normal(size=(60, 5))


@pytest.fixture(scope="module")
def digits():
    X = MinMaxScaler().fit_transform(load_digits().data)
    return train_test_split(X, test_size=0.25, random_state=0)


# -- it learns ----------------------------------------------------------------------


def test_reconstructs_held_out_digits_better_than_pca(digits):
    X_train, X_test = digits
    ae = DeepAutoencoder(n_components=2, random_state=0).fit(X_train)  # defaults
    pca = PCA(n_components=2).fit(X_train)
    pca_mse = np.mean((pca.inverse_transform(pca.transform(X_test)) - X_test) ** 2)
    ae_mse = np.mean((ae.inverse_transform(ae.transform(X_test)) - X_test) ** 2)
    assert ae_mse < 0.9 * pca_mse
    # score is the negative mean reconstruction error
    assert ae.score(X_test) == pytest.approx(-ae_mse, rel=1e-6)


def test_loss_decreases_and_history_is_recorded(X):
    ae = small(max_iter=20).fit(X)
    assert ae.n_iter_ == len(ae.loss_curve_) == 20
    assert ae.loss_curve_[-1] < ae.loss_curve_[0]
    assert ae.best_loss_ == min(ae.loss_curve_)
    assert ae.validation_loss_curve_ is None


def test_converges_before_max_iter_with_loose_tol(X):
    ae = small(max_iter=100, tol=10.0, n_iter_no_change=2).fit(X)
    assert ae.n_iter_ == 3


def test_convergence_warning_when_max_iter_reached(X):
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        small(max_iter=2).fit(X)


def test_early_stopping_keeps_best_validation_weights(X):
    ae = small(max_iter=30, early_stopping=True, validation_fraction=0.2).fit(X)
    assert len(ae.validation_loss_curve_) == ae.n_iter_
    assert ae.best_loss_ == min(ae.validation_loss_curve_)


def test_early_stopping_needs_training_samples():
    with pytest.raises(ValueError, match="leaving 1 to train on"):
        small(early_stopping=True, validation_fraction=0.5).fit(np.ones((3, 2)))


@pytest.mark.parametrize(
    "params", [dict(noise=0.3), dict(dropout=0.2, batch_norm=True), dict(alpha=1e-3)]
)
def test_regularised_variants_learn(X, params):
    ae = small(max_iter=15, **params).fit(X)
    assert ae.loss_curve_[-1] < ae.loss_curve_[0]
    assert np.isfinite(ae.transform(X)).all()


def test_bce_loss_for_unit_interval_data(digits):
    X_train, _ = digits
    ae = small(loss="bce", max_iter=5).fit(X_train[:200])
    recon = ae.inverse_transform(ae.transform(X_train[:10]))
    assert recon.min() >= 0.0 and recon.max() <= 1.0


def test_linear_network_without_hidden_layers(X):
    ae = small(hidden_layer_sizes=()).fit(X)
    assert len(ae.module_.encoder.linears) == 1


# -- streaming and warm start ---------------------------------------------------------


def test_partial_fit_streams_one_epoch_per_call(X):
    ae = small()
    for chunk in np.array_split(X, 3):
        ae.partial_fit(chunk)
    assert ae.n_iter_ == 3 and len(ae.loss_curve_) == 3
    for _ in range(20):
        ae.partial_fit(X)
    assert ae.loss_curve_[-1] < ae.loss_curve_[0]


def test_partial_fit_refuses_other_feature_count(X):
    ae = small().partial_fit(X)
    with pytest.raises(ValueError, match="X has 4 features, but DeepAutoencoder is expecting 5"):
        ae.partial_fit(X[:, :4])


def test_warm_start_continues_training(X):
    ae = small(max_iter=5, warm_start=True).fit(X)
    weights = ae.module_.encoder.linears[0].weight.detach().clone()
    ae.fit(X)
    assert ae.n_iter_ == 10 and len(ae.loss_curve_) == 10
    cold = small(max_iter=5).fit(X)
    assert not torch.equal(ae.module_.encoder.linears[0].weight, weights)
    assert ae.loss_curve_[-1] < cold.loss_curve_[-1]


# -- outputs: shapes, dtypes, names ---------------------------------------------------


def test_shapes_dtypes_and_names(X):
    ae = small(n_components=3).fit(X)
    Z = ae.transform(X)
    assert Z.shape == (60, 3) and Z.dtype == np.float64
    assert ae.transform(X.astype(np.float32)).dtype == np.float32
    assert ae.inverse_transform(Z).shape == X.shape
    assert ae.score_samples(X).shape == (60,)
    assert isinstance(ae.score(X), float)
    assert ae.get_feature_names_out().tolist() == [
        "deepautoencoder0",
        "deepautoencoder1",
        "deepautoencoder2",
    ]


def test_accepts_ints_and_lists(X):
    ints = np.round(X * 3).astype(np.int64)
    Z = small().fit(ints).transform(ints)
    assert Z.dtype == np.float64
    Z_list = small().fit(ints.tolist()).transform(ints.tolist())
    np.testing.assert_array_equal(Z, Z_list)


def test_inverse_transform_checks_width(X):
    ae = small(n_components=2).fit(X)
    with pytest.raises(ValueError, match="inverse_transform expects n_components=2"):
        ae.inverse_transform(np.zeros((3, 5)))


def test_transform_does_not_depend_on_batch_composition(X):
    ae = small().fit(X)
    full = ae.transform(X)
    one_by_one = np.vstack([ae.transform(row[None]) for row in X])
    np.testing.assert_allclose(full, one_by_one, rtol=1e-12, atol=1e-12)


# -- pandas ---------------------------------------------------------------------------


def test_pandas_in_and_out(X):
    df = pd.DataFrame(X, columns=list("abcde"), index=np.arange(100, 160))
    ae = small().set_output(transform="pandas").fit(df)
    out = ae.transform(df)
    assert isinstance(out, pd.DataFrame)
    assert out.index.equals(df.index)
    assert list(out.columns) == ["deepautoencoder0", "deepautoencoder1"]
    assert list(ae.feature_names_in_) == list("abcde")


def test_dataframe_with_other_columns_is_refused(X):
    df = pd.DataFrame(X, columns=list("abcde"))
    ae = small().fit(df)
    with pytest.raises(ValueError, match="feature names should match"):
        ae.transform(df.rename(columns={"a": "z"}))


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(n_components=0), "'n_components' parameter"),
        (dict(activation="swish"), "'activation' parameter"),
        (dict(loss="l1"), "'loss' parameter"),
        (dict(dropout=1.0), "'dropout' parameter"),
        (dict(learning_rate_init=0), "'learning_rate_init' parameter"),
        (dict(batch_size=0), "'batch_size' parameter"),
        (dict(validation_fraction=1.0), "'validation_fraction' parameter"),
        (dict(max_iter=-1), "'max_iter' parameter"),
        (dict(noise=-0.1), "'noise' parameter"),
    ],
)
def test_invalid_parameters(X, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        small(**params).fit(X)


def test_invalid_hidden_layer_sizes(X):
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must be positive integers"):
        small(hidden_layer_sizes=(8, 0)).fit(X)


@pytest.mark.parametrize(
    "device, match",
    [
        ("gpu", "device='gpu' is not a device"),
        ("tpu:0", "is not a device|is not supported"),
    ],
)
def test_invalid_device(X, device, match):
    with pytest.raises(ValueError, match=match):
        small(device=device).fit(X)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(X):
    with pytest.raises(ValueError, match="CUDA is not available"):
        small(device="cuda").fit(X)


BAD_INPUTS = [
    (np.array([[1.0, np.nan], [2.0, 3.0]]), "Input X contains NaN"),
    (np.array([[1.0, np.inf], [2.0, 3.0]]), "Input X contains infinity"),
    (np.array([["a", "b"], ["c", "d"]]), "could not convert|Unable to convert"),
    (np.array([[1 + 1j, 2], [3, 4]]), "Complex data not supported"),
    (np.empty((0, 3)), "0 sample"),
    (np.empty((3, 0)), "0 feature"),
    (np.arange(5.0), "Expected 2D array, got 1D array"),
    (np.ones((1, 3)), "1 sample"),
]


@pytest.mark.parametrize("bad, match", BAD_INPUTS)
def test_bad_training_data(bad, match):
    with pytest.raises(ValueError, match=match):
        small().fit(bad)


def test_wrong_feature_count_at_transform(X):
    ae = small().fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but DeepAutoencoder is expecting 5"):
        ae.transform(X[:, :3])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        ae.transform(np.full((2, 5), np.nan))


def test_bce_refuses_data_outside_unit_interval(X):
    with pytest.raises(ValueError, match=r"loss='bce' needs X in \[0, 1\].*MinMaxScaler"):
        small(loss="bce").fit(X)


def test_unfitted():
    with pytest.raises(NotFittedError):
        small().transform(np.ones((2, 2)))


def test_non_finite_loss_is_an_error_not_nan_weights(X):
    ae = small(learning_rate_init=1e30, max_iter=3)
    with pytest.raises(ValueError, match="Lower learning_rate_init"):
        ae.fit(X * 1e14)
    with pytest.raises(NotFittedError):  # nothing half-fitted is left behind
        ae.transform(X)
    # with warm_start the previous, finite model survives
    warm = small(warm_start=True).fit(X)
    before = warm.transform(X)
    warm.set_params(learning_rate_init=1e30)
    with pytest.raises(ValueError, match="non-finite|became"):
        warm.fit(X * 1e14)
    np.testing.assert_array_equal(warm.transform(X), before)


# -- odd but valid data ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda X: np.hstack([X, np.ones((len(X), 1))]),  # constant column
        lambda X: np.vstack([X[:10]] * 6),  # duplicate rows
        lambda X: np.asfortranarray(X),
        lambda X: np.zeros_like(X),
    ],
    ids=["constant-column", "duplicates", "fortran", "all-zero"],
)
def test_odd_data_gives_finite_outputs(X, make):
    data = make(X)
    ae = small().fit(data)
    assert np.isfinite(ae.transform(data)).all()
    assert np.isfinite(ae.score_samples(data)).all()


def test_read_only_input_is_accepted_and_never_modified(X):
    data = X.copy()
    data.setflags(write=False)
    data32 = X.astype(np.float32)
    copy32 = data32.copy()
    ae = small(noise=0.5, shuffle=True).fit(data)
    ae.transform(data)
    small(noise=0.5).fit(data32).transform(data32)
    np.testing.assert_array_equal(data, X)
    np.testing.assert_array_equal(data32, copy32)


# -- reproducibility and global state -------------------------------------------------


def test_same_random_state_gives_identical_fits(X):
    params = dict(dropout=0.1, noise=0.1, early_stopping=True)
    a = small(**params).fit(X).transform(X)
    b = small(**params).fit(X).transform(X)
    np.testing.assert_array_equal(a, b)
    c = small(random_state=1, **params).fit(X).transform(X)
    assert not np.allclose(a, c)


def test_fitting_leaves_global_random_state_alone(X):
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    small(dropout=0.2, noise=0.1, random_state=None).fit(X)
    small(dropout=0.2, early_stopping=True, random_state=3).partial_fit(X)
    assert torch.equal(torch_state, torch.random.get_rng_state())
    after = np.random.get_state()
    assert np_state[0] == after[0] and np.array_equal(np_state[1], after[1])
    assert np_state[2:] == after[2:]


# -- persistence and cloning ----------------------------------------------------------


def test_pickle_and_joblib_round_trip(X, tmp_path):
    ae = small().fit(X)
    expected = ae.transform(X)
    again = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(again.transform(X), expected)
    joblib.dump(ae, tmp_path / "ae.joblib")
    loaded = joblib.load(tmp_path / "ae.joblib")
    np.testing.assert_array_equal(loaded.transform(X), expected)
    # the unpickled model keeps training (optimizer state survives)
    loaded.partial_fit(X)
    assert loaded.n_iter_ == ae.n_iter_ + 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_model_fitted_on_gpu_loads_on_cpu_only_machine(X):
    ae = small().fit(X)
    expected = ae.transform(X)
    ae.device_ = "cuda:0"  # as if it had been fitted on a GPU
    with pytest.warns(UserWarning, match="fitted on cuda:0, which is not available"):
        loaded = pickle.loads(pickle.dumps(ae))
    assert loaded.device_ == "cpu"
    np.testing.assert_array_equal(loaded.transform(X), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_matches_cpu_and_pickles(X):
    gpu = small(device="cuda").fit(X)
    cpu = small(device="cpu").fit(X)
    assert gpu.device_.startswith("cuda")
    np.testing.assert_allclose(gpu.transform(X), cpu.transform(X), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(
        pickle.loads(pickle.dumps(gpu)).transform(X), gpu.transform(X), rtol=1e-6
    )


def test_clone_is_unfitted_with_same_params(X):
    ae = small(n_components=3).fit(X)
    twin = clone(ae)
    assert twin.get_params() == ae.get_params()
    assert not hasattr(twin, "module_")


# -- scikit-learn composition ---------------------------------------------------------


def test_pipeline_and_grid_search_without_labels(X):
    pipe = make_pipeline(StandardScaler(), small(max_iter=60, batch_size=8))
    search = GridSearchCV(pipe, {"deepautoencoder__n_components": [1, 4]}, cv=3, n_jobs=2)
    search.fit(X)
    # a wider bottleneck reconstructs better, and score is higher-is-better
    assert search.best_params_ == {"deepautoencoder__n_components": 4}
    assert search.transform(X).shape == (60, 4)


# -- training guards ------------------------------------------------------------------


def test_keyboard_interrupt_leaves_usable_estimator(X, monkeypatch):
    original = Trainer.batch_step
    calls = {"n": 0}

    def interrupting(self, batch):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "batch_step", interrupting)
    ae = small(max_iter=50, batch_size=20)  # 3 steps per epoch
    with pytest.warns(TrainingInterrupted, match=re.escape("after 2 complete epoch(s)")):
        ae.fit(X)
    assert ae.n_iter_ == 2
    assert np.isfinite(ae.transform(X)).all()


def test_verbose_shows_progress_on_stderr(X, capsys):
    small(verbose=True, max_iter=3).fit(X)
    err = capsys.readouterr().err
    assert "DeepAutoencoder" in err and "loss=" in err


# -- warm starts after a change of shape ----------------------------------------------


@pytest.mark.parametrize(
    "change",
    [dict(n_components=3), dict(hidden_layer_sizes=(6, 4)), dict(activation="tanh"),
     dict(loss="bce"), dict(batch_norm=True)],
)
def test_warm_start_after_a_shape_change_rebuilds_the_network(change):
    X = np.random.RandomState(0).uniform(size=(40, 5))
    ae = small(warm_start=True).fit(X)
    ae.set_params(**change).fit(X)
    fresh = small(**change).fit(X)
    assert ae.n_iter_ == fresh.n_iter_  # a fresh fit, not a continuation
    np.testing.assert_allclose(ae.transform(X), fresh.transform(X))
    assert ae.transform(X).shape[1] == ae.n_components


def test_warm_start_with_same_shape_continues():
    X = np.random.RandomState(0).uniform(size=(40, 5))
    ae = small(warm_start=True).fit(X)
    ae.set_params(learning_rate_init=1e-4).fit(X)
    assert ae.n_iter_ == 10


def test_partial_fit_after_a_shape_change_says_to_call_fit():
    X = np.random.RandomState(0).uniform(size=(40, 5))
    ae = small().partial_fit(X)
    ae.set_params(n_components=4, hidden_layer_sizes=(7,))
    with pytest.raises(ValueError, match="n_components, hidden_layer_sizes changed since"):
        ae.partial_fit(X)


def test_fit_restores_torch_thread_setting():
    X = np.random.RandomState(0).normal(size=(60, 5))
    before = torch.get_num_threads()
    small(n_threads=2).fit(X).transform(X)
    assert torch.get_num_threads() == before


def test_fixed_thread_count_gives_identical_fits():
    X = np.random.RandomState(0).normal(size=(300, 5))
    a = small(n_threads=2, max_iter=3, hidden_layer_sizes=(64,)).fit(X)
    b = small(n_threads=2, max_iter=3, hidden_layer_sizes=(64,)).fit(X)
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(a.transform(X), b.transform(X))

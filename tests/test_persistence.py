"""save/load: safetensors + JSON, no pickle; and pickling through weights_only.

Hostile files, atomic saving and signatures: test_persistence_safety.py.
"""

import pickle
import warnings
import zipfile

import numpy as np
import pytest
import torch
from joblib import Memory
from sklearn.datasets import load_digits, load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_deepunsup import (
    AutoencoderOutlierDetector,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    NeighborEmbedding,
    VariationalAutoencoder,
    load,
    save,
)
from sk_deepunsup._persistence import FORMAT_VERSION

METHODS = ("transform", "inverse_transform", "score_samples", "predict", "predict_proba",
           "decision_function")


def small_ae(**kw):
    return DeepAutoencoder(hidden_layer_sizes=(8,), max_iter=4, random_state=0, **kw)


ESTIMATORS = {
    "ae": lambda: small_ae(batch_norm=True, dropout=0.1, loss="mse"),
    "vae": lambda: VariationalAutoencoder(hidden_layer_sizes=(8,), max_iter=4, random_state=0),
    "dec": lambda: DeepEmbeddingClusterer(3, autoencoder=small_ae(), n_init=2, max_iter=3,
                                          random_state=0),
    "dec_neighbors": lambda: DeepEmbeddingClusterer(
        3, embedding=NeighborEmbedding(n_components=2, hidden_layer_sizes=(8,), max_iter=2),
        n_init=2, max_iter=3, random_state=0,
    ),
    "detector": lambda: AutoencoderOutlierDetector(
        VariationalAutoencoder(hidden_layer_sizes=(8,), max_iter=4), random_state=0
    ),
}


@pytest.fixture(scope="module")
def X():
    return StandardScaler().fit_transform(load_wine().data)


def fitted(name, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ESTIMATORS[name]().fit(X)


def outputs(est, X):
    out = {}
    for method in METHODS:
        if hasattr(est, method):
            arg = est.transform(X) if method == "inverse_transform" else X
            out[method] = getattr(est, method)(arg)
    return out


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make any torch.load or pickle.loads during the test fail."""

    def refuse(*args, **kwargs):
        raise AssertionError("load must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_round_trip_gives_identical_outputs(name, X, tmp_path, no_unpickling):
    est = fitted(name, X)
    path = tmp_path / "model.skdu"
    save(est, path)
    again = load(path)
    assert type(again) is type(est)
    assert again.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    before, after = outputs(est, X), outputs(again, X)
    assert len(before) >= 2
    for method in before:
        np.testing.assert_array_equal(after[method], before[method], err_msg=method)


def test_neighbor_embedding_and_image_clusterer_round_trip(X, tmp_path, no_unpickling):
    ne = NeighborEmbedding(n_components=2, hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    images = load_digits().data[:200] / 16.0
    n2d = DeepEmbeddingClusterer(  # the N2D route: a neighbour embedding of a conv code
        4, autoencoder=DeepAutoencoder(n_components=4, image_shape=(8, 8), max_iter=2),
        max_iter=2, random_state=0,
    )
    for est, data in ((ne, X), (n2d, images)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(data)
        save(est, tmp_path / "model.skdu")
        again = load(tmp_path / "model.skdu")
        np.testing.assert_array_equal(again.transform(data), est.transform(data))


def test_pipeline_round_trip(X, tmp_path):
    pipe = make_pipeline(StandardScaler(), small_ae()).fit(X)
    save(pipe, tmp_path / "pipe.skdu")
    again = load(tmp_path / "pipe.skdu")
    assert [n for n, _ in again.steps] == [n for n, _ in pipe.steps]
    np.testing.assert_array_equal(again.transform(X), pipe.transform(X))


def test_unfitted_round_trip_and_training_continues(X, tmp_path):
    save(small_ae(), tmp_path / "u.skdu")
    unfitted = load(tmp_path / "u.skdu")
    assert unfitted.get_params() == small_ae().get_params()
    assert not hasattr(unfitted, "module_")

    # a loaded model continues training exactly like the original (optimizer state kept)
    est = small_ae(shuffle=False).partial_fit(X)
    save(est, tmp_path / "p.skdu")
    again = load(tmp_path / "p.skdu")
    est.partial_fit(X)
    again.partial_fit(X)
    assert again.n_iter_ == est.n_iter_ == 2
    np.testing.assert_array_equal(again.transform(X), est.transform(X))


def test_feature_names_survive(X, tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = small_ae().fit(df)
    save(est, tmp_path / "m.skdu")
    again = load(tmp_path / "m.skdu")
    assert again.feature_names_in_.tolist() == est.feature_names_in_.tolist()
    with pytest.raises(ValueError, match="feature names"):
        again.transform(df.rename(columns={"f0": "other"}))


def test_gpu_model_loads_on_cpu_with_warning(X, tmp_path):
    dec = fitted("dec", X)
    dec.device_ = "cuda:7"  # as if fitted on a GPU this machine does not have
    dec.autoencoder_.device_ = "cuda:7"
    save(dec, tmp_path / "gpu.skdu")
    with pytest.warns(UserWarning, match="fitted on cuda:7, which is not available"):
        again = load(tmp_path / "gpu.skdu")
    assert again.device_ == "cpu" and again.autoencoder_.device_ == "cpu"
    assert next(again.autoencoder_.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(again.predict(X), dec.predict(X))


def rewrite(path, member, edit):
    """Rewrite one member of a saved file, leaving its checksum as it was."""
    with zipfile.ZipFile(path) as zf:
        blobs = {n: zf.read(n) for n in zf.namelist()}
    blobs[member] = edit(blobs[member])
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in blobs.items():
            zf.writestr(n, b)


def test_foreign_and_tampered_files_are_refused(X, tmp_path):
    foreign = tmp_path / "foreign.skdu"
    foreign.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not an sk_deepunsup model file"):
        load(foreign)
    pickled = tmp_path / "pickled.skdu"
    pickled.write_bytes(pickle.dumps(small_ae()))
    with pytest.raises(ValueError, match="is not an sk_deepunsup model file"):
        load(pickled)

    path = tmp_path / "m.skdu"
    save(fitted("ae", X), path)

    # edited without fixing the checksum (a corrupted file)
    rewrite(path, "estimator.json", lambda b: b.replace(b'"max_iter":4', b'"max_iter":5'))
    with pytest.raises(ValueError, match="estimator.json was changed after saving .checksum"):
        load(path)

    # an unknown format version
    save(fitted("ae", X), path)
    rewrite(path, "manifest.json",
            lambda b: b.replace(f'"format_version": {FORMAT_VERSION}'.encode(),
                                b'"format_version": 99'))
    with pytest.raises(ValueError, match="has format version 99; this sk_deepunsup reads version"):
        load(path)


def test_values_that_are_not_data_are_named(X, tmp_path):
    dec = DeepEmbeddingClusterer(memory=Memory(None))
    with pytest.raises(TypeError, match=r"cannot save estimator.memory of type Memory"):
        save(dec, tmp_path / "m.skdu")
    with pytest.raises(TypeError, match="save expects a scikit-learn estimator"):
        save({"a": 1}, tmp_path / "m.skdu")


def test_pickle_loads_weights_only(X, monkeypatch):
    """Unpickling calls torch.load with weights_only=True only (package networks)."""
    est = fitted("detector", X)
    data = pickle.dumps(est)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    again = pickle.loads(data)
    assert calls and all(c is True for c in calls)
    np.testing.assert_array_equal(again.score_samples(X), est.score_samples(X))


def test_pickle_keeps_foreign_modules(X):
    """A network from outside the package is pickled whole (trusted files only)."""
    est = fitted("ae", X)
    est.extra_ = torch.nn.Linear(2, 2)
    again = pickle.loads(pickle.dumps(est))
    torch.testing.assert_close(again.extra_.weight, est.extra_.weight)
    np.testing.assert_array_equal(again.transform(X), est.transform(X))

"""ONNX export through skl2onnx: onnxruntime matches the estimators."""

import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from sk_deepunsup import (
    AutoencoderOutlierDetector,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    NeighborEmbedding,
    VariationalAutoencoder,
)

ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")
sk_onnx = pytest.importorskip("sk_deepunsup.onnx")

TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def X():
    return load_wine().data


def fit(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X)


def run(onx, X):
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


def op_types(onx):
    return {node.op_type for node in onx.graph.node}


def small(cls, **kw):
    return cls(hidden_layer_sizes=(8,), max_iter=5, random_state=0, **kw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "leaky_relu", "elu", "gelu"])
def test_pipeline_scaler_autoencoder(X, activation, dtype):
    ae = small(DeepAutoencoder, activation=activation, batch_norm=True, dropout=0.2)
    pipe = fit(make_pipeline(StandardScaler(), ae), X)
    Xd = X.astype(dtype)
    onx = skl2onnx.to_onnx(pipe, Xd[:1])
    (embedding,) = run(onx, Xd)
    assert embedding.dtype == dtype and embedding.shape == (X.shape[0], 2)
    np.testing.assert_allclose(embedding, pipe.transform(Xd), **TOL)
    # batch norm folded into the Gemms, dropout gone
    assert "Gemm" in op_types(onx)
    assert not op_types(onx) & {"BatchNormalization", "Dropout"}


def test_vae_transform_is_posterior_mean(X):
    vae = fit(small(VariationalAutoencoder, n_components=3), StandardScaler().fit_transform(X))
    Xs = StandardScaler().fit_transform(X).astype(np.float32)
    (embedding,) = run(sk_onnx.to_onnx(vae, Xs[:1]), Xs)
    assert embedding.shape == (X.shape[0], 3)
    np.testing.assert_allclose(embedding, vae.transform(Xs), **TOL)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clusterer_labels_and_probabilities(X, dtype):
    dec = DeepEmbeddingClusterer(3, autoencoder=small(DeepAutoencoder), n_init=2, max_iter=5,
                                 random_state=0)
    pipe = fit(make_pipeline(StandardScaler(), dec), X)
    Xd = X.astype(dtype)
    label, proba = run(skl2onnx.to_onnx(pipe, Xd[:1]), Xd)
    assert label.dtype == np.int64 and proba.shape == (X.shape[0], 3)
    np.testing.assert_array_equal(label, pipe.predict(Xd))
    np.testing.assert_allclose(proba, pipe.predict_proba(Xd), **TOL)


@pytest.mark.parametrize(
    "autoencoder",
    [
        small(DeepAutoencoder),
        small(DeepAutoencoder, loss="bce"),
        small(VariationalAutoencoder),  # gaussian likelihood
        small(VariationalAutoencoder, loss="mse"),
        small(VariationalAutoencoder, loss="bce"),
    ],
    ids=["ae-mse", "ae-bce", "vae-gaussian", "vae-mse", "vae-bce"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_detector_labels_and_scores(X, autoencoder, dtype):
    detector = AutoencoderOutlierDetector(autoencoder, contamination=0.1, random_state=0)
    pipe = fit(make_pipeline(MinMaxScaler(), detector), X)
    Xd = X.astype(dtype)
    label, scores = run(skl2onnx.to_onnx(pipe, Xd[:1]), Xd)
    assert label.dtype == np.int64 and scores.shape == (X.shape[0],)
    np.testing.assert_array_equal(label, pipe.predict(Xd))
    assert set(label.tolist()) == {-1, 1}
    np.testing.assert_allclose(scores, pipe.decision_function(Xd), **TOL)


def test_wrong_width_and_old_opset_are_refused(X):
    ae = fit(small(DeepAutoencoder), X)
    with pytest.raises(RuntimeError, match="fitted on 13 features, but the ONNX input has 5"):
        sk_onnx.to_onnx(ae, X[:1, :5])
    with pytest.raises(RuntimeError, match="needs target_opset >= 13, got 12"):
        sk_onnx.to_onnx(ae, X[:1], target_opset=12)


def test_register_without_skl2onnx_names_the_extra(monkeypatch):
    monkeypatch.setattr(sk_onnx, "_REGISTERED", False)
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    monkeypatch.delitem(sys.modules, "sk_deepunsup._onnx", raising=False)
    with pytest.raises(ImportError, match=r"pip install \"sk-deepunsup\[onnx\]\""):
        sk_onnx.register()


# -- every default and documented route, from the estimator's own network ---------------

TIGHT = dict(rtol=1e-5, atol=1e-5)  # float32 graphs; float64 ones are closer still


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    return MinMaxScaler().fit_transform(load_digits().data[:240]).astype(np.float32)


def widened(X):
    """300 columns: past the input projection's threshold (256)."""
    return (X @ np.random.RandomState(0).uniform(size=(64, 300))).astype(np.float32) / 10


def conv_autoencoder(**kw):
    return DeepAutoencoder(n_components=4, image_shape=(8, 8), conv_channels=(4, 8),
                           hidden_layer_sizes=(16,), max_iter=1, random_state=0, **kw)


TRANSFORMERS = {
    "neighbors": lambda X: (NeighborEmbedding(max_iter=2, random_state=0), X),
    "neighbors-projected": lambda X: (NeighborEmbedding(max_iter=2, random_state=0), widened(X)),
    "conv-autoencoder": lambda X: (conv_autoencoder(), X),
    "vae": lambda X: (VariationalAutoencoder(hidden_layer_sizes=(16,), max_iter=2,
                                             random_state=0), X),
}

CLUSTERERS = {
    "neighbors": lambda X: (DeepEmbeddingClusterer(3, max_iter=2, random_state=0), X),
    "neighbors-projected": lambda X: (
        DeepEmbeddingClusterer(3, max_iter=2, random_state=0), widened(X)),
    "n2d": lambda X: (DeepEmbeddingClusterer(3, autoencoder=conv_autoencoder(), max_iter=2,
                                             random_state=0), X),
    "vae": lambda X: (DeepEmbeddingClusterer(
        3, autoencoder=VariationalAutoencoder(hidden_layer_sizes=(16,), max_iter=2,
                                              random_state=0), max_iter=2, random_state=0), X),
}

DETECTORS = {
    "default": lambda: AutoencoderOutlierDetector(random_state=0),
    "conv": lambda: AutoencoderOutlierDetector(conv_autoencoder(loss="bce"), random_state=0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("route", TRANSFORMERS)
def test_transformer_routes(digits, route, dtype):
    est, X = TRANSFORMERS[route](digits)
    est = fit(est, X)
    X = X.astype(dtype)
    if route == "neighbors-projected":
        assert est.input_projection_ == "pca"
    (embedding,) = run(sk_onnx.to_onnx(est, X[:1]), X)
    np.testing.assert_allclose(embedding, est.transform(X), **TIGHT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("route", CLUSTERERS)
def test_clusterer_routes(digits, route, dtype):
    est, X = CLUSTERERS[route](digits)
    est = fit(est, X)
    X = X.astype(dtype)
    onx = sk_onnx.to_onnx(est, X[:1])
    label, proba = run(onx, X)
    np.testing.assert_allclose(proba, est.predict_proba(X), **TIGHT)
    np.testing.assert_array_equal(label, est.predict(X))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("route", DETECTORS)
def test_detector_routes(digits, route, dtype):
    detector = fit(DETECTORS[route](), digits)
    X = digits.astype(dtype)
    label, scores = run(sk_onnx.to_onnx(detector, X[:1]), X)
    np.testing.assert_allclose(scores, detector.decision_function(X), **TIGHT)
    np.testing.assert_array_equal(label, detector.predict(X))


def test_untraceable_users_module_names_it(digits):
    from torch import nn

    class Branchy(nn.Module):  # data-dependent control flow: not traceable
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 2)

        def forward(self, x):
            return self.lin(x) if bool(x.sum() > 0) else -self.lin(x)

    ae = fit(DeepAutoencoder(n_components=2, encoder=Branchy(), decoder=nn.Linear(2, 64),
                             max_iter=1, random_state=0), digits)
    with pytest.raises(NotImplementedError, match="cannot export it .your module Branchy"):
        sk_onnx.to_onnx(ae, digits[:1])

"""The Displays: what they compute and draw, and their errors."""

import math
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from sk_deepunsup import AutoencoderOutlierDetector, DeepAutoencoder, DeepEmbeddingClusterer
from sk_deepunsup.inspection import EmbeddingDisplay, LossCurveDisplay, ReconstructionDisplay

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def quiet_fit(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X)


def small_ae(**kw):
    params = dict(hidden_layer_sizes=(16,), max_iter=8, random_state=0)
    return DeepAutoencoder(**{**params, **kw})


@pytest.fixture(scope="module")
def wine():
    return load_wine(as_frame=True)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


@pytest.fixture(scope="module")
def dec(wine):
    model = DeepEmbeddingClusterer(3, autoencoder=small_ae(n_components=4), n_init=2, max_iter=60,
                                   update_interval=10, tol=0.0, random_state=0)
    return quiet_fit(make_pipeline(StandardScaler(), model), wine.data)


@pytest.fixture(scope="module")
def detector(wine):
    model = AutoencoderOutlierDetector(small_ae(), random_state=0)
    return quiet_fit(make_pipeline(StandardScaler(), model), wine.data)


def test_loss_curve_training_and_validation(digits):
    ae = quiet_fit(small_ae(early_stopping=True), digits[0])
    fig, ax = plt.subplots()
    disp = LossCurveDisplay.from_estimator(ae, ax=ax)
    assert disp.ax_ is ax and disp.figure_ is fig
    np.testing.assert_array_equal(disp.line_.get_xdata(), np.arange(1, ae.n_iter_ + 1))
    np.testing.assert_allclose(disp.line_.get_ydata(), ae.loss_curve_)
    np.testing.assert_allclose(disp.validation_line_.get_ydata(), ae.validation_loss_curve_)
    assert disp.label_changes_line_ is None
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "training loss", "validation loss"]


def test_loss_curve_of_clusterer_shows_label_changes(dec, wine):
    disp = LossCurveDisplay.from_estimator(dec)
    model = dec[-1]
    np.testing.assert_allclose(disp.line_.get_ydata(), model.loss_curve_)
    assert disp.validation_line_ is None
    np.testing.assert_allclose(disp.label_changes_line_.get_ydata(), model.label_changes_)
    # 178 samples in one batch a step: an update every 10 epochs
    steps_per_epoch = math.ceil(len(wine.data) / 256)
    expected = (np.arange(len(model.label_changes_)) + 1) * 10 / steps_per_epoch
    np.testing.assert_allclose(disp.label_changes_line_.get_xdata(), expected)
    assert disp.label_changes_ax_ is not disp.ax_


def test_loss_curve_of_detector_is_its_autoencoders(detector):
    disp = LossCurveDisplay.from_estimator(detector)
    np.testing.assert_allclose(disp.line_.get_ydata(), detector[-1].autoencoder_.loss_curve_)


def test_embedding_two_components_coloured_by_labels(digits):
    X, y = digits
    ae = quiet_fit(small_ae(), X)
    disp = EmbeddingDisplay.from_estimator(ae, X, y=y)
    np.testing.assert_allclose(disp.scatter_.get_offsets(), ae.transform(X))
    assert disp.color_by == "labels"
    assert [t.get_text() for t in disp.legend_.get_texts()] == [str(c) for c in np.unique(y)]
    assert disp.ax_.get_xlabel() == "component 1"


def test_embedding_projects_and_colours_clusters(dec, wine):
    disp = EmbeddingDisplay.from_estimator(dec, wine.data)
    assert disp.color_by == "clusters"
    np.testing.assert_array_equal(disp.colors, dec.predict(wine.data))
    expected = PCA(n_components=2, random_state=0).fit_transform(dec.transform(wine.data))
    np.testing.assert_allclose(disp.scatter_.get_offsets(), expected, atol=1e-8)
    assert disp.ax_.get_xlabel() == "PC 1 of the embedding"


def test_embedding_of_detector_coloured_by_scores(detector, wine):
    disp = EmbeddingDisplay.from_estimator(detector, wine.data)
    assert disp.color_by == "scores" and disp.colorbar_ is not None
    np.testing.assert_allclose(disp.colors, detector.score_samples(wine.data))
    np.testing.assert_allclose(disp.scatter_.get_array(), detector.score_samples(wine.data))


def test_embedding_errors(digits, dec, wine):
    X, _ = digits
    ae = quiet_fit(small_ae(), X)
    with pytest.raises(ValueError, match='color_by="labels" needs y'):
        EmbeddingDisplay.from_estimator(ae, X, color_by="labels")
    with pytest.raises(ValueError, match='color_by="clusters" needs a clusterer'):
        EmbeddingDisplay.from_estimator(ae, X, color_by="clusters")
    with pytest.raises(ValueError, match="color_by must be one of"):
        EmbeddingDisplay.from_estimator(ae, X, color_by="colour")
    with pytest.raises(ValueError, match=r"y has shape \(3,\), but X has 300 samples"):
        EmbeddingDisplay.from_estimator(ae, X, y=[1, 2, 3])
    with pytest.raises(NotFittedError):
        EmbeddingDisplay.from_estimator(small_ae(), X)


def test_reconstruction_image_grid(digits):
    X, _ = digits
    pipe = quiet_fit(make_pipeline(MinMaxScaler(), small_ae(n_components=8)), X)
    disp = ReconstructionDisplay.from_estimator(pipe, X, image_shape=(8, 8), n_images=5)
    # originals and reconstructions in X's own units (the scaler is inverted)
    np.testing.assert_array_equal(disp.originals, X[:5])
    np.testing.assert_allclose(disp.reconstructions,
                               pipe.inverse_transform(pipe.transform(X[:5])))
    grid = disp.image_.get_array()
    assert grid.shape == (2 * 8 + 3, 5 * 8 + 6)
    np.testing.assert_array_equal(grid[1:9, 1:9], X[0].reshape(8, 8))
    assert [t.get_text() for t in disp.ax_.get_yticklabels()] == ["original", "reconstruction"]


def test_reconstruction_uses_estimator_image_shape(digits):
    X, _ = digits
    ae = quiet_fit(small_ae(), X / 16)
    ae.image_shape = (1, 8, 8)  # as the convolutional autoencoders will carry it
    disp = ReconstructionDisplay.from_estimator(ae, X / 16, n_images=3)
    assert disp.image_shape == (1, 8, 8)
    assert disp.image_.get_array().shape == (19, 3 * 8 + 4)
    with pytest.raises(ValueError, match=r"image_shape=\(7, 7\) holds 49 values, but X has 64"):
        ReconstructionDisplay.from_estimator(ae, X / 16, image_shape=(7, 7))


def test_reconstruction_errors_per_named_feature(detector, wine):
    disp = ReconstructionDisplay.from_estimator(detector, wine.data)
    names = [t.get_text() for t in disp.ax_.get_xticklabels()]
    assert names == list(wine.data.columns)
    Xs = detector[0].transform(wine.data)
    ae = detector[-1].autoencoder_
    expected = np.mean((Xs - ae.inverse_transform(ae.transform(Xs))) ** 2, axis=0)
    np.testing.assert_allclose(disp.errors_, expected)
    np.testing.assert_allclose([b.get_height() for b in disp.bars_], expected)


def test_missing_matplotlib_names_the_extra(digits, monkeypatch):
    ae = quiet_fit(small_ae(), digits[0])
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install \"sk-deepunsup\[plot\]\""):
        LossCurveDisplay.from_estimator(ae)


def test_reconstruction_display_needs_a_decoder():
    pytest.importorskip("matplotlib")
    from sk_deepunsup import DeepEmbeddingClusterer, NeighborEmbedding
    from sk_deepunsup.inspection import ReconstructionDisplay

    X = np.random.RandomState(0).uniform(size=(60, 4))
    dec = DeepEmbeddingClusterer(
        2, embedding=NeighborEmbedding(n_components=2, n_neighbors=5, max_iter=2),
        max_iter=2, n_init=1, random_state=0,
    ).fit(X)
    with pytest.raises(TypeError, match="has no decoder to reconstruct with"):
        ReconstructionDisplay.from_estimator(dec, X)

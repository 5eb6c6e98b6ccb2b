"""Convolutional autoencoders (image_shape) and users' torch modules (encoder/decoder)."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from sk_deepunsup import (
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    VariationalAutoencoder,
    load,
    save,
)
from sk_deepunsup._nn.conv import ConvDecoder, ConvEncoder

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def small_conv(**params):
    base = dict(
        n_components=8,
        image_shape=(8, 8),
        conv_channels=(8, 16),
        hidden_layer_sizes=(),
        batch_size=64,
        max_iter=15,
        random_state=0,
        n_threads=1,
    )
    return DeepAutoencoder(**{**base, **params})


def held_out_mse(est, X):
    return float(np.mean((est.inverse_transform(est.transform(X)) - X) ** 2))


def test_conv_autoencoder_learns_and_is_convolutional(digits):
    X, _ = digits
    train, test = X[:1500], X[1500:]
    ae = small_conv().fit(train)
    assert isinstance(ae.module_.encoder, ConvEncoder)
    assert isinstance(ae.module_.decoder, ConvDecoder)
    assert any(isinstance(m, nn.Conv2d) for m in ae.module_.modules())
    assert any(isinstance(m, nn.ConvTranspose2d) for m in ae.module_.modules())
    assert ae.transform(test).shape == (len(test), 8)
    assert ae.inverse_transform(ae.transform(test)).shape == test.shape
    baseline = float(np.mean((test - train.mean(axis=0)) ** 2))
    assert held_out_mse(ae, test) < 0.6 * baseline
    assert ae.loss_curve_[-1] < ae.loss_curve_[0]


@pytest.mark.parametrize("Estimator", [DeepAutoencoder, VariationalAutoencoder])
def test_auto_defaults_depend_on_the_network(digits, Estimator):
    """hidden_layer_sizes / batch_size "auto": none and 64 for images, (128, 64) and 256 else."""
    X, _ = digits
    n_code = 4 * (2 if Estimator is VariationalAutoencoder else 1)
    conv = Estimator(n_components=4, image_shape=(8, 8), max_iter=1, random_state=0).fit(X)
    assert conv.hidden_layer_sizes == "auto" and conv.batch_size == "auto"
    linears = [m for m in conv.module_.encoder.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128, n_code)]  # 8x8 -> 4x4 -> 2x2 -> 1x1
    assert conv._resolve_batch_size(len(X)) == 64
    assert conv._resolve_batch_size(50) == 50
    mlp = Estimator(n_components=4, max_iter=1, random_state=0).fit(X)
    linears = [m for m in mlp.module_.encoder.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [128, 64, n_code]
    assert mlp._resolve_batch_size(len(X)) == 256
    explicit = conv.set_params(hidden_layer_sizes=(16,), batch_size=100, warm_start=False).fit(X)
    linears = [m for m in explicit.module_.encoder.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [16, n_code]
    assert explicit._resolve_batch_size(len(X)) == 100
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        Estimator(hidden_layer_sizes="big").fit(X)


@pytest.mark.parametrize(
    "shape, expected",
    [((8, 8), (1, 8, 8)), ((1, 8, 8), (1, 8, 8)), ((-1, 8), (1, 8, 8)), ((4, 1, -1), (4, 1, 16))],
)
def test_image_shape_forms(digits, shape, expected):
    X, _ = digits
    ae = small_conv(image_shape=shape, max_iter=1).fit(X[:64])
    assert ae.module_.encoder.image_shape == expected


def test_height_width_equals_one_channel(digits):
    X, _ = digits
    a = small_conv(image_shape=(8, 8), max_iter=2).fit(X[:200])
    b = small_conv(image_shape=(1, 8, 8), max_iter=2).fit(X[:200])
    np.testing.assert_array_equal(a.transform(X[:50]), b.transform(X[:50]))


def test_odd_sizes_and_channels_round_trip():
    X = np.random.RandomState(0).uniform(size=(40, 3 * 7 * 5))
    ae = DeepAutoencoder(
        n_components=3, image_shape=(3, 7, 5), conv_channels=(4, 8, 8), max_iter=2, n_threads=1
    ).fit(X)
    assert ae.inverse_transform(ae.transform(X)).shape == X.shape


@pytest.mark.parametrize("ndim", [3, 4])
def test_image_arrays_get_the_fix(digits, ndim):
    X, _ = digits
    images = X[:20].reshape((20, 8, 8) if ndim == 3 else (20, 1, 8, 8))
    with pytest.raises(ValueError, match=r"X\.reshape\(len\(X\), -1\)"):
        small_conv().fit(images)
    fitted = small_conv(max_iter=1).fit(X[:20])
    with pytest.raises(ValueError, match=r"X\.reshape\(len\(X\), -1\)"):
        fitted.transform(images)
    clusterer = DeepEmbeddingClusterer(n_clusters=2, autoencoder=small_conv())
    with pytest.raises(ValueError, match=r"X\.reshape\(len\(X\), -1\)"):
        clusterer.fit(images)


def test_width_mismatch_shows_the_fix(digits):
    X, _ = digits
    with pytest.raises(ValueError, match=r"image_shape=\(1, 28, 28\) needs 784.*reshape"):
        small_conv(image_shape=(1, 28, 28)).fit(X[:20])
    with pytest.raises(ValueError, match="not a multiple of 7"):
        small_conv(image_shape=(-1, 7)).fit(X[:20])


@pytest.mark.parametrize("shape", [(8,), (0, 8), (2, 2, 2, 8), (-1, -1), (8.0, 8), (True, 64)])
def test_bad_image_shape(digits, shape):
    X, _ = digits
    with pytest.raises(ValueError, match="image_shape must be"):
        small_conv(image_shape=shape).fit(X[:20])


def test_bad_conv_channels(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="conv_channels must be"):
        small_conv(conv_channels=(8, 0)).fit(X[:20])


def test_conv_fit_is_deterministic(digits):
    X, _ = digits
    a = small_conv(max_iter=3, dropout=0.2).fit(X[:300]).transform(X[:40])
    b = small_conv(max_iter=3, dropout=0.2).fit(X[:300]).transform(X[:40])
    np.testing.assert_array_equal(a, b)


def test_warm_start_rebuilds_when_image_parameters_change(digits):
    X, _ = digits
    ae = small_conv(max_iter=2, warm_start=True).fit(X[:100])
    first = ae.module_
    ae.fit(X[:100])
    assert ae.module_ is first and ae.n_iter_ == 4
    ae.set_params(conv_channels=(4, 8)).fit(X[:100])
    assert ae.module_ is not first and ae.n_iter_ == 2
    ae.set_params(conv_channels=(8, 16))
    with pytest.raises(ValueError, match="conv_channels changed"):
        ae.partial_fit(X[:100])


def test_conv_vae_samples_images(digits):
    X, _ = digits
    vae = VariationalAutoencoder(
        n_components=4, image_shape=(8, 8), conv_channels=(8, 16), loss="bce",
        max_iter=15, random_state=0, n_threads=1,
    ).fit(X)
    samples = vae.sample(5)
    assert samples.shape == (5, 64)
    assert samples.min() >= 0 and samples.max() <= 1
    noise = np.random.RandomState(0).uniform(size=(50, 64)).astype(np.float32)
    assert vae.score(X[:200]) > vae.score(noise)


def test_clusterer_with_conv_autoencoder(digits):
    X, y = digits
    dec = DeepEmbeddingClusterer(
        n_clusters=10, autoencoder=small_conv(n_components=10, max_iter=10),
        embedding="autoencoder", max_iter=2, random_state=0, n_threads=1,
    ).fit(X[:600])
    assert dec.labels_.shape == (600,)
    assert isinstance(dec.autoencoder_.module_.encoder, ConvEncoder)
    assert dec.predict(X[600:700]).shape == (100,)


def test_clusterer_clusters_neighbour_embedding_of_image_code(digits):
    """embedding="auto" with an image autoencoder: N2D, the chain conv encoder -> embedding."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    from sk_deepunsup._code_embedding import CodeNeighborEmbedding

    X, y = digits
    X, y = X[:500], y[:500]
    ae = small_conv(n_components=10, max_iter=10)
    dec = DeepEmbeddingClusterer(
        n_clusters=10, autoencoder=ae, max_iter=2, random_state=0, n_threads=1
    ).fit(X)
    pair = dec.autoencoder_
    assert isinstance(pair, CodeNeighborEmbedding)
    assert isinstance(pair.autoencoder.module_.encoder, ConvEncoder)
    assert pair.embedding.n_features_in_ == 10  # fitted to the code, not the pixels
    assert not hasattr(ae, "module_")  # the given autoencoder is left unfitted
    Z = dec.transform(X)
    assert Z.shape == (len(X), pair.embedding.n_components)
    np.testing.assert_allclose(Z, pair.transform(X), atol=1e-5)
    np.testing.assert_array_equal(dec.predict(X), dec.labels_)
    # clustering the embedded code beats k-means on the code itself
    code_kmeans = KMeans(10, n_init=10, random_state=0).fit_predict(pair.autoencoder.transform(X))
    assert normalized_mutual_info_score(y, dec.labels_) > normalized_mutual_info_score(y, code_kmeans)
    again = pickle.loads(pickle.dumps(dec))
    np.testing.assert_allclose(again.transform(X[:20]), Z[:20], atol=1e-6)


def test_conv_pickle_save_load(digits, tmp_path):
    X, _ = digits
    ae = small_conv(max_iter=2).fit(X[:100])
    expected = ae.transform(X[:30])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ae)).transform(X[:30]), expected)
    save(ae, tmp_path / "conv.skdu")
    np.testing.assert_array_equal(load(tmp_path / "conv.skdu").transform(X[:30]), expected)


def test_conv_onnx_matches_transform(digits):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    from sk_deepunsup.onnx import to_onnx

    ae = small_conv(max_iter=1).fit(X := digits[0][:50])
    session = ort.InferenceSession(to_onnx(ae, X[:1]).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (code,) = session.run(None, {session.get_inputs()[0].name: X})
    assert {"Conv"} <= {node.op_type for node in to_onnx(ae, X[:1]).graph.node}
    np.testing.assert_allclose(code, ae.transform(X), rtol=1e-5, atol=1e-5)


def test_pipeline_with_images_flattened(digits):
    X, _ = digits
    images = X[:100].reshape(100, 8, 8)
    pipe = make_pipeline(
        FunctionTransformer(lambda a: a.reshape(len(a), -1)), small_conv(max_iter=2)
    )
    assert pipe.fit_transform(images).shape == (100, 8)


# -- users' modules -------------------------------------------------------------------


class TinyEncoder(nn.Module):
    def __init__(self, n_out=4):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(4 * 4 * 4, n_out)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.conv(x))).flatten(1))


def tiny_decoder(n_in=4):
    return nn.Sequential(nn.Linear(n_in, 64), nn.Unflatten(1, (1, 8, 8)))


def custom(**params):
    torch.manual_seed(0)  # the modules' own initial weights
    base = dict(
        n_components=4, image_shape=(8, 8), encoder=TinyEncoder(), decoder=tiny_decoder(),
        max_iter=20, random_state=0, n_threads=1,
    )
    return DeepAutoencoder(**{**base, **params})


def test_custom_modules_train_and_stay_unchanged(digits):
    X, _ = digits
    ae = custom()
    before = copy.deepcopy(ae.encoder.state_dict())
    ae.fit(X[:1000])
    for k, v in ae.encoder.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert ae.module_.encoder.module is not ae.encoder
    assert ae.loss_curve_[-1] < 0.7 * ae.loss_curve_[0]
    assert ae.transform(X[1000:]).shape == (len(X) - 1000, 4)
    # clone copies the modules too
    cloned = clone(ae)
    assert cloned.encoder is not ae.encoder
    assert isinstance(cloned.encoder, TinyEncoder)


def test_custom_modules_deterministic(digits):
    X, _ = digits
    a = custom(max_iter=3).fit(X[:300]).transform(X[:20])
    b = custom(max_iter=3).fit(X[:300]).transform(X[:20])
    np.testing.assert_array_equal(a, b)
    c = custom(max_iter=3, random_state=1).fit(X[:300]).transform(X[:20])
    assert not np.array_equal(a, c)


def test_fit_leaves_global_rng_alone(digits):
    X, _ = digits
    ae = custom(max_iter=2)
    torch.manual_seed(123)
    ae.fit(X[:200])
    after_fit = torch.rand(3)
    torch.manual_seed(123)
    np.testing.assert_array_equal(after_fit.numpy(), torch.rand(3).numpy())


def test_custom_flat_modules_without_image_shape(digits):
    X, _ = digits
    ae = DeepAutoencoder(
        n_components=3, encoder=nn.Linear(64, 3), decoder=nn.Linear(3, 64), max_iter=5,
        random_state=0, n_threads=1,
    ).fit(X[:200])
    assert ae.transform(X[:5]).shape == (5, 3)


def test_custom_vae(digits):
    X, _ = digits
    torch.manual_seed(0)
    vae = VariationalAutoencoder(
        n_components=4, image_shape=(8, 8), encoder=TinyEncoder(8), decoder=tiny_decoder(),
        loss="bce", max_iter=5, random_state=0, n_threads=1,
    ).fit(X[:300])
    assert vae.sample(2).shape == (2, 64)
    with pytest.raises(ValueError, match=r"needs \(2, 8\).*log-variance"):
        VariationalAutoencoder(
            n_components=4, image_shape=(8, 8), encoder=TinyEncoder(4), decoder=tiny_decoder(),
        ).fit(X[:50])


def test_custom_modules_errors(digits, tmp_path):
    X, _ = digits
    with pytest.raises(ValueError, match="given together"):
        DeepAutoencoder(encoder=nn.Linear(64, 2)).fit(X[:20])
    with pytest.raises(ValueError, match=r"encoder maps .* \(2, 3\).*needs \(2, 4\)"):
        custom(encoder=TinyEncoder(3)).fit(X[:20])
    with pytest.raises(ValueError, match=r"decoder maps 2 codes to \(2, 32\)"):
        custom(decoder=nn.Linear(4, 32)).fit(X[:20])
    with pytest.raises(ValueError, match="failed on a dummy batch"):
        custom(encoder=nn.Linear(10, 4)).fit(X[:20])
    with pytest.raises(TypeError, match="encoder must be"):
        DeepAutoencoder(encoder="conv").fit(X[:20])


def test_custom_modules_pickle_but_save_refuses(digits, tmp_path):
    X, _ = digits
    ae = custom(max_iter=2).fit(X[:100])
    restored = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(restored.transform(X[:10]), ae.transform(X[:10]))
    with pytest.raises(TypeError, match="outside sk_deepunsup.*[Pp]ickle"):
        save(ae, tmp_path / "custom.skdu")
    with pytest.raises(TypeError, match="outside sk_deepunsup"):
        save(DeepEmbeddingClusterer(autoencoder=custom()), tmp_path / "c.skdu")


def test_warm_start_keeps_custom_network_until_it_changes(digits):
    X, _ = digits
    ae = custom(max_iter=2, warm_start=True).fit(X[:100])
    first = ae.module_
    ae.set_params(encoder=copy.deepcopy(ae.encoder)).fit(X[:100])  # same architecture
    assert ae.module_ is first
    ae.set_params(encoder=TinyEncoder(), decoder=nn.Sequential(
        nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 64)
    )).fit(X[:100])
    assert ae.module_ is not first


def test_custom_modules_in_clusterer(digits):
    X, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dec = DeepEmbeddingClusterer(
            n_clusters=5, autoencoder=custom(max_iter=3), embedding="autoencoder",
            max_iter=1, random_state=0,
        ).fit(X[:300])
    assert dec.transform(X[:10]).shape == (10, 4)


def test_clusterer_image_shape_takes_the_conv_route_by_default(digits, monkeypatch):
    """image_shape on the clusterer: the default autoencoder is convolutional, under N2D."""
    from sk_deepunsup import _pretraining
    from sk_deepunsup._code_embedding import CodeNeighborEmbedding

    monkeypatch.setattr(_pretraining, "IMAGE_PRETRAINING_EPOCHS", (2, 2))
    X, _ = digits
    X = X[:300]
    dec = DeepEmbeddingClusterer(
        n_clusters=5, image_shape=(8, 8), max_iter=2, n_init=2, random_state=0, n_threads=1
    )
    assert dec.get_params()["image_shape"] == (8, 8)  # stored as given
    dec.fit(X)
    pair = dec.autoencoder_
    assert isinstance(pair, CodeNeighborEmbedding)
    assert isinstance(pair.autoencoder.module_.encoder, ConvEncoder)
    assert pair.autoencoder.image_shape == (8, 8)
    assert dec.predict(X[:20]).shape == (20,)
    again = DeepEmbeddingClusterer(
        n_clusters=5, image_shape=(1, 8, -1), max_iter=2, n_init=2, random_state=0, n_threads=1
    ).fit(X)
    np.testing.assert_array_equal(again.labels_, dec.labels_)  # the same images
    # embedding="autoencoder": DEC on the conv code; "neighbors": pixels, no autoencoder
    dec.set_params(embedding="autoencoder").fit(X)
    assert isinstance(dec.autoencoder_.module_.encoder, ConvEncoder)
    dec.set_params(embedding="neighbors").fit(X)
    assert not isinstance(dec.autoencoder_, CodeNeighborEmbedding)


def test_clusterer_image_shape_mismatch_is_refused(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="X has 64 features, but image_shape=\\(9, 9\\)"):
        DeepEmbeddingClusterer(3, image_shape=(9, 9)).fit(X[:50])
    with pytest.raises(ValueError, match="image_shape must be"):
        DeepEmbeddingClusterer(3, image_shape=(0, 8)).fit(X[:50])

"""Sparse and streamed (out-of-core) input, and the multinomial loss, for every estimator."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_blobs
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import make_pipeline

import sk_deepunsup._validation as validation
from sk_deepunsup import (
    AutoencoderOutlierDetector,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    VariationalAutoencoder,
)
from sk_deepunsup._nn import SparseRowSource, StreamedRowSource, TensorSource

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def sparse_data(n=120, d=30, density=0.2, seed=0):
    X = sp.random(n, d, density=density, format="csr", random_state=seed, dtype=np.float64)
    X.data = np.round(X.data * 5) + 1.0  # counts >= 1
    return X


def small_ae(**params):
    defaults = dict(n_components=3, hidden_layer_sizes=(8,), max_iter=4, random_state=0)
    defaults.update(params)
    return DeepAutoencoder(**defaults)


ESTIMATORS = {
    "autoencoder": lambda: small_ae(),
    "vae": lambda: VariationalAutoencoder(
        n_components=2, hidden_layer_sizes=(8,), max_iter=4, random_state=0
    ),
    "clusterer": lambda: DeepEmbeddingClusterer(
        3, autoencoder=small_ae(), n_init=2, max_iter=3, random_state=0
    ),
    "detector": lambda: AutoencoderOutlierDetector(small_ae(), random_state=0),
}

METHODS = ["transform", "score_samples", "predict", "predict_proba", "decision_function"]


# -- the core sources ------------------------------------------------------------------


def test_sources_serve_the_same_batches():
    X = sparse_data()
    dense = X.toarray().astype(np.float32)
    import torch

    sources = [
        TensorSource(torch.from_numpy(dense)),
        SparseRowSource.from_csr(X, "cpu"),
        StreamedRowSource(dense, "cpu"),
    ]
    per_source = []
    for source in sources:
        gen = torch.Generator().manual_seed(3)
        per_source.append(
            [b for b in source.batches(50, shuffle=True, generator=gen, with_index=True)]
        )
    for batches in per_source[1:]:
        for (x, i), (x0, i0) in zip(batches, per_source[0]):
            assert torch.equal(i, i0)
            assert torch.equal(x, x0)
            assert torch.equal(x, torch.from_numpy(dense[i.numpy()]))
    # a trailing batch of one is merged into the one before
    assert [len(b[0]) for b in per_source[0]] == [50, 50, 20]


def test_sparse_source_sums_duplicates_and_leaves_input_alone():
    # row 0 holds column 2 twice (non-canonical CSR), unsorted indices
    X = sp.csr_matrix(
        (np.array([1.0, 2.0, 5.0]), np.array([2, 2, 0]), np.array([0, 2, 3])), shape=(2, 3)
    )
    before = (X.indptr.copy(), X.indices.copy(), X.data.copy())
    source = SparseRowSource.from_csr(X, "cpu")
    np.testing.assert_array_equal(source.rows(np.array([1, 0])).numpy(), [[5, 0, 0], [0, 0, 3]])
    np.testing.assert_array_equal(source.subset(np.array([0])).slice(0, 1).numpy(), [[0, 0, 3]])
    for a, b in zip(before, (X.indptr, X.indices, X.data)):
        np.testing.assert_array_equal(a, b)


# -- estimators: sparse gives what dense gives ------------------------------------------


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_input_matches_dense(name, fmt):
    X = sparse_data()
    dense_model = ESTIMATORS[name]().fit(X.toarray())
    sparse_model = ESTIMATORS[name]().fit(X.asformat(fmt))
    checked = 0
    for method in METHODS:
        if hasattr(dense_model, method):
            expected = getattr(dense_model, method)(X.toarray())
            got = getattr(sparse_model, method)(X.asformat(fmt))
            assert isinstance(got, np.ndarray)  # outputs are dense
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
            checked += 1
    assert checked >= 2
    if hasattr(dense_model, "score"):
        assert sparse_model.score(X) == pytest.approx(dense_model.score(X.toarray()), abs=1e-4)


def test_partial_fit_on_sparse_chunks_matches_dense():
    X = sparse_data()
    a, b = small_ae(), small_ae()
    for start in (0, 60):
        a.partial_fit(X[start : start + 60])
        b.partial_fit(X[start : start + 60].toarray())
    np.testing.assert_allclose(a.transform(X), b.transform(X.toarray()), atol=1e-5)


def test_clusterer_scores_sparse_beyond_the_subsample(monkeypatch):
    import sk_deepunsup._clustering as clustering

    monkeypatch.setattr(clustering, "SCORE_SAMPLE_SIZE", 50)
    X = sparse_data()
    dec = ESTIMATORS["clusterer"]().fit(X)
    assert dec.score(X) == pytest.approx(dec.score(X.toarray()), abs=1e-6)
    assert -1.0 <= dec.score(X) <= 1.0


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.nan, "NaN"),
        (np.inf, "infinity"),
    ],
)
def test_sparse_non_finite_values_are_refused(bad, match):
    X = sparse_data()
    X.data[3] = bad
    with pytest.raises(ValueError, match=match):
        small_ae().fit(X)


def test_sparse_wrong_width_is_refused():
    X = sparse_data()
    ae = small_ae().fit(X)
    with pytest.raises(ValueError, match="X has 29 features, but DeepAutoencoder is expecting 30"):
        ae.transform(X[:, :29])


# -- the multinomial loss ---------------------------------------------------------------


def topic_counts(n=200, d=40, seed=0):
    """Documents drawn from 4 topics, each a distribution over its own words."""
    rng = np.random.RandomState(seed)
    topic = rng.randint(4, size=n)
    word_probs = np.full((4, d), 0.2 / d)
    for t in range(4):
        word_probs[t, t * 10 : t * 10 + 10] += 0.08
    word_probs /= word_probs.sum(axis=1, keepdims=True)
    counts = np.stack([rng.multinomial(30, word_probs[t]) for t in topic]).astype(float)
    return sp.csr_matrix(counts), topic


def test_multinomial_autoencoder_learns_topic_structure():
    X, topic = topic_counts()
    ae = DeepAutoencoder(n_components=4, hidden_layer_sizes=(32,), loss="multinomial",
                         max_iter=60, random_state=0).fit(X)
    shares = ae.inverse_transform(ae.transform(X))
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-6)
    # per-row log-likelihood beats the corpus-wide word frequencies
    marginal = np.asarray(X.sum(axis=0)).ravel() / X.sum()
    baseline = X @ np.log(marginal)
    assert ae.score(X) > np.mean(baseline) + 5.0
    # documents of one topic share an embedding region
    labels = DeepEmbeddingClusterer(4, autoencoder=ae, n_init=5, max_iter=5,
                                    random_state=0).fit_predict(X)
    assert normalized_mutual_info_score(topic, labels) > 0.8


@pytest.mark.parametrize(
    "make",
    [
        lambda: DeepAutoencoder(loss="multinomial", max_iter=2),
        lambda: VariationalAutoencoder(loss="multinomial", max_iter=2),
    ],
)
def test_multinomial_refuses_negative_values(make):
    X = sparse_data()
    X.data[0] = -1.0
    with pytest.raises(ValueError, match="loss='multinomial' needs non-negative X"):
        make().fit(X)
    with pytest.raises(ValueError, match="loss='multinomial' needs non-negative X"):
        make().fit(X.toarray())


def test_multinomial_vae_samples_are_shares():
    X, _ = topic_counts(n=80)
    vae = VariationalAutoencoder(n_components=2, hidden_layer_sizes=(16,),
                                 loss="multinomial", max_iter=5, random_state=0).fit(X)
    samples = vae.sample(4)
    assert samples.shape == (4, 40)
    np.testing.assert_allclose(samples.sum(axis=1), 1.0, atol=1e-6)
    assert np.isfinite(vae.score_samples(X)).all()


def test_text_pipeline_clusters_raw_documents():
    topics = {
        "space": "orbit rocket launch nasa moon shuttle astronaut planet",
        "cars": "engine wheel brake car driver motor gear tyre",
        "food": "recipe bake flour sugar oven butter dough cake",
    }
    rng = np.random.RandomState(0)
    docs, truth = [], []
    for label, words in enumerate(topics.values()):
        vocab = words.split()
        for _ in range(40):
            docs.append(" ".join(rng.choice(vocab, size=12)))
            truth.append(label)
    # the clusterer's defaults, on raw documents
    model = make_pipeline(TfidfVectorizer(), DeepEmbeddingClusterer(3, random_state=0))
    labels = model.fit_predict(docs)
    assert normalized_mutual_info_score(truth, labels) > 0.9


# -- streamed (out-of-core) input -------------------------------------------------------


class RowStore:
    """A stand-in for an h5py dataset: rows by slice or increasing int arrays only."""

    def __init__(self, array):
        self._array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.reads = 0

    def __getitem__(self, key):
        if isinstance(key, np.ndarray):
            assert np.all(np.diff(key) > 0), "h5py needs increasing indices"
        self.reads += 1
        return self._array[key]


@pytest.fixture
def stream_everything(monkeypatch):
    monkeypatch.setattr(validation, "STREAM_BYTES", 0)


@pytest.fixture
def memmapped(tmp_path):
    X, _ = make_blobs(300, n_features=6, centers=3, random_state=0)
    path = tmp_path / "X.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    return np.memmap(path, dtype=np.float32, mode="r", shape=X.shape), X.astype(np.float32)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_memmap_is_streamed_and_matches_in_memory(name, memmapped, stream_everything):
    mm, X = memmapped
    assert validation.is_streamed(mm) and not validation.is_streamed(X)
    streamed = ESTIMATORS[name]().fit(mm)
    in_memory = ESTIMATORS[name]().fit(X)
    for method in METHODS:
        if hasattr(in_memory, method):
            np.testing.assert_allclose(
                getattr(streamed, method)(mm), getattr(in_memory, method)(X), atol=1e-4
            )


def test_row_store_trains_with_early_stopping_and_reads_in_order():
    X, _ = make_blobs(200, n_features=5, centers=3, random_state=0)
    store = RowStore(X)
    assert validation.is_streamed(store)
    ae = small_ae(early_stopping=True, max_iter=3).fit(store)
    ref = small_ae(early_stopping=True, max_iter=3).fit(X)
    assert store.reads > 0
    assert len(ae.validation_loss_curve_) == 3
    np.testing.assert_allclose(ae.transform(store), ref.transform(X), atol=1e-4)


def test_streamed_non_finite_values_are_refused():
    X, _ = make_blobs(100, n_features=4, random_state=0)
    X[57, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        small_ae().fit(RowStore(X))
    ae = small_ae().fit(X[:50])
    with pytest.raises(ValueError, match="NaN or infinity"):
        ae.transform(RowStore(X))


def test_streamed_input_is_checked_for_shape_and_dtype():
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        small_ae().fit(RowStore(np.zeros((1, 3))))
    with pytest.raises(ValueError, match="numeric data is needed"):
        small_ae().fit(RowStore(np.array([["a", "b"], ["c", "d"]])))
    ae = small_ae().fit(np.random.RandomState(0).normal(size=(20, 3)))
    with pytest.raises(ValueError, match="X has 4 features"):
        ae.transform(RowStore(np.zeros((5, 4))))


def test_non_finite_values_in_a_later_chunk_are_found(monkeypatch):
    import sk_deepunsup._nn.data as data

    monkeypatch.setattr(data, "CHUNK_ELEMENTS", 40)  # 10 rows of 4 features a chunk
    X, _ = make_blobs(100, n_features=4, random_state=0)
    X[57, 2] = np.nan  # in the sixth chunk, after finite ones
    assert np.isnan(StreamedRowSource(X, "cpu").value_range()[0])
    with pytest.raises(ValueError, match="NaN or infinity"):
        small_ae().fit(RowStore(X))
    with pytest.raises(ValueError, match="NaN or infinity"):
        AutoencoderOutlierDetector(small_ae()).fit(RowStore(X))

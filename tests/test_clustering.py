"""DeepEmbeddingClusterer: faithful DEC/IDEC that fits in scikit-learn."""

import copy
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from joblib import Memory
from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans
from sklearn.datasets import load_digits, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils._param_validation import InvalidParameterError

from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def small_ae(**params):
    defaults = dict(n_components=2, hidden_layer_sizes=(16,), max_iter=40)
    defaults.update(params)
    return DeepAutoencoder(**defaults)


def small(**params):
    defaults = dict(n_clusters=3, autoencoder=small_ae(), n_init=3, max_iter=30, random_state=0)
    defaults.update(params)
    return DeepEmbeddingClusterer(**defaults)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=150, centers=3, n_features=6, cluster_std=1.0, random_state=0)
    return X, y


def test_beats_kmeans_on_digits():
    digits = load_digits()
    X = MinMaxScaler().fit_transform(digits.data)
    ae = DeepAutoencoder(n_components=10, hidden_layer_sizes=(256,), max_iter=80)
    dec = DeepEmbeddingClusterer(10, autoencoder=ae, n_init=5, random_state=0).fit(X)
    kmeans = KMeans(10, n_init=5, random_state=0).fit(X)
    nmi_dec = normalized_mutual_info_score(digits.target, dec.labels_)
    nmi_kmeans = normalized_mutual_info_score(digits.target, kmeans.labels_)
    assert nmi_dec > nmi_kmeans + 0.03


def test_recovers_blobs(blobs):
    X, y = blobs
    dec = small().fit(X)
    assert adjusted_rand_score(y, dec.labels_) > 0.9


def test_labels_predict_and_proba_agree(blobs):
    X, _ = blobs
    dec = small().fit(X)
    proba = dec.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(dec.labels_, dec.predict(X))
    np.testing.assert_array_equal(dec.labels_, proba.argmax(axis=1))
    assert dec.labels_.dtype.kind == "i"


def test_fitted_attributes(blobs):
    X, _ = blobs
    dec = small(n_clusters=4).fit(X)
    assert dec.cluster_centers_.shape == (4, 2)
    assert dec.transform(X).shape == (150, 2)
    assert isinstance(dec.autoencoder_, DeepAutoencoder)
    assert dec.n_iter_ == len(dec.loss_curve_) >= 1
    assert isinstance(dec.converged_, bool)
    assert all(0.0 <= c <= 1.0 for c in dec.label_changes_)
    assert dec.get_feature_names_out().tolist() == [
        "deepembeddingclusterer0",
        "deepembeddingclusterer1",
    ]


def test_stops_when_labels_settle(blobs):
    X, _ = blobs
    dec = small(tol=0.5, update_interval=1, max_iter=50).fit(X)
    assert dec.converged_ and dec.n_iter_ < 50
    assert dec.label_changes_[-1] < 0.5


def test_convergence_warning_only_when_max_iter_is_reached(blobs):
    import warnings

    X, _ = blobs
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        small(tol=0.0, max_iter=2).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        settled = small(tol=0.5, update_interval=1, max_iter=50,
                        autoencoder=small_ae(tol=1e9)).fit(X)
    assert settled.converged_


def test_idec_keeps_decoder_and_dec_does_not(blobs):
    X, _ = blobs
    ae = small_ae(random_state=0).fit(X)
    decoder_before = copy.deepcopy(ae.module_.decoder.state_dict())
    dec = small(autoencoder=ae, reconstruction_weight=0.0).fit(X)
    idec = small(autoencoder=ae, reconstruction_weight=1.0).fit(X)
    for k, v in dec.autoencoder_.module_.decoder.state_dict().items():
        assert torch.equal(v, decoder_before[k])  # DEC never trains the decoder
    changed = [
        not torch.equal(v, decoder_before[k])
        for k, v in idec.autoencoder_.module_.decoder.state_dict().items()
    ]
    assert any(changed)


def test_fitted_autoencoder_is_copied_never_changed(blobs):
    X, _ = blobs
    ae = small_ae(random_state=0).fit(X)
    before = copy.deepcopy(ae.module_.state_dict())
    dec = small(autoencoder=ae).fit(X)
    assert dec.autoencoder_ is not ae
    for k, v in ae.module_.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="fitted autoencoder expects 6"):
        small(autoencoder=ae).fit(X[:, :4])


def test_unfitted_autoencoder_is_not_fitted_in_place(blobs):
    X, _ = blobs
    ae = small_ae()
    small(autoencoder=ae).fit(X)
    assert not hasattr(ae, "module_") and ae.random_state is None


def test_default_autoencoder_is_pretrained_when_none(blobs, monkeypatch):
    import sk_deepunsup._pretraining as pretraining

    X, _ = blobs
    monkeypatch.setattr(
        pretraining, "clustering_autoencoder", lambda n_samples: small_ae(n_components=3)
    )
    dec = DeepEmbeddingClusterer(
        3, embedding="autoencoder", n_init=2, max_iter=5, random_state=0
    ).fit(X)
    # None -> the default network, seeded from this estimator's random_state
    assert dec.autoencoder_.n_components == 3 and dec.autoencoder_.random_state is not None


def test_memory_pretrains_once(blobs, tmp_path, monkeypatch):
    X, _ = blobs
    calls = {"n": 0}
    original = DeepAutoencoder.fit

    def counting_fit(self, X, y=None):
        calls["n"] += 1
        return original(self, X, y)

    monkeypatch.setattr(DeepAutoencoder, "fit", counting_fit)
    # the same folder as a str both times (joblib keys Memory(Path) apart)
    memory = Memory(str(tmp_path), verbose=0)
    first = small(n_clusters=2, memory=memory).fit(X)
    second = small(n_clusters=3, memory=str(tmp_path)).fit(X)
    assert calls["n"] == 1
    assert first.autoencoder_.loss_curve_ == second.autoencoder_.loss_curve_
    small(n_clusters=3, memory=memory, autoencoder=small_ae(max_iter=41)).fit(X)
    assert calls["n"] == 2  # other autoencoder parameters: pretrained again


def test_grid_search_picks_true_number_of_clusters_without_labels():
    X, _ = make_blobs(n_samples=240, centers=4, n_features=5, cluster_std=0.8, random_state=3)
    search = GridSearchCV(small(), {"n_clusters": [2, 3, 4, 5, 6]}, cv=3).fit(X)
    assert search.best_params_ == {"n_clusters": 4}


def test_score_is_silhouette_and_minus_one_for_single_cluster(blobs):
    from sklearn.metrics import silhouette_score

    X, _ = blobs
    dec = small().fit(X)
    assert dec.score(X) == pytest.approx(silhouette_score(X, dec.predict(X)))
    assert small(n_clusters=1).fit(X).score(X) == -1.0


def test_clusterer_as_init(blobs):
    X, y = blobs
    dec = small(init=AgglomerativeClustering(n_clusters=7)).fit(X)
    assert adjusted_rand_score(y, dec.labels_) > 0.9  # n_clusters=3 overrides the 7
    with pytest.raises(ValueError, match="init=DBSCAN found .* clusters .* n_clusters=3"):
        small(init=DBSCAN(eps=1e-6, min_samples=2)).fit(X)


def test_empty_clusters_warn_with_count():
    X = np.repeat([[0.0, 0.0], [5.0, 5.0]], 20, axis=0)  # two distinct points
    with pytest.warns(ConvergenceWarning, match="1 of n_clusters=3 clusters are empty"):
        small(n_clusters=3).fit(X)


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(n_clusters=200), ValueError, "n_clusters=200 must be <= n_samples=150"),
        (dict(n_clusters=0), InvalidParameterError, "'n_clusters' parameter"),
        (dict(alpha=0), InvalidParameterError, "'alpha' parameter"),
        (dict(init="random"), InvalidParameterError, "'init' parameter"),
        (dict(autoencoder="ae"), InvalidParameterError, "'autoencoder' parameter"),
        (dict(update_interval=0), InvalidParameterError, "'update_interval' parameter"),
    ],
)
def test_errors(blobs, params, error, match):
    X, _ = blobs
    with pytest.raises(error, match=match):
        small(**params).fit(X)


def test_bad_input(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="Input X contains NaN"):
        small().fit(np.where(X > 3, np.nan, X))
    dec = small().fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but DeepEmbeddingClusterer"):
        dec.predict(X[:, :2])


def test_determinism_and_global_state(blobs):
    X, _ = blobs
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    a = small(random_state=5).fit(X)
    b = small(random_state=5).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert torch.equal(torch_state, torch.random.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])


def test_pandas_and_pickle(blobs):
    X, _ = blobs
    df = pd.DataFrame(X, columns=list("abcdef"), index=np.arange(1000, 1150))
    dec = small().set_output(transform="pandas").fit(df)
    out = dec.transform(df)
    assert isinstance(out, pd.DataFrame) and out.index.equals(df.index)
    again = pickle.loads(pickle.dumps(dec))
    np.testing.assert_array_equal(again.predict(df), dec.labels_)
    with pytest.raises(ValueError, match="feature names should match"):
        dec.predict(df.rename(columns={"a": "z"}))


# -- scaling, phases and interruptions ----------------------------------------------


def test_pretraining_budget_is_set_in_sample_visits():
    from sk_deepunsup._pretraining import clustering_autoencoder, pretraining_epochs

    assert pretraining_epochs(1797) == 150  # small data: the full budget
    assert pretraining_epochs(13_334) == 150
    assert pretraining_epochs(20_000) == 100
    assert pretraining_epochs(200_000) == 10  # as many sample visits as 20 000 x 100
    assert pretraining_epochs(10_000_000) == 10  # never fewer than 10 epochs
    assert clustering_autoencoder(200_000).max_iter == 10


def test_refinement_budget_is_set_in_sample_visits():
    from sk_deepunsup._clustering import refinement_epochs

    assert refinement_epochs(1797) == 100  # small data: the full 100 epochs
    assert refinement_epochs(5_000) == 100
    assert refinement_epochs(18_821) == 27  # 20 Newsgroups
    assert refinement_epochs(50_000) == 10
    assert refinement_epochs(10_000_000) == 10  # never fewer than 10 epochs


def test_auto_max_iter_caps_epochs_on_large_data(blobs, monkeypatch):
    import warnings

    import sk_deepunsup._clustering as clustering

    X, _ = blobs  # 150 samples
    monkeypatch.setattr(clustering, "REFINEMENT_SAMPLES", 150 * 4)  # 4 epochs here
    monkeypatch.setattr(clustering, "REFINEMENT_EPOCHS", (2, 100))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a budget: no warning
        dec = small(tol=0.0, max_iter="auto", autoencoder=small_ae(tol=1e9)).fit(X)
    assert dec.n_iter_ == 4 and not dec.converged_
    # an int is honoured as given, beyond the budget
    assert small(tol=0.0, max_iter=6).fit(X).n_iter_ == 6


def test_auto_max_iter_still_stops_on_tol(blobs):
    X, _ = blobs
    dec = small(tol=0.5, update_interval=1, max_iter="auto").fit(X)
    assert dec.converged_ and dec.n_iter_ < 100


@pytest.mark.parametrize("max_iter", [0, -3, "fast", 2.5])
def test_bad_max_iter_is_refused(blobs, max_iter):
    X, _ = blobs
    with pytest.raises(ValueError, match="'max_iter' parameter of DeepEmbeddingClusterer must be"):
        small(max_iter=max_iter).fit(X)


def test_target_updates_are_counted_in_epochs(blobs):
    X, _ = blobs  # 150 samples, batch 50: 3 batches an epoch
    dec = small(tol=0.0, max_iter=6, batch_size=50, update_interval=2.0).fit(X)
    assert dec.n_iter_ == 6
    assert len(dec.label_changes_) == 3  # after epochs 2, 4 and 6
    dec = small(tol=0.0, max_iter=6, batch_size=50, update_interval=0.5).fit(X)
    assert len(dec.label_changes_) == 9  # every other batch (round(1.5) = 2)


def test_label_change_epochs_are_stored_and_plotted_there(blobs):
    X, _ = blobs  # 150 samples, batch 50: 3 batches an epoch
    dec = small(tol=0.0, max_iter=6, batch_size=50, update_interval=2.0).fit(X)
    np.testing.assert_allclose(dec.label_change_epochs_, [2.0, 4.0, 6.0])
    dec2 = small(tol=0.0, max_iter=3, batch_size=50, update_interval=0.5).fit(X)
    np.testing.assert_allclose(dec2.label_change_epochs_, np.arange(1, 5) * 2 / 3)
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from sk_deepunsup.inspection import LossCurveDisplay

    disp = LossCurveDisplay.from_estimator(dec)
    np.testing.assert_allclose(disp.label_changes_line_.get_xdata(), [2.0, 4.0, 6.0])
    np.testing.assert_allclose(disp.label_changes_line_.get_ydata(), dec.label_changes_)


def test_verbose_fit_names_each_phase(blobs, capsys):
    X, _ = blobs
    small(verbose=True, max_iter=2).fit(X)
    err = capsys.readouterr().err
    for phase in ("pretraining the autoencoder", "initialising 3 clusters", "refining clusters"):
        assert phase in err


def _interrupt_after(monkeypatch, target, name, calls):
    original = getattr(target, name)
    count = {"n": 0}

    def interrupting(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, interrupting)


def test_ctrl_c_in_pretraining_ends_fit_with_usable_model(blobs, monkeypatch, tmp_path):
    from sk_deepunsup._nn import Trainer, TrainingInterrupted

    X, _ = blobs
    _interrupt_after(monkeypatch, Trainer, "batch_step", 6)  # one batch an epoch: 7th epoch
    memory = Memory(str(tmp_path), verbose=0)
    with pytest.warns(TrainingInterrupted):
        dec = small(memory=memory).fit(X)
    assert dec.interrupted_ and dec.n_iter_ == 0  # no refinement ran
    assert dec.autoencoder_.n_iter_ == 6
    np.testing.assert_array_equal(dec.predict(X), dec.labels_)
    assert len(np.unique(dec.labels_)) >= 2
    # an interrupted pretraining is not cached: the next fit pretrains in full
    monkeypatch.undo()
    assert small(memory=memory).fit(X).autoencoder_.n_iter_ > 6


def test_ctrl_c_in_initialisation_ends_fit_with_usable_model(blobs, monkeypatch):
    from sk_deepunsup._nn import TrainingInterrupted

    X, _ = blobs
    _interrupt_after(monkeypatch, KMeans, "fit", 0)
    with pytest.warns(TrainingInterrupted, match="Initialisation interrupted"):
        dec = small().fit(X)
    assert dec.interrupted_ and dec.n_iter_ == 0
    assert dec.cluster_centers_.shape == (3, 2)
    np.testing.assert_array_equal(dec.predict(X), dec.labels_)


def test_ctrl_c_in_refinement_keeps_a_usable_model(blobs, monkeypatch):
    from sk_deepunsup._nn import TrainingInterrupted
    from sk_deepunsup._nn.dec import TargetUpdater

    X, _ = blobs
    ae = small_ae(random_state=0).fit(X)
    _interrupt_after(monkeypatch, TargetUpdater, "on_batch_end", 7)
    with pytest.warns(TrainingInterrupted):
        dec = small(autoencoder=ae, batch_size=50, tol=0.0).fit(X)
    assert dec.interrupted_ and dec.n_iter_ == 2
    np.testing.assert_array_equal(dec.predict(X), dec.labels_)


def test_memory_without_random_state_warns(blobs, tmp_path):
    X, _ = blobs
    with pytest.warns(UserWarning, match="set random_state to an int"):
        small(memory=str(tmp_path), random_state=None, max_iter=1).fit(X)

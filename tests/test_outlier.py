"""AutoencoderOutlierDetector: IsolationForest's conventions over an autoencoder."""

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sk_deepunsup import AutoencoderOutlierDetector, DeepAutoencoder, VariationalAutoencoder

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def fast_ae(**params):
    defaults = dict(n_components=2, hidden_layer_sizes=(16,), max_iter=40)
    defaults.update(params)
    return DeepAutoencoder(**defaults)


@pytest.fixture(scope="module")
def plane_data():
    """Inliers near a 2-d plane in 8-d space, then 10 outliers off it."""
    rng = np.random.RandomState(0)
    plane = rng.normal(size=(2, 8))
    inliers = rng.normal(size=(200, 2)) @ plane + 0.05 * rng.normal(size=(200, 8))
    outliers = rng.normal(scale=3.0, size=(10, 8))
    X = np.vstack([inliers, outliers])
    y = np.r_[np.zeros(200), np.ones(10)]
    return X, y


@pytest.fixture(scope="module")
def foreign_digits():
    """The 1s of digits and 9 other digits, standardised."""
    digits = load_digits()
    ones = digits.data[digits.target == 1]
    others = digits.data[digits.target != 1][:9]
    X = StandardScaler().fit_transform(np.vstack([ones, others]))
    y = np.r_[np.zeros(len(ones)), np.ones(9)]
    return X, y


def test_finds_off_manifold_outliers(plane_data):
    X, y = plane_data
    det = AutoencoderOutlierDetector(fast_ae(max_iter=150), random_state=0).fit(X)
    assert roc_auc_score(y, -det.score_samples(X)) > 0.95


def test_default_model_finds_foreign_digits():
    digits = load_digits()
    ones = digits.data[digits.target == 1]
    others = digits.data[digits.target != 1][:9]
    X = np.vstack([ones, others])
    y = np.r_[np.zeros(len(ones)), np.ones(9)]
    det = make_pipeline(StandardScaler(), AutoencoderOutlierDetector(random_state=0)).fit(X)
    assert roc_auc_score(y, -det.score_samples(X)) > 0.9


def test_both_parts_add_to_the_ranking(foreign_digits):
    # the distance part alone (a model that reconstructs nothing useful has
    # the same reconstruction part scale everywhere) and the reconstruction
    # part alone each rank the foreign digits; together they rank them at
    # least as well as the weaker of the two
    X, y = foreign_digits
    both = AutoencoderOutlierDetector(random_state=0).fit(X)
    recon_only = AutoencoderOutlierDetector(n_neighbors=0, random_state=0).fit(X)
    auc_both = roc_auc_score(y, -both.score_samples(X))
    auc_recon = roc_auc_score(y, -recon_only.score_samples(X))
    recon, distance = both._parts(X)
    auc_distance = roc_auc_score(y, distance)
    assert auc_recon > 0.8 and auc_distance > 0.8
    assert auc_both >= min(auc_recon, auc_distance)
    # n_neighbors=0: the score is the reconstruction part alone
    np.testing.assert_allclose(
        -recon_only.score_samples(X), recon_only._parts(X)[0] / recon_only.part_scale_[0]
    )


@pytest.mark.parametrize("contamination", [0.05, 0.1, 0.25])
def test_float_contamination_flags_that_share(plane_data, contamination):
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), contamination=contamination, random_state=0)
    flagged = np.mean(det.fit_predict(X) == -1)
    assert abs(flagged - contamination) <= 0.02


def test_auto_contamination_uses_tukey_fence(plane_data):
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(X)
    scores = det.score_samples(X)
    q1, q3 = np.percentile(scores, [25, 75])
    assert det.offset_ == pytest.approx(q1 - 1.5 * (q3 - q1))
    assert 0 < np.mean(det.predict(X) == -1) < 0.2


def test_large_data_calibrates_on_a_subsample(plane_data, monkeypatch):
    # above CALIBRATION_SAMPLES rows, the part scales and the "auto" fence
    # come from a subsample; a float contamination still flags that share
    # of all training samples
    from sk_deepunsup import _outlier

    X, y = plane_data
    monkeypatch.setattr(_outlier, "CALIBRATION_SAMPLES", 100)
    det = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(X)
    scores = det.score_samples(X)
    q1, q3 = np.percentile(scores, [25, 75])
    assert det.offset_ != pytest.approx(q1 - 1.5 * (q3 - q1))  # not all the rows
    assert abs(det.offset_ - (q1 - 1.5 * (q3 - q1))) < 0.5 * (q3 - q1)
    assert roc_auc_score(y, -scores) > 0.95
    assert (det.predict(X)[y == 1] == -1).mean() > 0.8
    shared = AutoencoderOutlierDetector(fast_ae(), contamination=0.1, random_state=0)
    assert np.mean(shared.fit_predict(X) == -1) == pytest.approx(0.1, abs=1 / len(X))


@pytest.mark.parametrize("support_fraction", [0.9, 1.0])
def test_default_scoring_model_trains_forty_epochs(plane_data, support_fraction):
    # the default first model ranks after RANKING_EPOCHS, then goes on training
    # on the support; the model that scores trained 40 epochs in all either way
    X, _ = plane_data
    det = AutoencoderOutlierDetector(support_fraction=support_fraction, random_state=0).fit(X)
    assert det.autoencoder_.max_iter == 40
    assert det.autoencoder_.n_iter_ == 40
    assert not det.autoencoder_.warm_start


def test_default_goes_on_training_the_ranking_model_on_the_support(plane_data):
    import sk_deepunsup._outlier as outlier

    X, _ = plane_data
    seen = []
    fit = outlier.fit_pretraining

    def spy(model, rows, quiet=False):
        seen.append((id(model), model.warm_start, len(rows)))
        return fit(model, rows, quiet)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outlier, "fit_pretraining", spy)
        AutoencoderOutlierDetector(random_state=0).fit(X)
    (first, warm0, _), (second, warm1, rows) = seen
    assert first == second and not warm0 and warm1  # one model, continued
    assert rows <= outlier.AUTO_MAX_SAMPLES


def test_sign_conventions(plane_data):
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), contamination=0.1, random_state=0).fit(X)
    scores = det.score_samples(X)
    decision = det.decision_function(X)
    np.testing.assert_allclose(decision, scores - det.offset_)
    pred = det.predict(X)
    assert set(np.unique(pred)) == {-1, 1} and pred.dtype.kind == "i"
    np.testing.assert_array_equal(pred == -1, decision < 0)


def test_support_fraction_retrains_on_most_normal_samples(plane_data):
    X, y = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), support_fraction=0.8, random_state=0).fit(X)
    assert det.support_.sum() == int(np.ceil(0.8 * len(X)))
    assert not det.support_[y == 1].any()  # the planted outliers are left out
    once = AutoencoderOutlierDetector(fast_ae(), support_fraction=1.0, random_state=0).fit(X)
    assert once.support_.all()


def test_support_fraction_too_small():
    det = AutoencoderOutlierDetector(fast_ae(), support_fraction=0.1, random_state=0)
    with pytest.raises(ValueError, match="keeps 1 of 5 samples"):
        det.fit(np.random.RandomState(0).normal(size=(5, 3)))


def is_row_of(rows, X):
    return np.array([np.any(np.all(X == r, axis=1)) for r in rows])


def test_max_samples_bounds_the_subsamples(plane_data):
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), max_samples=50, random_state=0).fit(X)
    assert det.reference_.shape == (50, 8)
    assert is_row_of(det.reference_, X[det.support_]).all()  # drawn from the support
    det = AutoencoderOutlierDetector(fast_ae(), max_samples=0.5, random_state=0).fit(X)
    assert det.reference_.shape[0] == int(np.ceil(0.5 * len(X)))


def test_a_reference_sample_is_not_its_own_neighbour(plane_data):
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(X)
    without = copy.deepcopy(det)
    without.reference_ = det.reference_[1:]
    sample = det.reference_[:1]
    # scored as if it were not a reference sample: its distance part is not 0
    distance = det._parts(sample)[1]
    assert distance[0] > 0
    np.testing.assert_allclose(distance, without._parts(sample)[1])


def test_distance_part_is_the_mean_l1_distance_to_the_nearest_references(plane_data):
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), n_neighbors=3, random_state=0).fit(X)
    queries = X[:5] + 0.01  # identical to no reference sample
    l1 = np.abs(queries[:, None, :] - det.reference_[None]).sum(axis=2)
    expected = np.sort(l1, axis=1)[:, :3].mean(axis=1)
    np.testing.assert_allclose(det._parts(queries)[1], expected, rtol=1e-6)


def test_feature_contributions_explain_the_score(plane_data):
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(max_iter=100), random_state=0).fit(X)
    contributions = det.feature_contributions(X)
    assert contributions.shape == X.shape and contributions.dtype == np.float64
    assert (contributions >= 0).all()
    np.testing.assert_allclose(contributions.sum(axis=1), -det.score_samples(X), rtol=1e-6)
    # an inlier pushed far off in feature 3 only: feature 3 is blamed
    bent = X[:20].copy()
    bent[:, 3] += 6.0
    blamed = det.feature_contributions(bent).argmax(axis=1)
    assert np.mean(blamed == 3) >= 0.9


def test_feature_contributions_pandas_output(plane_data):
    X, _ = plane_data
    columns = [f"sensor_{i}" for i in range(8)]
    df = pd.DataFrame(X, columns=columns, index=np.arange(100, 100 + len(X)))
    det = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(df)
    plain = det.feature_contributions(df)
    assert isinstance(plain, np.ndarray)
    out = det.set_output(transform="pandas").feature_contributions(df)
    assert list(out.columns) == columns and list(out.index) == list(df.index)
    np.testing.assert_allclose(out.to_numpy(), plain)
    with pytest.raises(ValueError, match="choose 'default' or 'pandas'"):
        det.set_output(transform="polars")


def test_fitted_autoencoder_is_used_as_is_and_never_changed(plane_data):
    X, y = plane_data
    ae = fast_ae(random_state=0).fit(X)
    before = copy.deepcopy(ae.module_.state_dict())
    det = AutoencoderOutlierDetector(ae, contamination=0.1).fit(X)
    for k, v in ae.module_.state_dict().items():
        assert np.array_equal(v.numpy(), before[k].numpy())
    np.testing.assert_allclose(det.autoencoder_.transform(X), ae.transform(X))
    assert roc_auc_score(y, -det.score_samples(X)) > 0.9
    with pytest.raises(ValueError, match="fitted autoencoder expects 8"):
        AutoencoderOutlierDetector(ae).fit(X[:, :5])


def test_vae_backed_detector(plane_data):
    X, y = plane_data
    vae = VariationalAutoencoder(2, hidden_layer_sizes=(16,), max_iter=60)
    det = AutoencoderOutlierDetector(vae, random_state=0).fit(X)
    assert roc_auc_score(y, -det.score_samples(X)) > 0.9


def test_invalid_parameters(plane_data):
    X, _ = plane_data
    with pytest.raises(InvalidParameterError, match="'contamination' parameter"):
        AutoencoderOutlierDetector(contamination=0.6).fit(X)
    with pytest.raises(InvalidParameterError, match="'autoencoder' parameter"):
        AutoencoderOutlierDetector(autoencoder="pca").fit(X)
    with pytest.raises(InvalidParameterError, match="'max_samples' parameter"):
        AutoencoderOutlierDetector(max_samples=0).fit(X)
    with pytest.raises(InvalidParameterError, match="'n_neighbors' parameter"):
        AutoencoderOutlierDetector(n_neighbors=-1).fit(X)


def test_bad_input_at_predict(plane_data):
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features"):
        det.predict(X[:, :3])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        det.predict(np.full((2, 8), np.nan))
    with pytest.raises(ValueError, match="X has 3 features"):
        det.feature_contributions(X[:, :3])


def test_deterministic_pandas_and_pickle(plane_data):
    X, _ = plane_data
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    a = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(df)
    b = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(df)
    np.testing.assert_array_equal(a.score_samples(df), b.score_samples(df))
    assert list(a.feature_names_in_) == list(df.columns)
    again = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(again.decision_function(df), a.decision_function(df))
    np.testing.assert_array_equal(again.feature_contributions(df), a.feature_contributions(df))


def test_embedding_display_of_a_detector_on_a_dataframe_is_quiet():
    pd = pytest.importorskip("pandas")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from sklearn.datasets import load_wine

    from sk_deepunsup.inspection import EmbeddingDisplay

    wine = load_wine(as_frame=True)
    X = (wine.data - wine.data.mean()) / wine.data.std()
    detector = AutoencoderOutlierDetector(random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "fitted without feature names"
        disp = EmbeddingDisplay.from_estimator(detector, X)
    assert disp.embedding.shape == (len(X), 2)

"""AutoencoderOutlierDetector: IsolationForest's conventions over an autoencoder."""

import copy
import pickle

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
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), support_fraction=0.8, random_state=0).fit(X)
    assert det.support_.sum() == int(np.ceil(0.8 * len(X)))
    once = AutoencoderOutlierDetector(fast_ae(), support_fraction=1.0, random_state=0).fit(X)
    assert once.support_.all()


def test_support_fraction_too_small():
    det = AutoencoderOutlierDetector(fast_ae(), support_fraction=0.1, random_state=0)
    with pytest.raises(ValueError, match="keeps 1 of 5 samples"):
        det.fit(np.random.RandomState(0).normal(size=(5, 3)))


def test_fitted_autoencoder_is_used_as_is_and_never_changed(plane_data):
    X, _ = plane_data
    ae = fast_ae(random_state=0).fit(X)
    before = copy.deepcopy(ae.module_.state_dict())
    det = AutoencoderOutlierDetector(ae, contamination=0.1).fit(X)
    for k, v in ae.module_.state_dict().items():
        assert np.array_equal(v.numpy(), before[k].numpy())
    np.testing.assert_allclose(det.score_samples(X), ae.score_samples(X))
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


def test_bad_input_at_predict(plane_data):
    X, _ = plane_data
    det = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features"):
        det.predict(X[:, :3])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        det.predict(np.full((2, 8), np.nan))


def test_deterministic_pandas_and_pickle(plane_data):
    X, _ = plane_data
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    a = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(df)
    b = AutoencoderOutlierDetector(fast_ae(), random_state=0).fit(df)
    np.testing.assert_array_equal(a.score_samples(df), b.score_samples(df))
    assert list(a.feature_names_in_) == list(df.columns)
    again = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(again.decision_function(df), a.decision_function(df))

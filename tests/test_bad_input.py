"""Inputs that used to fail deep inside torch or give silent wrong answers."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from sk_deepunsup import (
    AutoencoderOutlierDetector,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    NeighborEmbedding,
)
from sk_deepunsup._validation import DataScaleWarning

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def wine():
    return load_wine(return_X_y=True)


def test_huge_values_are_refused_with_the_fix(wine):
    X = StandardScaler().fit_transform(wine[0])
    big = X.astype(np.float32).copy()
    big[0, 0] = 1e20
    with pytest.raises(ValueError, match=r"values as large as 1e\+20.*Scale X first"):
        DeepAutoencoder(max_iter=1).fit(big)
    fitted = DeepEmbeddingClusterer(n_clusters=3, embedding="autoencoder", max_iter=1,
                                    random_state=0).fit(X)
    with pytest.raises(ValueError, match="values as large as"):
        fitted.predict_proba(big)


def test_unscaled_features_warn_and_name_the_fix(wine):
    with pytest.warns(DataScaleWarning, match=r"very different ranges.*StandardScaler"):
        DeepAutoencoder(max_iter=1).fit(wine[0])
    with pytest.warns(DataScaleWarning):
        AutoencoderOutlierDetector(random_state=0).fit(wine[0])


def test_scaled_features_do_not_warn(wine, recwarn):
    DeepAutoencoder(max_iter=1).fit(StandardScaler().fit_transform(wine[0]))
    assert not [w for w in recwarn if issubclass(w.category, DataScaleWarning)]


def test_string_column_is_named():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"]})
    with pytest.raises(ValueError, match=r"non-numeric column\(s\): 'colour'.*OneHotEncoder"):
        DeepAutoencoder(max_iter=1).fit(frame)


def test_collapsed_refinement_falls_back_to_kmeans(wine, monkeypatch):
    X = StandardScaler().fit_transform(wine[0])
    est = DeepEmbeddingClusterer(n_clusters=3, embedding="autoencoder", max_iter=2, random_state=0)
    original = DeepEmbeddingClusterer._refine

    def collapsing(self, module, *args):
        out = original(self, module, *args)
        with np.errstate(all="ignore"):
            module.centers.data[:] = module.centers.data[0]  # every centre on one point
        return out

    monkeypatch.setattr(DeepEmbeddingClusterer, "_refine", collapsing)
    with pytest.warns(ConvergenceWarning, match="keeps the k-means clustering"):
        est.fit(X)
    assert len(np.unique(est.labels_)) == 3
    np.testing.assert_array_equal(est.labels_, est.predict(X))


def test_correlation_on_constant_rows_names_them():
    X = np.random.RandomState(0).rand(30, 4)
    X[5] = 1.0
    with pytest.raises(ValueError, match=r"metric='correlation' is undefined for 1 row.*row 5"):
        NeighborEmbedding(metric="correlation", max_iter=1).fit(X)


def test_batch_norm_needs_two_rows_a_batch():
    X = np.random.RandomState(0).rand(20, 4)
    with pytest.raises(ValueError, match="batch_norm=True needs batches of at least 2"):
        DeepAutoencoder(batch_norm=True, batch_size=1, max_iter=1).fit(X)
    # a last batch of one row trains (normalised with the running statistics)
    ae = DeepAutoencoder(batch_norm=True, batch_size=19, max_iter=2, random_state=0).fit(X)
    assert np.isfinite(ae.transform(X)).all()


def test_detector_needs_two_samples_per_subsample():
    X = np.random.RandomState(0).rand(20, 4)
    with pytest.raises(ValueError, match="max_samples"):
        AutoencoderOutlierDetector(max_samples=1).fit(X)


def test_recommender_score_checks_y():
    from sk_deepunsup import AutoencoderRecommender

    X = (np.random.RandomState(0).rand(60, 30) < 0.2).astype(np.float32)
    rec = AutoencoderRecommender(model="ease", random_state=0).fit(X)
    assert 0.0 <= rec.score(X, X.tolist()) <= 1.0  # a nested list is a matrix too
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        rec.score(X, np.where(X > 0, np.nan, 0.0))
    with pytest.raises(ValueError, match=r"np\.clip\(X, 0, None\)"):
        AutoencoderRecommender(model="ease").fit(X - 2)


@pytest.mark.parametrize("X", [np.array([["a", "b"], ["c", "d"]]),
                               np.array([[1.0, "x"], [2.0, "y"]], dtype=object),
                               [[1.0, 2.0], ["3", "four"]]])
def test_text_values_get_an_error_naming_the_fix(X):
    from sk_deepunsup import DeepAutoencoder

    with pytest.raises(ValueError, match=r"X holds text \(could not convert string to float: "
                                         r".*\); the estimators read numbers\. Encode .*"
                                         r"OneHotEncoder or OrdinalEncoder"):
        DeepAutoencoder(max_iter=1).fit(X)


def test_an_error_quoted_in_a_message_does_not_end_it_in_two_periods():
    import torch

    from sk_deepunsup import DeepAutoencoder

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied.")

    est = DeepAutoencoder(encoder=Broken(), decoder=Broken(), n_components=2, max_iter=1)
    with pytest.raises(ValueError, match=r"dummy batch: mat1 and mat2 shapes cannot be "
                                         r"multiplied\. The encoder gets") as err:
        est.fit(np.zeros((4, 3), dtype=np.float32))
    assert ".." not in str(err.value)

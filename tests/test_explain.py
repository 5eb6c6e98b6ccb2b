"""sk_deepunsup.inspection's explanations: clusters, outliers and attributions, in the user's features."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.stats import mannwhitneyu  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402

from sk_deepunsup import (  # noqa: E402
    AutoencoderOutlierDetector,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    NeighborEmbedding,
)
from sk_deepunsup.inspection import (  # noqa: E402
    ClusterExplanationDisplay,
    attribution_summary,
    explain_clusters,
    explain_outliers,
    feature_attributions,
)
from sk_deepunsup.inspection._rank_tests import benjamini_hochberg, one_vs_rest_tests  # noqa: E402


@pytest.fixture(scope="module")
def informative():
    """Three clusters whose centres differ on 5 of 20 standardised, shuffled features."""
    rng = np.random.RandomState(0)
    centres = np.array([[2, -2, 2, -2, 2], [-2, 2, 2, 2, -2], [2, 2, -2, -2, -2]], float)
    y = np.repeat(np.arange(3), 200)
    X = np.hstack([centres[y] + rng.normal(size=(600, 5)), rng.normal(size=(600, 15))])
    order = rng.permutation(20)
    columns = [f"f{j}" for j in range(20)]
    frame = pd.DataFrame(StandardScaler().fit_transform(X[:, order]), columns=columns)
    return frame, y, order < 5


@pytest.fixture(scope="module")
def documents():
    rng = np.random.RandomState(0)
    topics = [["ball", "goal", "team", "match", "score"], ["stock", "bank", "market", "price", "trade"]]
    common = ["today", "people", "said", "new"]
    texts, y = [], []
    for i in range(80):
        words = list(rng.choice(topics[i % 2], 6)) + list(rng.choice(common, 3))
        texts.append(" ".join(words))
        y.append(i % 2)
    return np.array(texts, dtype=object), np.array(y)


# -- rank tests -------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True])
def test_one_vs_rest_tests_match_scipy(sparse):
    rng = np.random.RandomState(0)
    X = rng.randint(-2, 4, size=(50, 4)).astype(float)
    X[rng.rand(50, 4) < 0.5] = 0
    groups = rng.randint(0, 3, 50)
    auc, p = one_vs_rest_tests(sp.csr_matrix(X) if sparse else X, groups, 3)
    for g in range(3):
        for j in range(4):
            ref = mannwhitneyu(X[groups == g, j], X[groups != g, j],
                               method="asymptotic", use_continuity=False)
            n_in, n_out = np.sum(groups == g), np.sum(groups != g)
            assert auc[g, j] == pytest.approx(ref.statistic / (n_in * n_out), abs=1e-12)
            assert p[g, j] == pytest.approx(ref.pvalue, rel=1e-9)


def test_benjamini_hochberg_is_monotone_and_bounded():
    p = np.array([[0.01, 0.04], [0.03, 0.5]])
    adjusted = benjamini_hochberg(p)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1)
    np.testing.assert_allclose(adjusted.ravel(), [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    from scipy.stats import false_discovery_control

    np.testing.assert_allclose(adjusted.ravel(), false_discovery_control(p.ravel()))


# -- explain_clusters ---------------------------------------------------------------------


def test_informative_features_come_first(informative):
    X, y, truth = informative
    model = KMeans(3, n_init=10, random_state=0).fit(X)
    explanation = explain_clusters(model, X, n_features=20)
    best = explanation.features.groupby("feature")["score"].max().reindex(X.columns)
    assert roc_auc_score(truth, best) >= 0.95
    table = explanation.features
    assert list(table.columns) == ["cluster", "rank", "feature", "score", "direction",
                                   "mean_in", "mean_out", "presence_in", "presence_out",
                                   "effect_size", "p_value"]
    assert set(table["feature"]) == set(X.columns)  # named after the DataFrame's columns
    assert table.groupby("cluster")["score"].apply(lambda s: s.is_monotonic_decreasing).all()
    strong = table[table["score"] > 0.3]
    assert ((strong["direction"] == "higher") == (strong["mean_in"] > strong["mean_out"])).all()
    assert explanation.effect_sizes.shape == (3, 20)


def test_prototypes_and_borderline_are_members(informative):
    X, _, _ = informative
    model = DeepEmbeddingClusterer(n_clusters=3, autoencoder=DeepAutoencoder(
        hidden_layer_sizes=(16,), max_iter=10), max_iter=5, random_state=0).fit(X)
    explanation = explain_clusters(model, X, n_prototypes=4)
    labels = model.predict(X)
    np.testing.assert_array_equal(explanation.labels, labels)
    proba = model.predict_proba(X).max(axis=1)
    for cluster in explanation.sizes.index:
        typical, weak = explanation.prototypes[cluster], explanation.borderline[cluster]
        assert len(typical) == 4 == len(set(typical))
        assert np.all(labels[typical] == cluster) and np.all(labels[weak] == cluster)
        members = np.flatnonzero(labels == cluster)
        assert proba[weak[0]] == proba[members].min()  # the weakest hold first
    assert explanation.sizes.sum() == len(X)
    text = str(explanation)
    assert text.count("\n") == 2 and "typical rows" in text


def test_prototypes_classify_the_digits_by_nearest_prototype():
    X, y = load_digits(return_X_y=True)
    model = KMeans(10, n_init=10, random_state=0).fit(X)
    explanation = explain_clusters(model, X, n_prototypes=3)
    rows = np.concatenate(list(explanation.prototypes.values()))
    nearest = np.argmin(((X[:, None, :] - X[rows][None]) ** 2).sum(axis=2), axis=1)
    first = np.array([explanation.prototypes[c][0] for c in range(10)])
    nearest_first = np.argmin(((X[:, None, :] - X[first][None]) ** 2).sum(axis=2), axis=1)
    # three prototypes per cluster describe the classes better than one medoid each
    assert np.mean(y[rows][nearest] == y) > np.mean(y[first][nearest_first] == y) > 0.7


def test_text_pipeline_is_explained_in_terms(documents):
    texts, y = documents
    model = make_pipeline(TfidfVectorizer(), KMeans(2, n_init=10, random_state=0)).fit(texts)
    explanation = explain_clusters(model, texts, n_features=5)
    assert explanation.sparse
    topics = {frozenset(["ball", "goal", "team", "match", "score"]),
              frozenset(["stock", "bank", "market", "price", "trade"])}
    found = {frozenset(rows["feature"]) for _, rows in explanation.features.groupby("cluster")}
    assert found == topics
    assert (explanation.features["direction"] == "higher").all()  # a text has its terms


def test_categorical_columns_are_explained_after_the_encoder():
    from sklearn.compose import make_column_transformer
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"colour": rng.choice(["red", "blue"], 100), "size": rng.normal(size=100)})
    frame.loc[frame["colour"] == "red", "size"] += 5
    encode = make_column_transformer((OneHotEncoder(), ["colour"]), remainder="passthrough")
    model = make_pipeline(encode, KMeans(2, n_init=10, random_state=0)).fit(frame)
    explanation = explain_clusters(model, frame, n_features=1)
    assert set(explanation.features["feature"]) <= set(encode.get_feature_names_out())


def test_images_are_named_by_pixel_and_drawn():
    X = load_digits().data[:300] / 16
    model = KMeans(3, n_init=3, random_state=0).fit(X)
    explanation = explain_clusters(model, X, image_shape=(8, 8), n_prototypes=2)
    assert explanation.features["feature"].str.match(r"pixel\[\d, \d\]").all()
    display = ClusterExplanationDisplay.from_explanation(explanation, X=X)
    assert display.ax_.shape == (6,)
    assert display.prototype_images[0].shape == (2, 8, 8)


@pytest.mark.parametrize("kind", ["heatmap", "bars"])
def test_display_kinds(informative, kind):
    X, _, _ = informative
    model = KMeans(3, n_init=3, random_state=0).fit(X)
    display = ClusterExplanationDisplay.from_estimator(model, X, kind=kind, n_features=4)
    assert display.figure_ is not None
    if kind == "heatmap":
        assert display.ax_.get_ylabel() == "cluster"
        assert {t.get_text() for t in display.ax_.get_xticklabels()} <= set(X.columns)
    else:
        assert len(display.ax_) == 3
    with pytest.raises(ValueError, match="kind must be one of"):
        display.plot(kind="pie")
    with pytest.raises(ValueError, match="draws images"):
        display.plot(kind="prototypes")


def test_one_member_clusters_and_too_many_features(informative):
    X, _, _ = informative
    labels = np.r_[np.zeros(len(X) - 1, dtype=int), 1]
    model = KMeans(2, n_init=1, random_state=0).fit(X)
    explanation = explain_clusters(model, X, labels=labels, n_features=50)
    assert explanation.features.groupby("cluster").size().tolist() == [20, 20]
    np.testing.assert_array_equal(explanation.prototypes[1], [len(X) - 1])
    assert np.isfinite(explanation.features["p_value"]).all()


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_explain_clusters_refuses_bad_input(informative):
    X, _, _ = informative
    model = KMeans(3, n_init=1, random_state=0).fit(X)
    with pytest.raises(NotFittedError):
        explain_clusters(KMeans(3), X)
    with pytest.raises(ValueError, match="X has 5 features"):
        explain_clusters(model, X.iloc[:, :5].to_numpy())
    with pytest.raises(ValueError, match="n_features must be a positive int"):
        explain_clusters(model, X, n_features=0)
    with pytest.raises(ValueError, match="direction must be one of"):
        explain_clusters(model, X, direction="up")
    with pytest.raises(ValueError, match="one label per row"):
        explain_clusters(model, X, labels=[0, 1])
    with pytest.raises(ValueError, match="nothing to tell apart"):
        explain_clusters(model, X, labels=np.zeros(len(X)))
    with pytest.raises(ValueError, match="one name per column"):
        explain_clusters(model, X, feature_names=["a"])


def test_a_step_that_cannot_name_its_features_is_named_in_the_error(documents):
    texts, _ = documents
    dense = FunctionTransformer(lambda m: m.toarray())  # no feature_names_out
    model = make_pipeline(TfidfVectorizer(), dense, KMeans(2, n_init=1, random_state=0))
    model.fit(texts)
    explanation = explain_clusters(model, texts)  # the vectorizer names the terms
    assert set(explanation.features["feature"]) <= set(model[0].get_feature_names_out())
    opaque = make_pipeline(FunctionTransformer(lambda t: np.c_[[len(s) for s in t]]),
                           KMeans(2, n_init=1, random_state=0)).fit(texts)
    with pytest.raises(ValueError, match="cannot name its output features.*feature_names="):
        explain_clusters(opaque, texts)


# -- explain_outliers and feature_contributions ------------------------------------------


@pytest.fixture(scope="module")
def related():
    """Five measurements of one quantity and an unrelated feature: relations a value can break."""
    rng = np.random.RandomState(0)
    level = rng.normal(size=600)
    frame = pd.DataFrame({f"m{j}": level + 0.3 * rng.normal(size=600) for j in range(5)})
    return frame.assign(other=rng.normal(size=600))


def test_outliers_blame_the_corrupted_feature_better_than_z_scores(related):
    model = make_pipeline(StandardScaler(), AutoencoderOutlierDetector(random_state=0))
    model.fit(related.iloc[:500])
    test = related.iloc[500:].copy()
    rng = np.random.RandomState(1)
    # m2 keeps a value in its usual range but no longer agrees with m0, m1, m3 and m4
    test["m2"] = rng.permutation(test["m2"].to_numpy())
    explanation = explain_outliers(model, test, n_features=1)
    hits = np.mean(explanation.top["feature"] == "m2")
    z = np.abs(StandardScaler().fit(related.iloc[:500]).transform(test))
    z_hits = np.mean(np.argmax(z, axis=1) == 2)
    assert hits > max(0.6, z_hits + 0.2)
    assert list(explanation.contributions.columns) == [f"m{j}" for j in range(5)] + ["other"]
    assert explanation.contributions.index.equals(test.index)
    np.testing.assert_allclose(explanation.scores, -model.score_samples(test), rtol=1e-6)
    assert "sample" in str(explanation)


def test_contributions_still_sum_to_the_score_and_pandas_output_follows_the_config(related):
    import sklearn

    detector = AutoencoderOutlierDetector(random_state=0).fit(related)
    contributions = detector.feature_contributions(related)
    np.testing.assert_allclose(contributions.sum(axis=1), -detector.score_samples(related),
                               rtol=1e-6)
    assert np.all(contributions >= 0) and isinstance(contributions, np.ndarray)
    with sklearn.config_context(transform_output="pandas"):
        framed = detector.feature_contributions(related)
    assert list(framed.columns) == list(related.columns)
    refit = AutoencoderOutlierDetector(random_state=0).fit(related.iloc[:300])
    np.testing.assert_allclose(refit.fit(related).feature_contributions(related), contributions)


def test_explain_outliers_in_a_pandas_pipeline_and_bad_input(related):
    model = make_pipeline(StandardScaler(), AutoencoderOutlierDetector(random_state=0))
    model.set_output(transform="pandas").fit(related)
    top = explain_outliers(model, related.iloc[:5], n_features=2).top
    assert set(top["feature"]) <= set(related.columns) and len(top) == 10
    with pytest.raises(TypeError, match="has no feature_contributions"):
        explain_outliers(KMeans(2, n_init=1).fit(related), related)
    with pytest.raises(ValueError, match="n_features must be a positive int"):
        explain_outliers(model, related, n_features=-1)


# -- feature_attributions ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_digits().data[:400] / 16


def _displacement(model, X, base, output="transform"):
    f = getattr(model, output)
    return f(X) - f(base[None])


@pytest.mark.parametrize(
    "make",
    [
        lambda: DeepAutoencoder(n_components=3, hidden_layer_sizes=(32,), max_iter=10,
                                random_state=0),
        lambda: NeighborEmbedding(n_components=2, max_iter=3, random_state=0),
    ],
    ids=["autoencoder", "map"],
)
def test_attributions_are_complete_and_faithful(digits, make):
    model = make().fit(digits)
    X = digits[:40]
    attributions = feature_attributions(model, X, baseline=digits)
    base = digits.mean(axis=0)
    displacement = _displacement(model, X, base)
    assert attributions.shape == (40, 64, displacement.shape[1])
    np.testing.assert_allclose(attributions.sum(axis=1), displacement,
                               atol=0.05 * np.abs(displacement).max())
    # deletion: masking the 6 features that push each sample along its displacement
    # moves it more than masking 6 random ones
    along = np.einsum("nfo,no->nf", attributions, displacement)
    rng = np.random.RandomState(0)
    moved = {}
    for name, ranking in [("attributions", along), ("random", rng.rand(*X.shape))]:
        top = np.argsort(-ranking, axis=1)[:, :6]
        masked = X.copy()
        masked[np.arange(len(X))[:, None], top] = base[top]
        moved[name] = np.linalg.norm(model.transform(masked) - model.transform(X), axis=1).mean()
    assert moved["attributions"] > 2 * moved["random"]


def test_cluster_probabilities_and_the_summary_in_a_pipeline(digits):
    frame = pd.DataFrame(digits[:, 20:28], columns=[f"p{i}" for i in range(8)])
    clusterer = DeepEmbeddingClusterer(n_clusters=3, autoencoder=DeepAutoencoder(
        hidden_layer_sizes=(16,), max_iter=10), max_iter=5, random_state=0)
    model = make_pipeline(StandardScaler(), clusterer).fit(frame)
    attributions, features, outputs = feature_attributions(model, frame.iloc[:30],
                                                            return_names=True)
    assert attributions.shape == (30, 8, 3)
    assert features == list(frame.columns) and outputs == ["cluster 0", "cluster 1", "cluster 2"]
    # completeness against the default baseline, the mean of X in the model's input space
    scaled = model[0].transform(frame.iloc[:30])
    proba = clusterer.predict_proba(scaled)
    at_mean = clusterer.predict_proba(np.asarray(scaled).mean(axis=0, keepdims=True))
    np.testing.assert_allclose(attributions.sum(axis=1), proba - at_mean, atol=0.01)
    summary = attribution_summary(model, frame.iloc[:30])
    assert list(summary.columns) == outputs and set(summary.index) == set(frame.columns)
    assert summary.max(axis=1).is_monotonic_decreasing


def test_feature_attributions_refuses_bad_input(digits):
    model = DeepAutoencoder(n_components=2, hidden_layer_sizes=(8,), max_iter=2,
                            random_state=0).fit(digits)
    with pytest.raises(NotFittedError):
        feature_attributions(DeepAutoencoder(), digits)
    with pytest.raises(ValueError, match="X has 10 features"):
        feature_attributions(model, digits[:, :10])
    with pytest.raises(ValueError, match="pass baseline="):
        feature_attributions(model, digits[:1])
    with pytest.raises(ValueError, match="one value per input feature"):
        feature_attributions(model, digits[:3], baseline=np.zeros(3))
    with pytest.raises(TypeError, match="no differentiable predict_proba"):
        feature_attributions(model, digits[:3], output="predict_proba")
    with pytest.raises(TypeError, match="has no encoder"):
        feature_attributions(KMeans(2, n_init=1).fit(digits), digits[:3])
    with pytest.raises(ValueError, match="n_steps must be an int >= 2"):
        feature_attributions(model, digits[:3], n_steps=1)
    one = feature_attributions(model, digits[:1], baseline=digits)
    assert one.shape == (1, 64, 2)

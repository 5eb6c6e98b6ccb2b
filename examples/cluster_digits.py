"""
Cluster handwritten digits with deep embedded clustering, inside a Pipeline
===========================================================================

This example clusters the 1797 8x8 digit images bundled with scikit-learn
into 10 groups without looking at their labels, using
``DeepEmbeddingClusterer`` (DEC/IDEC) behind a ``MinMaxScaler`` in an
ordinary scikit-learn ``Pipeline``. It then uses the labels only to grade the
result, next to ``KMeans`` in the same pipeline, and shows the rest of the
clusterer's API:

* ``fit_predict`` returns a cluster per sample, like any scikit-learn
  clusterer;
* ``predict`` assigns new rows to the learned clusters and ``predict_proba``
  gives their soft assignments (one probability per cluster);
* ``transform`` maps rows to the 10-dimensional embedding in which the
  clusters were found, and ``set_output(transform="pandas")`` turns that
  embedding into a DataFrame with named columns.

The clustering accuracy (ACC) matches each cluster to one digit class so as
to maximise the number of correctly grouped images; NMI (normalised mutual
information) needs no matching. Both are 1.0 for a perfect clustering.

Runtime: about 10 seconds on 2 CPU cores (8.7 s measured, load average 0.9;
the clusterer's fit 4.2 s); less on a GPU, which is used when available.
Scores can differ slightly between machines and thread counts (pass
``n_threads=1`` for bit-identical reruns).

Run it with::

    python examples/cluster_digits.py

.. rubric:: Stored output

The documentation shows the output of one run instead of running this
example at every build: 8.7 s on 2 CPU cores (load average 0.9).

.. literalinclude:: /gallery_output/cluster_digits.txt
   :language: none
"""

import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from sk_deepunsup import DeepEmbeddingClusterer
from sk_deepunsup.metrics import clustering_accuracy

np.set_printoptions(precision=3, suppress=True)

# 1. Load the digits: 1797 images of 8x8 pixels, each pixel in 0..16.
#    The labels y are used only at the end, to grade the clusterings.
X, y = load_digits(return_X_y=True)
print(f"Data: {X.shape[0]} images with {X.shape[1]} pixels each.\n")

# 2. Cluster with a scaler and DEC in one pipeline. With default parameters,
#    the clusterer trains a NeighborEmbedding (a network mapping each image to
#    10 dimensions in which distances mirror the digits' neighbourhoods), runs
#    k-means there, then refines the network and the centres together.
dec = make_pipeline(MinMaxScaler(), DeepEmbeddingClusterer(n_clusters=10, random_state=0))
start = time.perf_counter()
dec_labels = dec.fit_predict(X)
dec_seconds = time.perf_counter() - start

# 3. The same pipeline with k-means on the raw (scaled) pixels, as a baseline.
kmeans = make_pipeline(MinMaxScaler(), KMeans(n_clusters=10, n_init=10, random_state=0))
start = time.perf_counter()
kmeans_labels = kmeans.fit_predict(X)
kmeans_seconds = time.perf_counter() - start

# 4. Grade both clusterings against the true digit classes.
print("Clustering quality against the true digits (1.0 is perfect):")
print(f"  {'method':<32}{'ACC':>7}{'NMI':>7}{'time':>9}")
for name, labels, seconds in [
    ("MinMaxScaler + DEC", dec_labels, dec_seconds),
    ("MinMaxScaler + KMeans", kmeans_labels, kmeans_seconds),
]:
    acc = clustering_accuracy(y, labels)
    nmi = normalized_mutual_info_score(y, labels)
    print(f"  {name:<32}{acc:>7.3f}{nmi:>7.3f}{seconds:>8.1f}s")
print(
    "  ACC: share of images in a cluster matched to their own digit;\n"
    "  NMI: information the clusters share with the classes.\n"
)

# 5. Which digits ended up in which cluster? Each row is a cluster; the
#    columns count the true digits in it (a good cluster has one big count).
print("Digits per DEC cluster (rows: clusters, columns: true digits 0-9):")
print("           " + "".join(f"{d:>5}" for d in range(10)))
for cluster in range(10):
    counts = np.bincount(y[dec_labels == cluster], minlength=10)
    print(f"  cluster {cluster}" + "".join(f"{c:>5}" for c in counts))
print()

# 6. predict: the fitted pipeline scales new rows and assigns them to the
#    nearest learned cluster. (Here we reuse a few training rows.)
rows = X[:5]
print("True digits of 5 rows:     ", y[:5].tolist())
print("Their clusters (predict):  ", dec.predict(rows).tolist())
print("(Cluster numbers are arbitrary names; see the table above for their digits.)\n")

# 7. predict_proba: soft assignments, one probability per cluster. Each row
#    sums to 1, and its largest entry is the cluster that predict returns.
proba = dec.predict_proba(rows)
print("Soft assignments (predict_proba), one row per sample, one column per cluster:")
print(proba)
print("Row sums:", proba.sum(axis=1), "\n")

# 8. transform: the 10-d embedding in which the clusters live (the space of
#    cluster_centers_), ready for any downstream estimator.
embedding = dec.transform(rows)
clusterer = dec[-1]
print(f"transform gives a {embedding.shape[1]}-d embedding per row: shape {embedding.shape};")
print(f"cluster_centers_ live in the same space: shape {clusterer.cluster_centers_.shape}.\n")

# 9. set_output(transform="pandas") makes transform return a DataFrame whose
#    columns are named after the estimator. We set it on the clusterer step
#    only: setting it on the whole (already fitted) pipeline would also make
#    the scaler hand a DataFrame to a clusterer that was fitted on a plain
#    array, and scikit-learn would warn about the feature names. (Calling
#    dec.set_output(transform="pandas") *before* fitting works too.)
clusterer.set_output(transform="pandas")
frame = dec.transform(rows)
print(f"The same embedding as a pandas {type(frame).__name__} of shape {frame.shape}")
print("(first 3 of its 10 columns shown):")
print(frame.iloc[:, :3].round(2).to_string())
print("Column names:", ", ".join(frame.columns[:2]), "...", frame.columns[-1])

"""
Draw a 2-D map of handwritten digits, coloured by the clusters found in them
============================================================================

``NeighborEmbedding`` trains a small network so that digits that are near
neighbours in pixel space land near each other on a plane (UMAP's and
t-SNE's idea, with a network: new images are placed by ``transform``
without refitting). ``DeepEmbeddingClusterer`` clusters the same digits
without labels, in its own 10-dimensional neighbour embedding. The map is
coloured by those clusters; a fifth of the digits is held out of both fits
and placed afterwards with ``transform`` / ``predict`` (drawn as crosses).
The labels are used only to print how well the clusters and the map agree
with the true digits.

Output: ``map_digits.png`` (or the path given as the first argument).
Runtime: about 10 seconds on 2 CPU cores (9.9 s measured, load average 0.9).

Run it with::

    python examples/map_digits.py [out.png]

.. rubric:: Stored output

The documentation shows the output of one run instead of running this
example at every build: 9.9 s on 2 CPU cores (load average 0.9).

.. literalinclude:: /gallery_output/map_digits.txt
   :language: none

.. image:: /gallery_output/map_digits.png
   :alt: the figure this example saves
"""

# sphinx_gallery_thumbnail_path = "gallery_output/map_digits.png"

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.manifold import trustworthiness  # noqa: E402
from sklearn.metrics import normalized_mutual_info_score  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402

from sk_deepunsup import DeepEmbeddingClusterer, NeighborEmbedding  # noqa: E402
from sk_deepunsup.metrics import clustering_accuracy  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "map_digits.png"

# 1. Digits scaled to [0, 1]; a fifth held out of fitting.
digits = load_digits()
X, y = MinMaxScaler().fit_transform(digits.data), digits.target
held = np.random.RandomState(0).rand(len(X)) < 0.2
X_fit, X_new = X[~held], X[held]

# 2. The map, and the clusters (each found without labels).
mapper = NeighborEmbedding(n_components=2, random_state=0).fit(X_fit)
clusterer = DeepEmbeddingClusterer(n_clusters=10, random_state=0).fit(X_fit)
Z_fit, Z_new = mapper.embedding_, mapper.transform(X_new)
c_fit, c_new = clusterer.labels_, clusterer.predict(X_new)

# 3. Grades, using the labels now.
print(f"clusters: ACC {clustering_accuracy(y[~held], c_fit):.3f}, "
      f"NMI {normalized_mutual_info_score(y[~held], c_fit):.3f}; "
      f"held-out digits: ACC {clustering_accuracy(y[held], c_new):.3f}")
print(f"map trustworthiness (10 neighbours): {trustworthiness(X_fit, Z_fit, n_neighbors=10):.3f}; "
      f"held-out: {trustworthiness(X_new, Z_new, n_neighbors=10):.3f}")
knn = KNeighborsClassifier(5).fit(Z_fit, y[~held])
print(f"5-NN accuracy of held-out digits placed on the map: {knn.score(Z_new, y[held]):.3f}")

# 4. The picture: one colour per cluster, the cluster's most common digit at its centre.
fig, ax = plt.subplots(figsize=(8, 8))
cmap = plt.get_cmap("tab10")
ax.scatter(Z_fit[:, 0], Z_fit[:, 1], c=cmap(c_fit), s=6, alpha=0.6, linewidths=0)
ax.scatter(Z_new[:, 0], Z_new[:, 1], c=cmap(c_new), s=18, marker="x", linewidths=0.8)
for k in range(10):
    members = c_fit == k
    if members.any():
        cx, cy = np.median(Z_fit[members], axis=0)
        digit = np.bincount(y[~held][members]).argmax()
        ax.text(cx, cy, str(digit), fontsize=18, weight="bold", ha="center", va="center",
                bbox=dict(facecolor="white", alpha=0.7, edgecolor=cmap(k)))
ax.set_title("Digits mapped by NeighborEmbedding, coloured by DeepEmbeddingClusterer\n"
             "(dots: fitted; crosses: held out, placed by transform / predict)")
ax.set_xticks([])
ax.set_yticks([])
fig.tight_layout()
fig.savefig(out, dpi=100)
print(f"saved {out}")

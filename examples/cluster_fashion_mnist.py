"""
Cluster Fashion-MNIST with a convolutional autoencoder and save each cluster's images
=====================================================================================

``DeepEmbeddingClusterer`` pretrains an autoencoder, fits a neighbour
embedding to the autoencoder's code (N2D: images whose codes are neighbours
end up close), starts k-means there and refines the clusters (DEC). Given
``DeepAutoencoder(image_shape=(1, 28, 28))`` the autoencoder is
convolutional: X stays a 2-D array, one image a row (784 pixels, flattened
in C order), so everything scikit-learn does with X still works.

The example clusters a fixed random subset of the images (pixels / 255),
prints accuracy (best one-to-one matching of clusters to the 10 classes) and
NMI against the true classes, then explains the clusters with
:func:`sk_deepunsup.inspection.explain_clusters`: each cluster's prototypes
(the members nearest the centres of a k-means of its members, so together they
cover its modes), its borderline members, and ``fashion_clusters.png``, one
row of prototypes a cluster, drawn by
:class:`~sk_deepunsup.inspection.ClusterExplanationDisplay`.

Needs Fashion-MNIST, read offline from Debian's ``dataset-fashion-mnist``
package by :func:`sk_deepunsup.datasets.load_fashion_mnist`. Runtime: a few minutes on a GPU;
on 2 CPU cores use a smaller subset and fewer epochs, e.g. (63 s measured while another job
shared the cores, load average 2.2--2.3)::

    python examples/cluster_fashion_mnist.py --n-samples 3000 --pretrain-epochs 10 --epochs 5

.. rubric:: Stored output

The documentation shows the output of one run instead of running this
example at every build, with the smaller settings above: 63 s on 2 CPU
cores (load average 2.2--2.3).

.. literalinclude:: /gallery_output/cluster_fashion_mnist.txt
   :language: none

.. image:: /gallery_output/fashion_clusters.png
   :alt: the figure this example saves
"""

# sphinx_gallery_thumbnail_path = "gallery_output/fashion_clusters.png"

import argparse

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer
from sk_deepunsup.datasets import load_fashion_mnist
from sk_deepunsup.inspection import ClusterExplanationDisplay, explain_clusters
from sk_deepunsup.metrics import clustering_accuracy

CLASSES = ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


def load_images():
    X, y = load_fashion_mnist()  # its error says how to install the data
    return X.astype(np.float32) / 255.0, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, default=10000)
    parser.add_argument("--pretrain-epochs", type=int, default=200, help="autoencoder max_iter")
    parser.add_argument("--epochs", type=int, default=100, help="clusterer max_iter")
    parser.add_argument("--output", default="fashion_clusters.png")
    args = parser.parse_args()

    X, y = load_images()
    keep = np.random.RandomState(0).choice(len(X), args.n_samples, replace=False)
    X, y = X[keep], y[keep]

    dec = DeepEmbeddingClusterer(
        n_clusters=10,
        autoencoder=DeepAutoencoder(
            n_components=10, image_shape=(1, 28, 28), max_iter=args.pretrain_epochs
        ),
        max_iter=args.epochs,
        random_state=0,
        verbose=True,
    ).fit(X)

    labels = dec.labels_
    print(f"ACC {clustering_accuracy(y, labels):.3f}  "
          f"NMI {normalized_mutual_info_score(y, labels):.3f}")
    explanation = explain_clusters(dec, X, n_prototypes=8)
    print(f"{'cluster':>7} {'size':>5}  {'prototypes (class)':<52} borderline (class)")
    for c, size in explanation.sizes.items():
        typical = " ".join(CLASSES[k] for k in y[explanation.prototypes[c][:4]])
        weak = " ".join(CLASSES[k] for k in y[explanation.borderline[c][:3]])
        print(f"{c:>7} {size:>5}  {typical:<52} {weak}")

    import matplotlib

    matplotlib.use("Agg")
    display = ClusterExplanationDisplay.from_explanation(explanation, X=X)
    display.figure_.savefig(args.output, dpi=80)
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()

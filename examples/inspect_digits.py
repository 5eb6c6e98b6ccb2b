"""
Look inside models of the digits: loss curves, embeddings, reconstructions
==========================================================================

This example fits a ``DeepEmbeddingClusterer`` on scikit-learn's 8x8 digit
images (behind a ``MinMaxScaler``) and saves three figures made with the
Displays of ``sk_deepunsup.inspection``:

* ``loss_curve.png``: the clustering phase's loss per epoch, and on the
  right axis the share of samples that changed cluster at each target
  update (training stops when it falls below ``tol``);
* ``embedding.png``: the 10-dimensional embedding the clusters live in,
  projected on its first two principal components, coloured by the
  predicted clusters (left) and by the true digit (right);
* ``reconstruction.png``: eight digits above the clusterer's autoencoder's
  reconstructions of them.

Each Display is built with ``from_estimator`` and drawn with matplotlib,
which the ``plot`` extra installs (``pip install "sk-deepunsup[plot]"``).

Runtime: about 15-60 seconds on 2 CPU cores (16 s measured with one other
program running, load average 1.7).

Run it with::

    python examples/inspect_digits.py [OUTPUT_FOLDER]

Without a folder the figures go to a new temporary folder, whose name is
printed.
"""

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files; no window needed

import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402

from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer  # noqa: E402
from sk_deepunsup.inspection import (  # noqa: E402
    EmbeddingDisplay,
    LossCurveDisplay,
    ReconstructionDisplay,
)


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = load_digits(return_X_y=True)
    # the autoencoder route, so that there is a decoder to reconstruct with
    clusterer = DeepEmbeddingClusterer(
        n_clusters=10, autoencoder=DeepAutoencoder(n_components=10, hidden_layer_sizes=(500, 500)),
        random_state=0,
    )
    model = make_pipeline(MinMaxScaler(), clusterer).fit(X)

    LossCurveDisplay.from_estimator(model).figure_.savefig(out_dir / "loss_curve.png", dpi=100)

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    EmbeddingDisplay.from_estimator(model, X, ax=left)  # coloured by the predicted clusters
    EmbeddingDisplay.from_estimator(model, X, y=y, ax=right)
    left.set_title("predicted clusters")
    right.set_title("true digits")
    fig.tight_layout()
    fig.savefig(out_dir / "embedding.png", dpi=100)

    disp = ReconstructionDisplay.from_estimator(model, X, image_shape=(8, 8), n_images=8)
    disp.figure_.savefig(out_dir / "reconstruction.png", dpi=100, bbox_inches="tight")

    for name in ("loss_curve.png", "embedding.png", "reconstruction.png"):
        print(out_dir / name)


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="digits_"))
    main(folder)

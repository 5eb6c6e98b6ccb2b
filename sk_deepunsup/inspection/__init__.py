"""What a fitted model learned, in the user's own features, in scikit-learn's inspection style.

Functions compute, Displays draw; each takes a fitted estimator or a
``Pipeline`` ending in one, and names features after X's columns, a
pipeline's vectorizer terms or an image's pixels.

- :func:`explain_clusters`: each cluster's most distinctive features (with
  effect sizes and adjusted p-values), its prototypes and borderline members.
- :func:`explain_outliers`: the features that carry each sample's outlier
  score.
- :func:`feature_attributions` and :func:`attribution_summary`: integrated
  gradients of a map's coordinates, a code or a cluster probability, per
  sample and feature (needs ``pip install "sk-deepunsup[explain]"``).
- :class:`ClusterExplanationDisplay`: a heatmap of the clusters' top
  features, term bars for text, prototype images for images.
- :class:`LossCurveDisplay`: training and validation loss per epoch, and
  the clusterer's label changes.
- :class:`EmbeddingDisplay`: the 2-D map of ``transform`` coloured by given
  labels, predicted clusters or outlier scores (a PCA projection of it when
  ``n_components > 2``).
- :class:`ReconstructionDisplay`: originals beside their reconstructions, as
  image grids, or as per-feature errors for tabular data.

matplotlib is needed only when plotting: ``pip install "sk-deepunsup[plot]"``.
"""

from ._attributions import attribution_summary, feature_attributions
from ._cluster_display import ClusterExplanationDisplay
from ._clusters import ClusterExplanation, explain_clusters
from ._embedding import EmbeddingDisplay
from ._loss_curve import LossCurveDisplay
from ._outliers import OutlierExplanation, explain_outliers
from ._reconstruction import ReconstructionDisplay

__all__ = [
    "ClusterExplanation",
    "ClusterExplanationDisplay",
    "EmbeddingDisplay",
    "LossCurveDisplay",
    "OutlierExplanation",
    "ReconstructionDisplay",
    "attribution_summary",
    "explain_clusters",
    "explain_outliers",
    "feature_attributions",
]

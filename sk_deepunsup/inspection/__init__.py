"""Displays that show what a fitted model learned, in scikit-learn's Display style.

Each Display has ``from_estimator(...)``, which computes what to show from a
fitted estimator (or a ``Pipeline`` ending in one), and ``plot(ax=None)``,
which draws it and sets ``figure_`` and ``ax_``. matplotlib is needed only
when plotting: ``pip install "sk-deepunsup[plot]"``.

- :class:`LossCurveDisplay`: training and validation loss per epoch, and
  the clusterer's label changes.
- :class:`EmbeddingDisplay`: the 2-D map of ``transform`` coloured by given
  labels, predicted clusters or outlier scores (a PCA projection of it when
  ``n_components > 2``).
- :class:`ReconstructionDisplay`: originals beside their reconstructions, as
  image grids, or as per-feature errors for tabular data.
"""

from ._embedding import EmbeddingDisplay
from ._loss_curve import LossCurveDisplay
from ._reconstruction import ReconstructionDisplay

__all__ = ["EmbeddingDisplay", "LossCurveDisplay", "ReconstructionDisplay"]

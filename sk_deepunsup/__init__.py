"""Deep unsupervised learning as scikit-learn estimators, over a PyTorch core."""

from . import datasets, metrics, model_selection
from ._autoencoder import DeepAutoencoder
from ._clustering import DeepEmbeddingClusterer
from ._neighbor_embedding import NeighborEmbedding
from ._outlier import AutoencoderOutlierDetector
from ._persistence import load, save
from ._recommender import AutoencoderRecommender, interaction_matrix, recommendations_frame
from ._vae import VariationalAutoencoder

__version__ = "0.1.0"

__all__ = [
    "AutoencoderOutlierDetector",
    "AutoencoderRecommender",
    "DeepAutoencoder",
    "DeepEmbeddingClusterer",
    "NeighborEmbedding",
    "VariationalAutoencoder",
    "__version__",
    "datasets",
    "interaction_matrix",
    "load",
    "metrics",
    "model_selection",
    "recommendations_frame",
    "save",
]

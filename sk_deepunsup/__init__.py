"""Deep unsupervised learning as scikit-learn estimators, over a PyTorch core."""

from ._autoencoder import DeepAutoencoder
from ._clustering import DeepEmbeddingClusterer

__version__ = "0.1.0"

__all__ = ["DeepAutoencoder", "DeepEmbeddingClusterer", "__version__"]

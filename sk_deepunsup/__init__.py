"""Deep unsupervised learning as scikit-learn estimators, over a PyTorch core.

The public names are imported on first use (PEP 562), so ``import
sk_deepunsup`` and the ``sk-deepunsup`` command's ``--help`` do not load
torch; ``from sk_deepunsup import DeepAutoencoder`` works as usual.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_LOCATIONS = {
    "AutoencoderOutlierDetector": "._outlier",
    "AutoencoderRecommender": "._recommender",
    "DeepAutoencoder": "._autoencoder",
    "DeepEmbeddingClusterer": "._clustering",
    "NeighborEmbedding": "._neighbor_embedding",
    "VariationalAutoencoder": "._vae",
    "interaction_matrix": "._recommender",
    "load": "._persistence",
    "recommendations_frame": "._recommender",
    "save": "._persistence",
}
_SUBMODULES = ("datasets", "metrics", "model_selection")

__all__ = sorted([*_LOCATIONS, *_SUBMODULES, "__version__"])


def __getattr__(name):
    if name in _LOCATIONS:
        value = getattr(importlib.import_module(_LOCATIONS[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what static analysers and IDEs see
    from . import datasets, metrics, model_selection
    from ._autoencoder import DeepAutoencoder
    from ._clustering import DeepEmbeddingClusterer
    from ._neighbor_embedding import NeighborEmbedding
    from ._outlier import AutoencoderOutlierDetector
    from ._persistence import load, save
    from ._recommender import AutoencoderRecommender, interaction_matrix, recommendations_frame
    from ._vae import VariationalAutoencoder

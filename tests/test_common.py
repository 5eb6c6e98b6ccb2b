"""scikit-learn's own estimator checks, over every public estimator.

Every check runs, none is marked as an expected failure. The instances use
small networks and few epochs so the suite stays fast; the checks' data sets
are tiny.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_deepunsup import (
    AutoencoderOutlierDetector,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    NeighborEmbedding,
    VariationalAutoencoder,
)

ESTIMATORS = [
    DeepAutoencoder(hidden_layer_sizes=(16,), max_iter=30),
    DeepEmbeddingClusterer(
        autoencoder=DeepAutoencoder(hidden_layer_sizes=(16,), max_iter=30),
        n_init=2,
        max_iter=20,
    ),
    DeepEmbeddingClusterer(
        embedding=NeighborEmbedding(hidden_layer_sizes=(16,), max_iter=10),
        n_init=2,
        max_iter=20,
    ),
    NeighborEmbedding(hidden_layer_sizes=(16,), max_iter=10),
    VariationalAutoencoder(hidden_layer_sizes=(16,), max_iter=30),
    AutoencoderOutlierDetector(DeepAutoencoder(hidden_layer_sizes=(16,), max_iter=30)),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

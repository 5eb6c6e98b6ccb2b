"""scikit-learn's own estimator checks, over every public estimator.

Every check runs. Two are expected to fail for the clusterer only, because of
the check, not the estimator: scikit-learn's sparse-input checks read
``tags.classifier_tags.multi_class`` to size ``predict_proba``'s output, and
that is None for anything but a classifier (the clusterer's ``predict_proba``
gives cluster memberships). tests/test_sparse.py checks what they would:
sparse fit, predict and predict_proba work and match dense input. The
instances use small networks and few epochs so the suite stays fast; the
checks' data sets are tiny.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_deepunsup import (
    AutoencoderOutlierDetector,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    VariationalAutoencoder,
)

ESTIMATORS = [
    DeepAutoencoder(hidden_layer_sizes=(16,), max_iter=30),
    # conv network over 1-pixel-high "images" of any width: the checks' data vary in width
    DeepAutoencoder(image_shape=(1, 1, -1), conv_channels=(4, 8), hidden_layer_sizes=(8,), max_iter=30),
    DeepEmbeddingClusterer(
        autoencoder=DeepAutoencoder(hidden_layer_sizes=(16,), max_iter=30),
        n_init=2,
        max_iter=20,
    ),
    VariationalAutoencoder(hidden_layer_sizes=(16,), max_iter=30),
    AutoencoderOutlierDetector(DeepAutoencoder(hidden_layer_sizes=(16,), max_iter=30)),
]


_SPARSE_CHECK_REASON = (
    "scikit-learn's check sizes predict_proba from classifier_tags, None for a clusterer"
)


def expected_failed_checks(estimator):
    if isinstance(estimator, DeepEmbeddingClusterer):
        return {
            "check_estimator_sparse_array": _SPARSE_CHECK_REASON,
            "check_estimator_sparse_matrix": _SPARSE_CHECK_REASON,
        }
    return {}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

"""scikit-learn's own estimator checks, over every public estimator.

Every check runs. Two are expected to fail for the clusterer only, because of
the check, not the estimator: scikit-learn's sparse-input checks read
``tags.classifier_tags.multi_class`` to size ``predict_proba``'s output, and
that is None for anything but a classifier (the clusterer's ``predict_proba``
gives cluster memberships). tests/test_sparse.py checks what they would:
sparse fit, predict and predict_proba work and match dense input. Three are expected to fail for the
recommender only, because they pass ``score`` a 1-D ``y`` (see
``_SCORE_Y_REASON`` below). The
instances use small networks and few epochs so the suite stays fast; the
checks' data sets are tiny.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_deepunsup import (
    AutoencoderOutlierDetector,
    AutoencoderRecommender,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    NeighborEmbedding,
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
    DeepEmbeddingClusterer(
        embedding=NeighborEmbedding(hidden_layer_sizes=(16,), max_iter=10),
        n_init=2,
        max_iter=20,
    ),
    NeighborEmbedding(hidden_layer_sizes=(16,), max_iter=10),
    VariationalAutoencoder(hidden_layer_sizes=(16,), max_iter=30),
    AutoencoderOutlierDetector(DeepAutoencoder(hidden_layer_sizes=(16,), max_iter=30)),
    AutoencoderRecommender(n_components=4, hidden_layer_sizes=(16,), max_iter=30),
]


_SPARSE_CHECK_REASON = (
    "scikit-learn's check sizes predict_proba from classifier_tags, None for a clusterer"
)


#: A recommender's ``score(X, y)`` takes as ``y`` the held-out interactions of
#: the users of X: a matrix of X's shape (that is how GridSearchCV tunes it).
#: These three checks call ``score(X, y)`` with a 1-D class vector ``y``, which
#: is no held-out matrix; the recommender refuses it with a ValueError instead
#: of scoring nonsense. tests/test_recommender.py checks ``score`` with ``y``
#: and through GridSearchCV, and ``score(X)`` (y=None) is accepted.
_SCORE_Y_REASON = (
    "the check passes a 1-D y to score; a recommender's y is the held-out "
    "interaction matrix of X's shape"
)


def expected_failed_checks(estimator):
    if isinstance(estimator, AutoencoderRecommender):
        return {
            "check_fit_score_takes_y": _SCORE_Y_REASON,
            "check_pipeline_consistency": _SCORE_Y_REASON,
            "check_array_api_input": _SCORE_Y_REASON,
        }
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

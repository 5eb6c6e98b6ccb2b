"""Dask: grid search on a LocalCluster, streaming through Incremental, chunked inference.

One small cluster (2 worker processes, 1 thread each) serves the whole module.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from sk_deepunsup import (
    AutoencoderOutlierDetector,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    VariationalAutoencoder,
)

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
wrappers = pytest.importorskip("dask_ml.wrappers")
joblib = pytest.importorskip("joblib")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env={"OMP_NUM_THREADS": "1"},  # small models: one thread each, no oversubscription
    )
    client = distributed.Client(cluster, timeout="60s")
    yield client
    client.close()
    cluster.close(timeout=20)


@pytest.fixture(scope="module")
def X():
    return load_digits().data[:400] / 16.0


def small_ae(**kw):
    return DeepAutoencoder(**{"hidden_layer_sizes": (8,), "max_iter": 3, "random_state": 0, **kw})


def test_grid_search_runs_on_the_cluster(client, X):
    search = GridSearchCV(
        make_pipeline(MinMaxScaler(), small_ae()),
        {"deepautoencoder__n_components": [2, 4]},
        cv=2,
    )
    with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        search.fit(X)
    workers = {task["worker"] for task in stream.data}
    assert len(stream.data) > 0 and workers <= set(client.scheduler_info()["workers"])
    # the same search in this process gives the same scores
    local = GridSearchCV(search.estimator, search.param_grid, cv=2).fit(X)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], rtol=1e-4
    )
    assert search.best_params_ == local.best_params_
    assert search.best_estimator_.transform(X[:5]).shape[1] == search.best_params_[
        "deepautoencoder__n_components"]


@pytest.mark.parametrize("Estimator", [DeepAutoencoder, VariationalAutoencoder])
def test_incremental_streams_a_dask_array(client, X, Estimator):
    Xd = da.from_array(X, chunks=100)
    model = Estimator(hidden_layer_sizes=(8,), batch_size=32, random_state=0)
    inc = wrappers.Incremental(model, shuffle_blocks=False).fit(Xd)
    assert inc.estimator_.n_iter_ == Xd.numblocks[0]  # one epoch per block
    # the same as partial_fit over the blocks in order, in this process
    local = Estimator(hidden_layer_sizes=(8,), batch_size=32, random_state=0)
    for start in range(0, len(X), 100):
        local.partial_fit(X[start : start + 100])
    np.testing.assert_allclose(inc.transform(Xd).compute(), local.transform(X), rtol=1e-4,
                               atol=1e-5)
    # Incremental's score needs y (None: unsupervised) and calls the model's score
    score = inc.score(Xd, None)
    np.testing.assert_allclose(score, local.score(X), rtol=1e-4)
    # it learned: better than the untrained network of its first chunk
    first = Estimator(hidden_layer_sizes=(8,), batch_size=32, random_state=0, max_iter=1)
    assert score > first.fit(X[:100]).score(X)


def test_parallel_post_fit_matches_in_memory(client, X):
    Xd = da.from_array(X, chunks=90)  # uneven chunks
    estimators = [
        small_ae(),
        DeepEmbeddingClusterer(3, autoencoder=small_ae(), n_init=2, max_iter=3, random_state=0),
        AutoencoderOutlierDetector(small_ae(), random_state=0),
    ]
    for est in estimators:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ppf = wrappers.ParallelPostFit(est).fit(X)
        fitted = ppf.estimator_ if hasattr(ppf, "estimator_") else ppf.estimator
        for method in ("transform", "predict", "predict_proba"):
            if hasattr(est, method):
                lazy = getattr(ppf, method)(Xd)
                assert isinstance(lazy, da.Array)
                np.testing.assert_array_equal(lazy.compute(), getattr(fitted, method)(X),
                                              err_msg=f"{type(est).__name__}.{method}")
        # ParallelPostFit has no score_samples: map the method over the blocks
        # (torch's float64 row reductions may differ in the last bit with the
        # number of rows, hence allclose)
        if hasattr(fitted, "score_samples"):
            lazy = Xd.map_blocks(fitted.score_samples, drop_axis=1, dtype=X.dtype)
            np.testing.assert_allclose(lazy.compute(), fitted.score_samples(X), rtol=1e-12)

"""Same seed, same bits: under OMP_NUM_THREADS=1, in joblib workers, in Python threads, from the CLI.

Nearest neighbours among equal distances are taken in index order, so the
thread count of the neighbour search cannot reorder them; the digits' integer
pixels give many such ties.
"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from joblib import Parallel, delayed
from sklearn.datasets import load_digits

import sk_deepunsup as sdu

NAMES = ["autoencoder", "vae", "neighbors", "clusterer", "detector", "recommender"]
HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


def data():
    return load_digits().data[:300].astype(np.float32) / 16.0


def fit_result(name):
    """One small seeded fit of the estimator ``name``; its outputs as one float64 vector."""
    X = data()
    small = dict(max_iter=2, random_state=0, n_threads=1)
    if name == "autoencoder":
        out = [sdu.DeepAutoencoder(hidden_layer_sizes=(16,), **small).fit(X).transform(X)]
    elif name == "vae":
        out = [sdu.VariationalAutoencoder(hidden_layer_sizes=(16,), **small).fit(X).transform(X)]
    elif name == "neighbors":
        out = [sdu.NeighborEmbedding(hidden_layer_sizes=(16,), **small).fit(X).transform(X)]
    elif name == "clusterer":
        est = sdu.DeepEmbeddingClusterer(n_clusters=4, embedding="neighbors", n_init=1, **small)
        est.fit(X)
        out = [est.labels_, est.transform(X)]
    elif name == "detector":
        autoencoder = sdu.DeepAutoencoder(hidden_layer_sizes=(16,), max_iter=2)
        est = sdu.AutoencoderOutlierDetector(autoencoder, random_state=0, n_threads=1).fit(X)
        out = [est.score_samples(X)]
    else:
        R = (X > 0.5).astype(np.float32)
        est = sdu.AutoencoderRecommender(model="hybrid", hidden_layer_sizes=(16,),
                                         n_components=4, **small).fit(R)
        out = [est.decision_function(R)]
    return np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in out])


def all_results():
    return {name: fit_result(name) for name in NAMES}


@pytest.fixture(scope="module")
def parent():
    return all_results()


def test_one_omp_thread_gives_the_same_bits(parent, tmp_path):
    out = tmp_path / "single.npz"
    code = (f"import runpy, numpy as np; ns = runpy.run_path({HERE!r}); "
            f"np.savez({str(out)!r}, **ns['all_results']())")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    single = np.load(out)
    for name in NAMES:
        np.testing.assert_array_equal(single[name], parent[name], err_msg=name)


def test_joblib_workers_give_the_same_bits(parent):
    results = Parallel(n_jobs=2, backend="loky")(delayed(fit_result)(name) for name in NAMES)
    for name, result in zip(NAMES, results):
        np.testing.assert_array_equal(result, parent[name], err_msg=name)


def test_python_threads_give_the_same_bits(parent):
    results = {}

    def run(names):
        for name in names:
            results[name] = fit_result(name)

    workers = [threading.Thread(target=run, args=(NAMES[i::2],)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    for name in NAMES:
        np.testing.assert_array_equal(results[name], parent[name], err_msg=name)


def test_cli_labels_do_not_depend_on_omp_threads(tmp_path):
    path = tmp_path / "digits.csv"
    np.savetxt(path, load_digits().data[:300], delimiter=",", fmt="%d")
    labels = []
    for threads in (None, "1"):
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("OMP_NUM_THREADS", None)
        if threads:
            env["OMP_NUM_THREADS"] = threads
        result = subprocess.run(
            [sys.executable, "-m", "sk_deepunsup", "cluster", str(path), "-k", "4", "--max-iter", "2",
             "--hidden-layer-sizes", "16", "-q"],
            env=env, capture_output=True, text=True, timeout=120, check=True)
        labels.append(result.stdout)
    assert labels[0] and labels[0] == labels[1]


@pytest.mark.parametrize("n_threads", [10**6, 20000])
def test_more_threads_than_cores_are_cut_to_the_cores_with_a_warning(n_threads):
    # in a subprocess: OpenMP aborts a process asked for that many threads
    code = f"""
import warnings, numpy as np
from sk_deepunsup import DeepAutoencoder
from sk_deepunsup._nn.threads import usable_cores
X = np.random.default_rng(0).random((60, 5)).astype(np.float32)
def fit(n):
    return DeepAutoencoder(hidden_layer_sizes=(4,), max_iter=2, random_state=0,
                           n_threads=n).fit(X).transform(X)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    many = fit({n_threads})
cores = usable_cores()
assert np.array_equal(many, fit(cores))
text = [str(w.message) for w in caught if "n_threads" in str(w.message)]
assert text and text[0].startswith(f"n_threads={n_threads} is more than the {{cores}} cores"), text
print("OK")
"""
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "OK", result.stderr[-2000:]


@pytest.mark.parametrize("exclude_self", [True, False])
def test_neighbours_at_equal_distances_come_in_index_order(monkeypatch, exclude_self):
    import sk_deepunsup._neighbor_graph as graph
    from sklearn.neighbors import NearestNeighbors

    monkeypatch.setattr(graph, "NEIGHBOR_BLOCK", 64)  # many small queries
    rng = np.random.default_rng(0)
    X = np.vstack([np.zeros((40, 3)), rng.integers(0, 3, (60, 3))]).astype(float)  # 40 copies
    search = NearestNeighbors().fit(X)
    dist, idx = graph.kneighbors_by_index(search, X, 5, exclude_self=exclude_self)
    # the reference: every distance, sorted by (distance, index)
    full_dist, full_idx = search.kneighbors(X, n_neighbors=len(X))
    if exclude_self:
        own = full_idx == np.arange(len(X))[:, None]
        full_dist[own], full_idx[own] = np.inf, len(X)
    order = np.lexsort((full_idx, full_dist))
    np.testing.assert_array_equal(idx, np.take_along_axis(full_idx, order, 1)[:, :5])
    np.testing.assert_array_equal(dist, np.take_along_axis(full_dist, order, 1)[:, :5])
    assert idx[0].tolist() == ([1, 2, 3, 4, 5] if exclude_self else [0, 1, 2, 3, 4])

"""Ctrl-C, sent as a real SIGINT to a subprocess, in every phase of a fit.

Each case runs a short script that patches one step of a fit to signal its own
process, as a user's Ctrl-C would land there, and prints what the estimator
looks like afterwards. A fit either ends with a usable, consistent model
(``interrupted_`` set, a warning) or raises KeyboardInterrupt with the
estimator exactly as before; nothing half-trained is cached.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = """
import json, os, signal, sys, warnings
import numpy as np
from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler
import sk_deepunsup
from sk_deepunsup import (AutoencoderOutlierDetector, DeepAutoencoder, DeepEmbeddingClusterer,
                          NeighborEmbedding, VariationalAutoencoder)
import sk_deepunsup._nn.training as training

warnings.simplefilter("ignore")
X = MinMaxScaler().fit_transform(load_digits().data[:240])

def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)

def at_step(n):
    # the n-th training step of the process sends the signal
    original, count = training.Trainer.batch_step, [0]
    def step(self, batch):
        count[0] += 1
        if count[0] == n:
            ctrl_c()
        return original(self, batch)
    training.Trainer.batch_step = step

def report(**extra):
    print("RESULT " + json.dumps(extra))
"""


def run(body, tmp_path):
    script = PRELUDE + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_ctrl_c_in_neighbor_pretraining_is_reported_and_not_cached(tmp_path):
    result = run(
        """
        at_step(3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = DeepEmbeddingClusterer(n_clusters=10, random_state=0, memory="cache").fit(X)
        cached = [f for _, _, files in os.walk("cache") for f in files if f == "output.pkl"]
        report(
            interrupted=bool(est.interrupted_),
            consistent=bool((est.labels_ == est.predict(X)).all()),
            warned=any("interrupted" in str(w.message).lower() for w in caught),
            cached=len(cached),
        )
        """,
        tmp_path,
    )
    assert result == {"interrupted": True, "consistent": True, "warned": True, "cached": 0}


def test_ctrl_c_in_clusterer_final_pass_keeps_consistent_model(tmp_path):
    result = run(
        """
        import sk_deepunsup._clustering as clustering
        original = clustering.infer
        def infer(module, X, forward, n_threads=None):
            if getattr(forward, "func", None) is not None:  # the final soft assignment
                ctrl_c()
            return original(module, X, forward, n_threads)
        clustering.infer = infer
        est = DeepEmbeddingClusterer(n_clusters=10, embedding="autoencoder", max_iter=2,
                                     random_state=0).fit(X)
        report(
            interrupted=bool(est.interrupted_),
            consistent=bool((est.labels_ == est.predict(X)).all()),
            centers=list(est.cluster_centers_.shape),
        )
        """,
        tmp_path,
    )
    assert result == {"interrupted": True, "consistent": True, "centers": [10, 10]}


def test_ctrl_c_in_vae_calibration_keeps_trained_model(tmp_path):
    result = run(
        """
        import sk_deepunsup._nn.modules as modules
        original = modules.VAEModule.calibrate
        def calibrate(self, chunks):
            ctrl_c()
            return original(self, chunks)
        modules.VAEModule.calibrate = calibrate
        vae = VariationalAutoencoder(n_components=2, max_iter=3, random_state=0).fit(X)
        report(interrupted=bool(vae.interrupted_), finite=bool(np.isfinite(vae.score_samples(X)).all()),
               epochs=vae.n_iter_)
        """,
        tmp_path,
    )
    assert result == {"interrupted": True, "finite": True, "epochs": 3}


def test_ctrl_c_before_training_leaves_estimator_as_before(tmp_path):
    result = run(
        """
        est = NeighborEmbedding(max_iter=2, random_state=0).fit(X)
        before = est.embedding_.copy()
        import sk_deepunsup._neighbor_embedding as ne
        original = ne.nearest_neighbors
        def search(*args, **kwargs):
            ctrl_c()
            return original(*args, **kwargs)
        ne.nearest_neighbors = search
        try:
            est.fit(X[:100])
            raised = False
        except KeyboardInterrupt:
            raised = True
        report(raised=raised, same=bool(np.array_equal(est.embedding_, before)),
               n_features=int(est.n_features_in_), rows=len(est.embedding_))
        """,
        tmp_path,
    )
    assert result == {"raised": True, "same": True, "n_features": 64, "rows": 240}


def test_ctrl_c_in_autoencoder_training_keeps_best_weights(tmp_path):
    result = run(
        """
        at_step(5)
        ae = DeepAutoencoder(n_components=2, max_iter=50, random_state=0).fit(X)
        report(interrupted=bool(ae.interrupted_), epochs_below_max=ae.n_iter_ < 50,
               finite=bool(np.isfinite(ae.transform(X)).all()))
        """,
        tmp_path,
    )
    assert result == {"interrupted": True, "epochs_below_max": True, "finite": True}


@pytest.mark.parametrize("step", [2, 40])
def test_ctrl_c_in_detector_fit_leaves_fitted_detector(tmp_path, step):
    result = run(
        f"""
        at_step({step})
        det = AutoencoderOutlierDetector(random_state=0).fit(X)
        scores = det.score_samples(X)
        report(interrupted=bool(det.interrupted_), finite=bool(np.isfinite(scores).all()),
               predicts=sorted(set(det.predict(X).tolist())) in ([-1, 1], [1]))
        """,
        tmp_path,
    )
    assert result == {"interrupted": True, "finite": True, "predicts": True}


RECOMMENDER = """
from sk_deepunsup import AutoencoderRecommender
rng = np.random.default_rng(0)
R = (rng.random((300, 120)) < 0.1).astype(np.float32)
passes = []
original_fit = training.Trainer.fit
def counting_fit(self, *args, **kwargs):
    passes.append(1)
    return original_fit(self, *args, **kwargs)
training.Trainer.fit = counting_fit
def fitted_report(est, **extra):
    report(interrupted=bool(est.interrupted_), passes=len(passes), blend=type(est.module_).__name__,
           usable=bool(np.isfinite(est.decision_function(R)).all()),
           recommends=list(est.recommend(R[:3], n_items=5).shape), **extra)
"""


MIX_SEARCH_CTRL_C = """
import sk_deepunsup._recommender as recommender
def search(*args):
    ctrl_c()
    raise AssertionError("the signal lands first")
recommender.search_mix = search
"""

# where the Ctrl-C lands, the fit's options, and what the fit must have done
RECOMMENDER_CTRL_C = {
    # the network's fit is the first of 1 + ceil(max_iter / 3) training runs:
    # a Ctrl-C there must not let the extra passes run after it
    "network": ("at_step(3)", "max_iter=9", {"passes": 1, "epochs": 1, "mix": 0.5}),
    # 9 epochs of one step each, then the second extra pass
    "extra-pass": ("at_step(11)", "max_iter=9, batch_size=300", {"passes": 3, "epochs": 10}),
    "mix-search": (MIX_SEARCH_CTRL_C, "max_iter=3", {"passes": 1, "epochs": 3, "mix": 0.5}),
}


@pytest.mark.parametrize("where", sorted(RECOMMENDER_CTRL_C))
def test_ctrl_c_anywhere_in_a_hybrid_recommender_fit_ends_it_with_a_usable_model(tmp_path, where):
    setup, options, expected = RECOMMENDER_CTRL_C[where]
    result = run(RECOMMENDER + setup + textwrap.dedent(f"""
        est = AutoencoderRecommender(hidden_layer_sizes=(16,), n_components=4, random_state=0,
                                     {options}).fit(R)
        fitted_report(est, epochs=est.n_iter_, mix=est.mix_)
        """), tmp_path)
    if "mix" not in expected:
        result.pop("mix")
    assert result == {"interrupted": True, "blend": "Blend", "usable": True,
                      "recommends": [3, 5], **expected}


def test_ctrl_c_in_ease_eigendecomposition_stops_at_once(tmp_path):
    # the signal lands while LAPACK runs: Python would handle it only after
    # the call returns, so the solve runs beside the main thread
    result = run(RECOMMENDER + textwrap.dedent("""
        import threading, time, torch
        import sk_deepunsup._recommender as recommender
        original = recommender.ease_spectrum
        big = torch.rand(1800, 1800, dtype=torch.float64)
        big = big @ big.T
        def slow_spectrum(*args):
            started = time.perf_counter()
            torch.linalg.eigh(big)
            solve_s.append(time.perf_counter() - started)
            return original(*args)
        solve_s = []
        recommender.ease_spectrum = slow_spectrum
        est = AutoencoderRecommender(hidden_layer_sizes=(16,), n_components=4, max_iter=2,
                                     random_state=0)
        threading.Timer(0.2, ctrl_c).start()
        started = time.perf_counter()
        try:
            est.fit(R)
            raised = False
        except KeyboardInterrupt:
            raised = True
        took = time.perf_counter() - started
        time.sleep(0.1)
        while not solve_s:
            time.sleep(0.1)
        report(raised=raised, prompt=took < 0.2 + solve_s[0] / 2, took=round(took, 2),
               solve=round(solve_s[0], 2), unfitted=not hasattr(est, "module_"))
        """), tmp_path)
    assert (result["raised"], result["prompt"], result["unfitted"]) == (True, True, True), result

"""ROC AUC of outlier detectors on outlier tasks built from scikit-learn's bundled data sets.

Each task mixes the samples of one class (inliers) with a few samples of the
other classes (outliers); a detector is fitted on the contaminated data and
scores the same data (the usual unsupervised setting). Tasks, rebuilt per
seed from ``np.random.RandomState(seed)`` (seeds 0, 1, 2 by default):

- ``digits``: for each class c of ``load_digits()`` (1797 x 64), inliers =
  every sample of class c, outliers = round(5% of the inliers) samples of
  the other classes, drawn without replacement; the task's AUC is the mean
  over the 10 classes;
- ``breast_cancer``: inliers = the benign cases of ``load_breast_cancer()``
  (target 1), outliers = round(5% of the inliers) malignant cases;
- ``wine``: inliers = class 0 of ``load_wine()``, outliers = max(2,
  round(5% of the inliers)) samples of the other classes.

AUC is ``sklearn.metrics.roc_auc_score`` with outliers as the positive class
and a score that is higher for more outlying samples: ``-score_samples`` for
scikit-learn-convention detectors, ``decision_scores_`` for PyOD's. The
table gives per task the mean AUC over seeds, "mean AUC" (the mean over the
three tasks) and "fit s": wall-clock seconds of the ``.fit(X)`` calls alone
(scoring excluded), summed over all tasks of a seed and averaged over seeds.

Contenders:

- ``default``: sk_deepunsup's ``AutoencoderOutlierDetector(random_state=seed)``
  with its default model (a unit-variance ``VariationalAutoencoder``), after
  a ``StandardScaler``;
- ``vae-gaussian`` and ``ae``: the same detector over the documented
  alternatives, ``VariationalAutoencoder(n_components=8,
  hidden_layer_sizes=(64, 32), max_iter=100)`` (its default, calibrated
  ``loss="gaussian"``) and ``DeepAutoencoder(n_components=4,
  hidden_layer_sizes=(64, 32), max_iter=100)`` (reconstruction error alone);
- ``iforest``: scikit-learn's ``IsolationForest(random_state=seed)`` on the
  raw features (trees do not care about per-feature monotone scaling);
- ``pyod``: PyOD's ``AutoEncoder(random_state=seed, verbose=0)``, its
  defaults otherwise (if pyod is installed).

Autoencoder-based detectors add reconstruction errors up over features, so
they need scaled features: PyOD's ``AutoEncoder`` standardises its input
internally by default (``preprocessing=True``), and a ``StandardScaler`` in
front of sk_deepunsup's detector is the like-for-like setting.

Run from the project root:

    python benchmarks/bench_outliers.py                # seeds 0 1 2
    python benchmarks/bench_outliers.py --quick        # seed 0 only
    python benchmarks/bench_outliers.py --skip pyod ae

pyod comes from ``../shared/peers/install.sh VENV`` (run this script with
that environment's python, e.g.
``/work/peers-venv/bin/python benchmarks/bench_outliers.py``).
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_deepunsup import AutoencoderOutlierDetector, DeepAutoencoder, VariationalAutoencoder

OUTLIER_SHARE = 0.05
TASKS = ("digits", "breast_cancer", "wine")


class Skipped(Exception):
    """A contender whose optional dependency is missing."""


def contaminate(X, inlier_mask, rng, min_outliers=0):
    """Inliers ``X[inlier_mask]`` plus a 5% draw of the rest; labels are 1 for outliers."""
    inliers = X[inlier_mask]
    pool = np.flatnonzero(~inlier_mask)
    n_out = max(min_outliers, int(round(OUTLIER_SHARE * len(inliers))))
    outliers = X[rng.choice(pool, size=n_out, replace=False)]
    y = np.r_[np.zeros(len(inliers), dtype=int), np.ones(n_out, dtype=int)]
    return np.vstack([inliers, outliers]), y


def make_tasks(seed):
    """Task name -> list of (X, y) problems (10 for digits, one for the others)."""
    digits = load_digits()
    rng = np.random.RandomState(seed)
    tasks = {"digits": [contaminate(digits.data, digits.target == c, rng) for c in range(10)]}
    cancer = load_breast_cancer()
    tasks["breast_cancer"] = [
        contaminate(cancer.data, cancer.target == 1, np.random.RandomState(seed))
    ]
    wine = load_wine()
    tasks["wine"] = [
        contaminate(wine.data, wine.target == 0, np.random.RandomState(seed), min_outliers=2)
    ]
    return tasks


def timed_fit(est, X):
    """Fit ``est`` on ``X`` with warnings silenced; return the seconds it took."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        est.fit(X)
        return time.perf_counter() - start


def sklearn_convention(est, X):
    """Outlyingness (higher = more abnormal) and fit seconds of a scikit-learn detector."""
    seconds = timed_fit(est, X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return -est.score_samples(X), seconds


def run_default(X, seed):
    est = make_pipeline(StandardScaler(), AutoencoderOutlierDetector(random_state=seed))
    return sklearn_convention(est, X)


def with_model(model, X, seed):
    est = make_pipeline(StandardScaler(), AutoencoderOutlierDetector(model, random_state=seed))
    return sklearn_convention(est, X)


def run_vae_gaussian(X, seed):
    model = VariationalAutoencoder(n_components=8, hidden_layer_sizes=(64, 32), max_iter=100)
    return with_model(model, X, seed)


def run_plain_ae(X, seed):
    model = DeepAutoencoder(n_components=4, hidden_layer_sizes=(64, 32), max_iter=100)
    return with_model(model, X, seed)


def run_iforest(X, seed):
    return sklearn_convention(IsolationForest(random_state=seed), X)


def run_pyod(X, seed):
    try:
        from pyod.models.auto_encoder import AutoEncoder
    except ImportError:
        raise Skipped("pyod not installed") from None
    # verbose=0 only turns off its tqdm bar; the model keeps its defaults
    # (internal standardisation, 10 epochs, batch 32, dropout, batch norm).
    est = AutoEncoder(random_state=seed, verbose=0)
    seconds = timed_fit(est, X)
    return est.decision_scores_, seconds


# label -> (short name for --skip, runner)
CONTENDERS = {
    "sk_deepunsup AutoencoderOutlierDetector (default)": ("default", run_default),
    "sk_deepunsup, VAE loss='gaussian' (k=8)": ("vae-gaussian", run_vae_gaussian),
    "sk_deepunsup, DeepAutoencoder (k=4)": ("ae", run_plain_ae),
    "sklearn IsolationForest": ("iforest", run_iforest),
    "PyOD AutoEncoder": ("pyod", run_pyod),
}
OURS = "sk_deepunsup AutoencoderOutlierDetector (default)"
PEERS = ("sklearn IsolationForest", "PyOD AutoEncoder")


def run_seed(fn, tasks, seed):
    """Per-task AUC (mean over a task's problems) and total fit seconds of one seed."""
    aucs, total = {}, 0.0
    for name in TASKS:
        per_problem = []
        for X, y in tasks[name]:
            outlyingness, seconds = fn(X, seed)
            total += seconds
            per_problem.append(roc_auc_score(y, outlyingness))
        aucs[name] = float(np.mean(per_problem))
    return dict(aucs, mean=float(np.mean([aucs[t] for t in TASKS])), fit_s=total)


def bench(seeds, skip):
    """Per contender, a list of per-seed dicts (task AUCs, mean, fit_s)."""
    tasks = {seed: make_tasks(seed) for seed in seeds}
    results = {}
    for label, (short, fn) in CONTENDERS.items():
        if short in skip:
            print(f"  {label}: skipped (--skip {short})", flush=True)
            continue
        runs = []
        for seed in seeds:
            try:
                run = run_seed(fn, tasks[seed], seed)
            except Skipped as exc:
                print(f"  {label}: skipped ({exc})", flush=True)
                break
            runs.append(run)
            cells = "  ".join(f"{t} {run[t]:.3f}" for t in TASKS)
            print(f"  {label}, seed {seed}: {cells}  fit {run['fit_s']:.1f} s", flush=True)
        if runs:
            results[label] = runs
    return results


def mean(runs, key):
    return float(np.mean([r[key] for r in runs]))


def report(results, seeds):
    print(f"\nROC AUC, means over seeds {', '.join(map(str, seeds))}\n")
    print("| detector | " + " | ".join(TASKS) + " | mean AUC | fit s |")
    print("|---|" + "---:|" * (len(TASKS) + 2))
    for label, runs in results.items():
        cells = " | ".join(f"{mean(runs, t):.3f}" for t in TASKS)
        print(f"| {label} | {cells} | {mean(runs, 'mean'):.3f} | {mean(runs, 'fit_s'):.1f} |")
    peers = [p for p in PEERS if p in results]
    if OURS in results and peers:
        best = max(peers, key=lambda p: mean(results[p], "mean"))
        diff = mean(results[OURS], "mean") - mean(results[best], "mean")
        print(f"\nbest peer: {best} (mean AUC {mean(results[best], 'mean'):.3f})")
        print(f"sk_deepunsup default mean AUC - best peer mean AUC: {diff:+.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        metavar="NAME",
        choices=sorted({short for short, _ in CONTENDERS.values()}),
        help="contenders to leave out, by short name",
    )
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    args = parser.parse_args()
    seeds = [0] if args.quick else args.seeds
    print(
        f"tasks {', '.join(TASKS)}; {OUTLIER_SHARE:.0%} outliers; seeds {seeds}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}",
        flush=True,
    )
    results = bench(seeds, set(args.skip))
    report(results, seeds)


if __name__ == "__main__":
    main()

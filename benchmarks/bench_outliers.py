"""ROC AUC and average precision of outlier detectors on real and bundled outlier benchmarks.

A detector is fitted on the (contaminated) data and scores the same data, the
usual unsupervised setting. Every detector gets standardised features
(``StandardScaler``; IsolationForest and ECOD/COPOD do not care, the distance
and reconstruction based ones need it). Tasks:

- ODDS (real, :func:`sk_deepunsup.datasets.load_odds`): ``thyroid`` (3772 x 6, 2.5%
  outliers), ``mammography`` (11183 x 6, 2.3%), ``musk`` (3062 x 166, 3.2%),
  ``shuttle`` (a fixed 20 000-row subsample, ``RandomState(0)``, of
  49097 x 9, 7.2%); skipped with a note when the loader is not installed;
- bundled with scikit-learn, rebuilt per seed from ``RandomState(seed)``:
  ``digits`` (for each class c of ``load_digits()``, inliers = class c,
  outliers = round(5%) of the inliers drawn from the other classes; the
  task's figure is the mean over the 10 classes), ``breast_cancer`` (benign
  cases, 5% malignant ones), ``wine`` (class 0, 5% (at least 2) of the
  others).

Held-out checks (``--heldout``), not used to choose any default: ``classif``,
``make_classification`` (2000 x 20, 10 informative features, two clusters
per class, the 5% minority class as outliers); ``blobs``, three Gaussian
clusters of different spreads in 10-d with 5% outliers, half drawn uniformly
in the data's bounding box (global), half from the clusters with 3x their
spread (local); ``digits_transposed``, every image of ``load_digits()`` as
inliers (ten modes) and 5% of them again, transposed (a digit's pixels,
mirrored about the diagonal), as outliers. ``--unscaled`` runs the tasks on
their features as they come (no ``StandardScaler``; thyroid, mammography,
breast cancer and wine have features of very different ranges): a check of
the defaults on data no one scaled, also not used to choose any default.

AUC is ``roc_auc_score`` and AP ``average_precision_score`` with outliers as
the positive class and a score that is higher for more outlying samples
(``-score_samples`` for scikit-learn-convention detectors,
``decision_scores_`` for PyOD's). Means are over seeds, then over tasks.
"fit s" is the wall-clock time of ``.fit`` on the first problem of a task
(shuttle is the one the target is on), averaged over seeds, after one
untimed fit of this package's detector and of IsolationForest (one-off
first-call costs excluded).

Contenders: sk_deepunsup's ``AutoencoderOutlierDetector(random_state=seed)``
(``default``) and its former default (``former``: the ELBO of a
``VariationalAutoencoder(n_components=4, hidden_layer_sizes=(64, 32),
loss="mse", max_iter=100)`` trained on all samples, then again on the 70% it
scored highest); scikit-learn's ``IsolationForest(random_state=seed)``,
``LocalOutlierFactor()`` (its ``negative_outlier_factor_``) and the k-NN
distance (distance to the 5th nearest other sample, PyOD's ``KNN`` default,
computed with ``NearestNeighbors``); PyOD's ``AutoEncoder(random_state=seed,
verbose=0)``, ``ECOD()`` and ``COPOD()`` (skipped with a note when pyod is
missing).

Run from the project root, with the peers installed (``pip install -e
".[benchmarks]"``) and the ODDS sets (``pip install --no-deps unquad==0.8``):

    python benchmarks/bench_outliers.py            # seeds 0 1
    python benchmarks/bench_outliers.py --quick    # seed 0 only
    python benchmarks/bench_outliers.py --heldout  # held-out checks
    python benchmarks/bench_outliers.py --unscaled --skip pyod-ae former
    python benchmarks/bench_outliers.py --skip pyod-ae former
    python benchmarks/bench_outliers.py --time-shuttle 3  # fit times only
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.preprocessing import StandardScaler

from sk_deepunsup import AutoencoderOutlierDetector, VariationalAutoencoder
from sk_deepunsup.datasets import load_odds

OUTLIER_SHARE = 0.05
ODDS_TASKS = ("thyroid", "mammography", "musk", "shuttle")
BUNDLED_TASKS = ("digits", "breast_cancer", "wine")
HELDOUT_TASKS = ("classif", "blobs", "digits_transposed")
SHUTTLE_ROWS = 20_000


class Skipped(Exception):
    """A contender or task whose optional dependency is missing."""


# -- tasks ------------------------------------------------------------------------


def contaminate(X, inlier_mask, rng, min_outliers=0):
    """Inliers ``X[inlier_mask]`` plus a 5% draw of the rest; labels are 1 for outliers."""
    inliers = X[inlier_mask]
    pool = np.flatnonzero(~inlier_mask)
    n_out = max(min_outliers, int(round(OUTLIER_SHARE * len(inliers))))
    outliers = X[rng.choice(pool, size=n_out, replace=False)]
    y = np.r_[np.zeros(len(inliers), dtype=int), np.ones(n_out, dtype=int)]
    return np.vstack([inliers, outliers]), y


def odds(name):
    """X, y of an ODDS set, or Skipped with the install hint."""
    try:
        X, y = load_odds(name)
    except ImportError as exc:
        raise Skipped(str(exc)) from None
    if name == "shuttle":
        keep = np.random.RandomState(0).choice(len(X), SHUTTLE_ROWS, replace=False)
        X, y = X[keep], y[keep]
    return X, y


def blobs(seed):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-5, 5, size=(3, 10))
    spreads = np.array([0.5, 1.0, 2.0])
    which = rng.randint(3, size=1000)
    inliers = centers[which] + spreads[which, None] * rng.normal(size=(1000, 10))
    n_out = int(OUTLIER_SHARE * 1000)
    lo, hi = inliers.min(0), inliers.max(0)
    global_ = rng.uniform(lo, hi, size=(n_out // 2, 10))
    which = rng.randint(3, size=n_out - n_out // 2)
    local = centers[which] + 3 * spreads[which, None] * rng.normal(size=(len(which), 10))
    X = np.vstack([inliers, global_, local])
    return X, np.r_[np.zeros(1000, dtype=int), np.ones(n_out, dtype=int)]


def make_task(name, seed):
    """List of (X, y) problems of one task (10 for digits, one for the others)."""
    if name in ODDS_TASKS:
        return [odds(name)]
    if name == "digits":
        digits = load_digits()
        rng = np.random.RandomState(seed)
        return [contaminate(digits.data, digits.target == c, rng) for c in range(10)]
    if name == "breast_cancer":
        cancer = load_breast_cancer()
        return [contaminate(cancer.data, cancer.target == 1, np.random.RandomState(seed))]
    if name == "wine":
        wine = load_wine()
        rng = np.random.RandomState(seed)
        return [contaminate(wine.data, wine.target == 0, rng, min_outliers=2)]
    if name == "classif":
        X, y = make_classification(
            n_samples=2000, n_features=20, n_informative=10, n_clusters_per_class=2,
            weights=[1 - OUTLIER_SHARE], flip_y=0, random_state=seed,
        )
        return [(X, y)]
    if name == "blobs":
        return [blobs(seed)]
    if name == "digits_transposed":
        images = load_digits().data
        rng = np.random.RandomState(seed)
        picked = rng.choice(len(images), int(round(OUTLIER_SHARE * len(images))), replace=False)
        flipped = images[picked].reshape(-1, 8, 8).transpose(0, 2, 1).reshape(-1, 64)
        y = np.r_[np.zeros(len(images), dtype=int), np.ones(len(picked), dtype=int)]
        return [(np.vstack([images, flipped]), y)]
    raise ValueError(name)


# -- contenders ---------------------------------------------------------------------


def quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def sklearn_convention(est, X):
    """Outlyingness (higher = more abnormal) and fit seconds of a scikit-learn detector."""
    start = time.perf_counter()
    quiet(est.fit, X)
    seconds = time.perf_counter() - start
    return -quiet(est.score_samples, X), seconds


def run_default(X, seed):
    return sklearn_convention(AutoencoderOutlierDetector(random_state=seed), X)


def run_former(X, seed):
    """The former default: a VAE's ELBO, refitted on the 70% it scores highest."""
    start = time.perf_counter()

    def vae():
        return VariationalAutoencoder(
            n_components=4, hidden_layer_sizes=(64, 32), loss="mse", max_iter=100,
            random_state=seed,
        )

    first = quiet(vae().fit, X)
    support = np.argsort(-first.score_samples(X), kind="stable")[: int(np.ceil(0.7 * len(X)))]
    model = quiet(vae().fit, X[support])
    seconds = time.perf_counter() - start
    return -model.score_samples(X), seconds


def run_iforest(X, seed):
    return sklearn_convention(IsolationForest(random_state=seed), X)


def run_lof(X, seed):
    start = time.perf_counter()
    est = quiet(LocalOutlierFactor().fit, X)
    return -est.negative_outlier_factor_, time.perf_counter() - start


def run_knn(X, seed):
    start = time.perf_counter()
    dist, _ = NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X)
    return dist[:, 5], time.perf_counter() - start  # column 0 is the sample itself


def pyod_model(name):
    try:
        from pyod.models import auto_encoder, copod, ecod
    except ImportError:
        raise Skipped("pyod is not installed; pip install pyod") from None
    return {"ae": auto_encoder.AutoEncoder, "ecod": ecod.ECOD, "copod": copod.COPOD}[name]


def pyod_run(est, X):
    start = time.perf_counter()
    quiet(est.fit, X)
    return est.decision_scores_, time.perf_counter() - start


def run_pyod_ae(X, seed):
    # verbose=0 only turns off its tqdm bar; the model keeps its defaults
    return pyod_run(pyod_model("ae")(random_state=seed, verbose=0), X)


def run_ecod(X, seed):
    return pyod_run(pyod_model("ecod")(), X)


def run_copod(X, seed):
    return pyod_run(pyod_model("copod")(), X)


# label -> (short name for --skip, runner)
CONTENDERS = {
    "sk_deepunsup AutoencoderOutlierDetector": ("default", run_default),
    "sk_deepunsup, former default (VAE ELBO)": ("former", run_former),
    "sklearn IsolationForest": ("iforest", run_iforest),
    "sklearn LocalOutlierFactor": ("lof", run_lof),
    "k-NN distance (k=5)": ("knn", run_knn),
    "PyOD AutoEncoder": ("pyod-ae", run_pyod_ae),
    "PyOD ECOD": ("ecod", run_ecod),
    "PyOD COPOD": ("copod", run_copod),
}
OURS = "sk_deepunsup AutoencoderOutlierDetector"
IFOREST = "sklearn IsolationForest"
FORMER = "sk_deepunsup, former default (VAE ELBO)"


# -- running and reporting ----------------------------------------------------------


def load_tasks(names, seeds, scale=True):
    """{task: {seed: problems}} with standardised X (as given when not ``scale``).

    Tasks that cannot load are noted and left out.
    """
    tasks = {}
    for name in names:
        try:
            tasks[name] = {
                seed: [(StandardScaler().fit_transform(X) if scale else X, y)
                       for X, y in make_task(name, seed)]
                for seed in seeds
            }
        except Skipped as exc:
            print(f"  task {name}: skipped ({exc})", flush=True)
    return tasks


def run_task(fn, problems, seed):
    aucs, aps, seconds = [], [], None
    for X, y in problems:
        outlyingness, fit_s = fn(X, seed)
        seconds = fit_s if seconds is None else seconds
        aucs.append(roc_auc_score(y, outlyingness))
        aps.append(average_precision_score(y, outlyingness))
    return float(np.mean(aucs)), float(np.mean(aps)), seconds


def warm_up():
    """torch's and scikit-learn's one-off first-call costs, untimed (fit times are warmed)."""
    X = np.random.RandomState(0).normal(size=(300, 5))
    quiet(AutoencoderOutlierDetector(random_state=0).fit, X)
    quiet(IsolationForest(random_state=0).fit, X)


def bench(tasks, seeds, skip):
    """results[label][task] = (mean AUC, mean AP, mean fit s) over seeds."""
    results = {}
    for label, (short, fn) in CONTENDERS.items():
        if short in skip:
            print(f"  {label}: skipped (--skip {short})", flush=True)
            continue
        try:
            per_task = {}
            for name, by_seed in tasks.items():
                runs = [run_task(fn, by_seed[seed], seed) for seed in seeds]
                per_task[name] = tuple(float(np.mean(col)) for col in zip(*runs))
                auc, ap, fit_s = per_task[name]
                print(f"  {label}, {name}: AUC {auc:.3f} AP {ap:.3f} fit {fit_s:.2f} s", flush=True)
        except Skipped as exc:
            print(f"  {label}: skipped ({exc})", flush=True)
            continue
        results[label] = per_task
    return results


def table(results, names, column, title):
    print(f"\n{title}\n")
    print("| detector | " + " | ".join(names) + " | mean |")
    print("|---|" + "---:|" * (len(names) + 1))
    for label, per_task in results.items():
        values = [per_task[n][column] for n in names]
        cells = " | ".join(f"{v:.3f}" for v in values)
        print(f"| {label} | {cells} | {np.mean(values):.3f} |")


def verdict(results, names):
    if OURS not in results or IFOREST not in results:
        return
    mean_auc = {label: np.mean([r[n][0] for n in names]) for label, r in results.items()}
    others = {k: v for k, v in mean_auc.items() if k not in (OURS, FORMER)}
    best = max(others, key=others.get)
    gaps = {n: results[OURS][n][0] - results[IFOREST][n][0] for n in names}
    worst = min(gaps, key=gaps.get)
    print(f"\nmean AUC: ours {mean_auc[OURS]:.4f}, best other {best} {others[best]:.4f} "
          f"({mean_auc[OURS] - others[best]:+.4f})")
    print(f"largest shortfall against IsolationForest: {worst} {gaps[worst]:+.3f}")
    if "shuttle" in names:
        ours, iforest = results[OURS]["shuttle"][2], results[IFOREST]["shuttle"][2]
        print(f"fit time on shuttle: ours {ours:.2f} s, IsolationForest {iforest:.2f} s "
              f"({ours / iforest:.1f}x)")


def time_shuttle(repeats):
    """Fit-time ratio on shuttle, ours over IsolationForest, fits alternating in one process."""
    X = StandardScaler().fit_transform(odds("shuttle")[0])
    warm_up()
    for seed in range(repeats):
        iforest = sklearn_convention(IsolationForest(random_state=seed), X)[1]
        ours = run_default(X, seed)[1]
        print(f"seed {seed}: ours {ours:.2f} s, IsolationForest {iforest:.2f} s "
              f"({ours / iforest:.1f}x); load average {os.getloadavg()[0]:.1f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--heldout", action="store_true", help="the held-out checks instead")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="a subset of the tasks")
    parser.add_argument("--unscaled", action="store_true",
                        help="features as they come, not standardised (a held-out check)")
    parser.add_argument(
        "--skip", nargs="+", default=[], metavar="NAME",
        choices=sorted({short for short, _ in CONTENDERS.values()}),
        help="contenders to leave out, by short name",
    )
    parser.add_argument(
        "--time-shuttle", type=int, default=0, metavar="N",
        help="only time N fits each of ours and IsolationForest on shuttle, alternating",
    )
    args = parser.parse_args()
    if args.time_shuttle:
        time_shuttle(args.time_shuttle)
        return
    seeds = [0] if args.quick else args.seeds
    names = args.tasks or (HELDOUT_TASKS if args.heldout else ODDS_TASKS + BUNDLED_TASKS)
    print(
        f"tasks {', '.join(names)}{' (unscaled)' if args.unscaled else ''}; seeds {seeds}; "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}",
        flush=True,
    )
    tasks = load_tasks(names, seeds, scale=not args.unscaled)
    warm_up()
    results = bench(tasks, seeds, set(args.skip))
    names = list(tasks)
    seed_text = ", ".join(map(str, seeds))
    table(results, names, 0, f"ROC AUC, means over seeds {seed_text}")
    table(results, names, 1, f"Average precision, means over seeds {seed_text}")
    table(results, names, 2, "Fit seconds (first problem of each task)")
    verdict(results, names)


if __name__ == "__main__":
    main()

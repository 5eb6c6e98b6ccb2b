"""Wall and CPU time of the library's defaults against the shallow tools a user would pick instead.

    python benchmarks/bench_efficiency.py [--rows map mnist_map fashion_map digits fashion mnist images
                                           blobs shuttle text tables cli]
                                          [--repeats 1] [--seeds 0]

Each row fits ours and the peer in one process, both warmed up first (numba's
and torch's one-off start-up excluded on both sides), alternating, with
default threads on both sides; it prints wall seconds, CPU seconds of the
process (user + system of all its threads: less noisy than wall time on a
busy machine), the ratio of ours to the peer, the quality figure of both and
the load average. Rows:

- ``map``: digits (min-max scaled), ``NeighborEmbedding(n_components=2)`` vs
  ``umap.UMAP(n_components=2)`` fitted on a random 80 %; trustworthiness (10
  neighbours) and 5-NN accuracy of the training map, and the held-out 20 %'s
  trustworthiness over the training one (UMAP's ``transform`` beside ours);
- ``mnist_map``, ``fashion_map``: the same on a fixed random 10 000 MNIST images / 255
  (an image set no default was chosen on) and on the 10 000 Fashion-MNIST images below;
- ``digits``, ``fashion`` (a fixed random 10 000 Fashion-MNIST images / 255),
  ``mnist`` (the 10 000 MNIST images above),
  ``blobs`` (200 000 x 50, 10 centres, standardised):
  ``DeepEmbeddingClusterer(n_clusters=10)`` vs UMAP(10) + ``KMeans(10)``; NMI
  (and ACC);
- ``images``: Fashion-MNIST and MNIST 10 000 again, the clusterer told the input is
  images (``DeepEmbeddingClusterer(10, image_shape=(28, 28))``: a conv autoencoder,
  then the neighbour route on its code) vs UMAP(10) + ``KMeans(10)``;
- ``shuttle``: ODDS shuttle (a fixed 20 000-row subsample, standardised),
  ``AutoencoderOutlierDetector()`` vs ``IsolationForest()`` fit; ROC AUC;
- ``text``: 20 Newsgroups and Reuters-21578 R8 TF-IDF (``TfidfVectorizer(max_df=0.5,
  min_df=5, stop_words="english")``): the text recipe (LSA: ``TruncatedSVD(100)`` +
  ``Normalizer``, then ``DeepEmbeddingClusterer(k)``, k the number of topics) vs
  LSA + UMAP(10) + ``KMeans(k)``, and the raw TF-IDF matrix given straight to
  ``DeepEmbeddingClusterer(k)`` vs the recipe; NMI, with LSA + k-means's;
- ``tables``: iris, wine, breast cancer (``StandardScaler``), the clusterer's
  NMI against k-means's per seed (quality only; each fit is under a second);
- ``cli``: the command line as a user runs it, each side a whole fresh Python
  process (imports, reading, fitting, writing): ``sk-deepunsup cluster
  digits.csv -k 10 -o labels.csv`` (digits written to a CSV file first) and
  the digits demo ``sk-deepunsup cluster -o labels.csv`` (which also fits
  k-means for its comparison) vs a script that reads the same data,
  min-max scales it and runs UMAP(10) + ``KMeans(10)``, writing the labels
  the same way; each side runs once untimed first (numba's cache, the disk
  cache), then alternately; CPU time is the child processes'; NMI of the
  labels.

Fashion-MNIST, ODDS, 20 Newsgroups and Reuters R8 load through sk_deepunsup.datasets
(each loader's error names its install command); a row whose data or peer is missing is
skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_blobs
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import IsolationForest
from sklearn.manifold import trustworthiness
from sklearn.metrics import normalized_mutual_info_score, roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, Normalizer, StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from sk_deepunsup import (  # noqa: E402
    AutoencoderOutlierDetector,
    DeepEmbeddingClusterer,
    NeighborEmbedding,
    datasets,
)
from sk_deepunsup.metrics import clustering_accuracy  # noqa: E402


class Skipped(Exception):
    """A row whose data or peer is not installed."""


def real(name, *args):
    """``sk_deepunsup.datasets.load_<name>(*args)``, or Skipped with its install command."""
    try:
        return getattr(datasets, f"load_{name}")(*args)
    except (ImportError, OSError) as exc:
        raise Skipped(str(exc)) from None


def umap_(**params):
    try:
        import umap
    except ImportError:
        raise Skipped("umap-learn is not installed") from None
    return umap.UMAP(**params)


def timed(fn):
    """``fn()``'s result, wall seconds and CPU seconds of this process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu, wall = time.process_time(), time.perf_counter()
        out = fn()
        return out, time.perf_counter() - wall, time.process_time() - cpu


def load():
    return os.getloadavg()[0]


def timed_process(fn):
    """``fn()``'s result, wall seconds and CPU seconds of the child processes it ran."""
    def children():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    cpu, wall = children(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - wall, children() - cpu


def compare(label, ours, peer, quality, repeats, timer=timed):
    """Run ``ours`` and ``peer`` alternately ``repeats`` times; print one row.

    ``ours``/``peer`` take the repeat index (a seed) and return a fitted
    result; ``quality(result)`` gives a dict of figures; ``timer`` measures
    one call (:func:`timed`, or :func:`timed_process` for child processes).
    """
    rows = {"ours": [], "peer": []}
    for r in range(repeats):
        for side, fn in (("ours", ours), ("peer", peer)) if r % 2 == 0 else (
            ("peer", peer), ("ours", ours)
        ):
            out, wall, cpu = timer(lambda: fn(r))
            rows[side].append((wall, cpu, quality(out)))
    (w_o, c_o), (w_p, c_p) = (
        np.mean([x[:2] for x in rows[s]], axis=0) for s in ("ours", "peer")
    )
    q_o = {k: np.mean([x[2][k] for x in rows["ours"]]) for k in rows["ours"][0][2]}
    q_p = {k: np.mean([x[2][k] for x in rows["peer"]]) for k in rows["peer"][0][2]}
    figures = ", ".join(f"{k} {q_o[k]:.3f} vs {q_p.get(k, np.nan):.3f}" for k in q_o)
    print(
        f"| {label} | {w_o:.1f} s | {w_p:.1f} s | {w_o / w_p:.2f}x | "
        f"cpu {c_o:.1f} s vs {c_p:.1f} s ({c_o / c_p:.2f}x) | {figures} | load {load():.1f} |",
        flush=True,
    )


def cluster_scores(y):
    def score(labels):
        return {
            "NMI": normalized_mutual_info_score(y, labels),
            "ACC": clustering_accuracy(y, labels),
        }

    return score


def umap_kmeans(X, k, seed):
    Z = umap_(n_components=10, random_state=seed).fit_transform(X)
    return KMeans(k, n_init=10, random_state=seed).fit_predict(Z)


def warm_up():
    """numba's and torch's one-off compiles, untimed. UMAP is warmed on 5 000 rows:
    above 4 096 it switches to pynndescent, whose first call compiles for ~30 s."""
    X = MinMaxScaler().fit_transform(load_digits().data[:300])
    wide = MinMaxScaler().fit_transform(make_blobs(5000, n_features=20, random_state=0)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for Z in (X, wide):
                for k in (2, 10):
                    umap_(n_components=k).fit(Z).transform(Z[:10])
        except Skipped:
            pass
        NeighborEmbedding(max_iter=1).fit(X).transform(X[:10])
        DeepEmbeddingClusterer(3, max_iter=1).fit(X)
        AutoencoderOutlierDetector().fit(X)


# -- rows -------------------------------------------------------------------------------


def mnist10k():
    """A fixed random 10 000 MNIST images, pixels / 255 (an image set no default was chosen on)."""
    X, y = real("mnist")
    keep = np.random.RandomState(0).choice(len(X), 10_000, replace=False)
    return X[keep].astype(np.float32) / 255.0, y[keep]


def fashion10k():
    X, y = real("fashion_mnist")
    keep = np.random.RandomState(0).choice(len(X), 10_000, replace=False)
    return X[keep].astype(np.float32) / 255.0, y[keep]


def row_map(args):
    digits = load_digits()
    map_rows("digits 2-D map", MinMaxScaler().fit_transform(digits.data), digits.target, args)


def row_mnist_map(args):
    map_rows("MNIST 10k 2-D map", *mnist10k(), args)


def row_fashion_map(args):
    map_rows("Fashion-MNIST 10k 2-D map", *fashion10k(), args)


def map_rows(label, X, y, args):
    for seed in args.seeds:
        perm = np.random.RandomState(seed).permutation(len(X))
        cut = int(0.8 * len(X))
        train, held = perm[:cut], perm[cut:]

        def fit(est):
            Z = est.fit_transform(X[train])
            return Z, est.transform(X[held])

        def quality(out):
            Z, H = out
            trust = trustworthiness(X[train], Z, n_neighbors=10)
            held_trust = trustworthiness(X[held], H, n_neighbors=10)
            knn = cross_val_score(KNeighborsClassifier(5), Z, y[train], cv=5).mean()
            return {"trust": trust, "5-NN": knn, "held/train": held_trust / trust}

        compare(
            f"{label}, seed {seed}",
            lambda r: fit(NeighborEmbedding(n_components=2, random_state=seed + r)),
            lambda r: fit(umap_(n_components=2, random_state=seed + r)),
            quality,
            args.repeats,
        )


def clustering_row(label, X, y, k, args):
    for seed in args.seeds:
        compare(
            f"{label}, seed {seed}",
            lambda r: DeepEmbeddingClusterer(k, random_state=seed + r).fit_predict(X),
            lambda r: umap_kmeans(X, k, seed + r),
            cluster_scores(y),
            args.repeats,
        )


def row_digits(args):
    digits = load_digits()
    clustering_row(
        "digits clustering", MinMaxScaler().fit_transform(digits.data), digits.target, 10, args
    )


def row_fashion(args):
    clustering_row("Fashion-MNIST 10k clustering", *fashion10k(), 10, args)


def row_mnist(args):
    clustering_row("MNIST 10k clustering", *mnist10k(), 10, args)


def row_images(args):
    """The clusterer told the input is images (``image_shape``) vs UMAP(10) + k-means."""
    for label, (X, y), shape in (("Fashion-MNIST 10k", fashion10k(), (28, 28)),
                                 ("MNIST 10k", mnist10k(), (28, 28))):
        for seed in args.seeds:
            compare(
                f"{label} clustering with image_shape={shape}, seed {seed}",
                lambda r: DeepEmbeddingClusterer(
                    10, image_shape=shape, random_state=seed + r).fit_predict(X),
                lambda r: umap_kmeans(X, 10, seed + r),
                cluster_scores(y),
                args.repeats,
            )


def row_blobs(args):
    X, y = make_blobs(200_000, n_features=50, centers=10, random_state=0)
    clustering_row("200 000 x 50 blobs", StandardScaler().fit_transform(X), y, 10, args)


FIRST_FIT = """\
import sys, time
import numpy as np
from sklearn.ensemble import IsolationForest
from sk_deepunsup import AutoencoderOutlierDetector

X = np.load(sys.argv[1])
for name, make in (("ours", AutoencoderOutlierDetector), ("IsolationForest", IsolationForest)):
    seconds = []
    for seed in range(3):
        start = time.perf_counter()
        make(random_state=seed).fit(X)
        seconds.append(time.perf_counter() - start)
    print(f"{name} {seconds[0]:.2f} s, then {min(seconds[1:]):.2f} s", end="; ")
"""


def child_env():
    """This environment, with the project root first on PYTHONPATH (children import this checkout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.join(HERE, ".."), env.get("PYTHONPATH")) if p
    )
    return env


def row_shuttle(args):
    X, y = real("odds", "shuttle")
    keep = np.random.RandomState(0).choice(len(X), 20_000, replace=False)
    X, y = StandardScaler().fit_transform(X[keep]), y[keep]
    with tempfile.TemporaryDirectory() as folder:  # one-off costs: a fresh process's first fit
        np.save(os.path.join(folder, "X.npy"), X)
        first = subprocess.run([sys.executable, "-c", FIRST_FIT, os.path.join(folder, "X.npy")],
                               env=child_env(), capture_output=True, text=True)
    print(f"| ODDS shuttle, first fit in a fresh process | {first.stdout.strip() or first.stderr[-300:]}"
          f" | load {load():.1f} |", flush=True)
    for seed in args.seeds:
        compare(
            f"ODDS shuttle detector fit, seed {seed}",
            lambda r: AutoencoderOutlierDetector(random_state=seed + r).fit(X),
            lambda r: IsolationForest(random_state=seed + r).fit(X),
            lambda est: {"AUC": roc_auc_score(y, -est.score_samples(X))},
            args.repeats,
        )


def row_text(args):
    from sklearn.feature_extraction.text import TfidfVectorizer

    for name, corpus in (("20NG", lambda: real("newsgroups")), ("Reuters R8", lambda: real("reuters", "r8"))):
        try:
            texts, y = corpus()
        except Skipped as exc:
            print(f"| {name} | skipped: {exc} |", flush=True)
            continue
        y = np.asarray(y)
        k = len(np.unique(y))
        X = TfidfVectorizer(max_df=0.5, min_df=5, stop_words="english").fit_transform(texts)
        print(f"{name} TF-IDF {X.shape[0]} x {X.shape[1]}, {k} groups", flush=True)
        text_rows(name, X, y, k, args)


def text_rows(name, X, y, k, args):
    def lsa(seed):
        return make_pipeline(TruncatedSVD(100, random_state=seed), Normalizer()).fit_transform(X)

    def recipe(seed):
        return DeepEmbeddingClusterer(k, random_state=seed).fit_predict(lsa(seed))

    for seed in args.seeds:
        base, _, _ = timed(lambda: KMeans(k, n_init=10, random_state=seed).fit_predict(lsa(seed)))
        print(f"{name} LSA + k-means NMI {normalized_mutual_info_score(y, base):.3f}", flush=True)
        compare(
            f"{name} recipe vs LSA + UMAP + k-means, seed {seed}",
            lambda r: recipe(seed + r),
            lambda r: umap_kmeans(lsa(seed + r), k, seed + r),
            cluster_scores(y),
            args.repeats,
        )
        compare(
            f"{name} raw TF-IDF to the clusterer vs the recipe, seed {seed}",
            lambda r: DeepEmbeddingClusterer(k, random_state=seed + r).fit_predict(X),
            lambda r: recipe(seed + r),
            cluster_scores(y),
            args.repeats,
        )


def row_tables(args):
    for name, loader in (("iris", load_iris), ("wine", load_wine),
                         ("breast cancer", load_breast_cancer)):
        X, y = loader(return_X_y=True)
        X = StandardScaler().fit_transform(X)
        k = len(np.unique(y))
        for seed in (0, 1, 2):
            (ours, wall, _), (km, wall_km, _) = (
                timed(lambda: DeepEmbeddingClusterer(k, random_state=seed).fit_predict(X)),
                timed(lambda: KMeans(k, n_init=10, random_state=seed).fit_predict(X)),
            )
            a, b = normalized_mutual_info_score(y, ours), normalized_mutual_info_score(y, km)
            print(f"| {name} (standardised), seed {seed} | {wall:.1f} s | {wall_km:.2f} s | | | "
                  f"NMI {a:.3f} vs k-means {b:.3f} {'ok' if a >= b else 'BELOW'} |", flush=True)


PEER_SCRIPT = """\
import sys

import pandas as pd
import umap
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler

data, output, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
X = load_digits().data if data == "-" else pd.read_csv(data).to_numpy(dtype=float)
Z = umap.UMAP(n_components=10, random_state=seed).fit_transform(MinMaxScaler().fit_transform(X))
labels = KMeans(10, n_init=10, random_state=seed).fit_predict(Z)
pd.DataFrame({"row": range(len(labels)), "cluster": labels}).to_csv(output, index=False)
"""


def row_cli(args):
    if importlib.util.find_spec("umap") is None:
        raise Skipped("umap-learn is not installed")
    import pandas as pd

    digits = load_digits()
    env = child_env()
    with tempfile.TemporaryDirectory() as folder:
        data, script = os.path.join(folder, "digits.csv"), os.path.join(folder, "peer.py")
        labels = os.path.join(folder, "labels.csv")
        columns = [f"pixel{i}" for i in range(digits.data.shape[1])]
        pd.DataFrame(digits.data, columns=columns).to_csv(data, index=False)
        with open(script, "w") as fh:
            fh.write(PEER_SCRIPT)

        def run(command, read=True):
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
            return pd.read_csv(labels)["cluster"].to_numpy() if read else None

        def ours(source):
            given = [] if source == "-" else [source, "-k", "10"]
            return lambda r: run([sys.executable, "-m", "sk_deepunsup", "cluster", *given,
                                  "-o", labels, "-q", "--seed", str(r)])

        def peer(source):
            return lambda r: run([sys.executable, script, source, labels, str(r)])

        def quality(found):
            return {"NMI": normalized_mutual_info_score(digits.target, found)}

        for label, source in (("`sk-deepunsup cluster digits.csv -k 10`", data),
                              ("`sk-deepunsup cluster` (digits demo)", "-")):
            ours(source)(0), peer(source)(0)  # untimed: numba's cache, the disk cache
            compare(f"{label} vs UMAP + k-means script, whole processes", ours(source),
                    peer(source), quality, max(3, args.repeats), timer=timed_process)
        # the share of each side spent importing: the same imports, nothing run
        imports = {"ours": "import sk_deepunsup._cli",
                   "peer": "import pandas, umap, sklearn.cluster, sklearn.preprocessing"}
        compare("imports only (`python -c 'import ...'`), whole processes",
                lambda r: run([sys.executable, "-c", imports["ours"]], read=False),
                lambda r: run([sys.executable, "-c", imports["peer"]], read=False),
                lambda out: {}, max(3, args.repeats), timer=timed_process)


ROWS = {
    "map": row_map,
    "mnist_map": row_mnist_map,
    "fashion_map": row_fashion_map,
    "digits": row_digits,
    "fashion": row_fashion,
    "mnist": row_mnist,
    "images": row_images,
    "blobs": row_blobs,
    "shuttle": row_shuttle,
    "text": row_text,
    "tables": row_tables,
    "cli": row_cli,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--repeats", type=int, default=1,
                        help="fits of each side per seed, alternating which goes first; "
                             "repeat r runs seed + r, so --seeds 0 --repeats 3 gives the "
                             "mean over seeds 0-2")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {load():.2f}", flush=True)
    warm_up()
    print("| row | ours wall | peer wall | ratio | CPU time | quality (ours vs peer) | load |")
    print("|---|---:|---:|---:|---|---|---|")
    for name in args.rows:
        try:
            ROWS[name](args)
        except Skipped as exc:
            print(f"| {name} | skipped: {exc} |", flush=True)
    print(f"load average after {load():.2f}")


if __name__ == "__main__":
    main()

"""DeepEmbeddingClusterer's defaults as the data grow: time and quality.

    python benchmarks/bench_scale.py [--sizes 20000 200000]

Standardised blobs (50 features, 10 centres, ``cluster_std=4`` so that they
overlap), clustered by ``DeepEmbeddingClusterer(n_clusters=10,
random_state=0)`` with its defaults and by ``KMeans(10)``. Prints each fit's
time and NMI, the phases' settings, and the time ratio between the largest
and the smallest size (target: at most 12x for 10x the data, and at most 10
minutes at 200 000 rows, with NMI at least k-means' - 0.02).

Above 30 000 rows the default neighbour route finds neighbours with
pynndescent, whose numba code compiles on its first call in a process (tens
of seconds, once). The script compiles it first, on a small sample, and
prints that one-off time separately, as it warms up torch.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sk_deepunsup import DeepEmbeddingClusterer  # noqa: E402
from sk_deepunsup._neighbor_graph import nearest_neighbors  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    try:  # one-off compilation of pynndescent's numba code, and torch's warm-up
        start = time.perf_counter()
        warm = np.random.RandomState(0).normal(size=(2000, 50))
        nearest_neighbors(warm, 10, algorithm="nndescent", random_state=0)
        print(f"pynndescent's first call (numba compilation, once a process): "
              f"{time.perf_counter() - start:.1f} s")
    except ImportError:
        print("pynndescent is not installed: large fits use exact neighbour search")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DeepEmbeddingClusterer(3, random_state=0).fit(warm[:300])
    print("| rows | embedding epochs | DEC s | DEC epochs | DEC NMI | k-means s | "
          "k-means NMI |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    times = {}
    for n in args.sizes:
        X, y = make_blobs(n, n_features=50, centers=10, cluster_std=4.0, random_state=0)
        X = StandardScaler().fit_transform(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            dec = DeepEmbeddingClusterer(10, random_state=0, verbose=args.verbose).fit(X)
            times[n] = time.perf_counter() - start
        start = time.perf_counter()
        km = KMeans(10, n_init=10, random_state=0).fit(X)
        t_km = time.perf_counter() - start
        nmi = normalized_mutual_info_score(y, dec.labels_)
        nmi_km = normalized_mutual_info_score(y, km.labels_)
        print(f"| {n} | {dec.autoencoder_.n_iter_} | {times[n]:.1f} | {dec.n_iter_} | "
              f"{nmi:.3f} | {t_km:.1f} | {nmi_km:.3f} |", flush=True)
    small, large = min(times), max(times)
    if small != large:
        print(f"\ntime at {large} rows / time at {small} rows: "
              f"{times[large] / times[small]:.2f} (data ratio {large / small:.0f}); "
              f"log-log slope {math.log(times[large] / times[small]) / math.log(large / small):.2f}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""DeepEmbeddingClusterer's defaults as the data grow: time, peak memory and quality.

    python benchmarks/bench_scale.py                      # 50 000, 200 000, 1 000 000 rows
    python benchmarks/bench_scale.py --sizes 50000 200000
    python benchmarks/bench_scale.py --sizes 200000 --ranks 2   # under torchrun, 2 ranks x 1 thread

Standardised float32 blobs (50 features, 10 centres in a +-10 box,
``cluster_std=4``, as ``make_blobs`` draws them, generated in chunks), clustered by ``DeepEmbeddingClusterer(n_clusters=10,
random_state=0)`` with its defaults and by ``KMeans(10)``. Each size is fitted
in a fresh process, so its peak resident memory (``ru_maxrss``: the largest
resident set of the fit, data included) is that fit's alone; the input's own
size is printed beside it. Prints each fit's seconds, peak memory and NMI, and
the time ratio between the largest and the smallest size (targets: 200 000 ->
1 000 000 rows at most 5x the time, the 1M fit at most 1.5 GB resident, NMI at
least 0.99 at both sizes).

With ``--ranks 2`` the fit runs under ``torchrun --nproc-per-node 2`` (one
thread a rank); the peak is the largest rank's.

Above 30 000 rows the default neighbour route finds neighbours with faiss
when it is installed, else with pynndescent when it is (its numba code
compiles on the first call in a process, tens of seconds, billed to the
warm-up), else with the exact blocked search; each line names the search used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


def blobs(n, chunk=100_000):
    """``make_blobs``' distribution (10 centres in a +-10 box, ``cluster_std=4``, 50 features),
    drawn and standardised in float32 chunks: the data never exist in float64, so
    the peak memory measured is the fit's, not the generator's."""
    rng = np.random.RandomState(0)
    centers = rng.uniform(-10.0, 10.0, size=(10, 50))
    y = rng.randint(10, size=n)
    X = np.empty((n, 50), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        X[rows] = centers[y[rows]] + rng.normal(scale=4.0, size=(len(y[rows]), 50))
    mean = np.zeros(50)
    for start in range(0, n, chunk):
        mean += X[start:start + chunk].sum(axis=0, dtype=np.float64)
    mean /= n
    var = np.zeros(50)
    for start in range(0, n, chunk):
        var += np.square(X[start:start + chunk] - mean).sum(axis=0)
    scale = np.sqrt(var / n)
    for start in range(0, n, chunk):
        X[start:start + chunk] = (X[start:start + chunk] - mean) / scale
    return X, y


def worker(n, kmeans):
    """One fit in this process; prints one RESULT line (rank 0 under torchrun)."""
    import torch
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    from sk_deepunsup import DeepEmbeddingClusterer
    from sk_deepunsup._neighbor_graph import nearest_neighbors, resolve_algorithm

    X, y = blobs(n)
    warm = np.random.RandomState(0).normal(size=(2000, 50)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the search the fit will use, warmed (pynndescent's one-off compilation)
        algorithm = resolve_algorithm(n)
        if algorithm != "exact":
            nearest_neighbors(warm, 10, algorithm=algorithm, random_state=0)
        DeepEmbeddingClusterer(3, random_state=0).fit(warm[:300])
        start = time.perf_counter()
        dec = DeepEmbeddingClusterer(10, random_state=0).fit(X)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GB (Linux: kB)
    result = {
        "seconds": seconds, "peak_gb": peak, "nmi": normalized_mutual_info_score(y, dec.labels_),
        "input_gb": X.nbytes / 2**30, "epochs": [dec.autoencoder_.n_iter_, dec.n_iter_],
        "threads": torch.get_num_threads(), "search": algorithm,
    }
    if kmeans:
        start = time.perf_counter()
        km = KMeans(10, n_init=10, random_state=0).fit(X)
        result["kmeans_seconds"] = time.perf_counter() - start
        result["kmeans_nmi"] = normalized_mutual_info_score(y, km.labels_)
    peaks = [peak]
    if torch.distributed.is_initialized():
        from sk_deepunsup._nn import distributed

        peaks = distributed.all_values(peak)
        result["peak_gb"] = max(peaks)
        result["same_labels_on_ranks"] = len(set(distributed.all_values(
            float(dec.labels_.astype(np.int64) @ np.arange(n) % 1_000_003)))) == 1
    if int(os.environ.get("RANK", 0)) == 0:
        print("RESULT " + json.dumps(result), flush=True)


def run(n, ranks, kmeans, timeout):
    from bench_distributed import free_port  # the launcher's port, as bench_distributed's

    me = [os.path.abspath(__file__), "--worker", str(n)] + (["--kmeans"] if kmeans else [])
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
               "--master-port", str(free_port()), *me]
    else:
        cmd = [sys.executable, *me]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.join(HERE, ".."),
                                                      env.get("PYTHONPATH")]))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"the fit of {n} rows failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--kmeans", action="store_true", help="also time KMeans(10, n_init=10)")
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.kmeans)
    print(f"{os.cpu_count()} cores, {args.ranks} process(es); load average {os.getloadavg()}")
    print("| rows | input MB | embedding epochs | DEC epochs | seconds | peak RSS MB | NMI |"
          + (" k-means s | k-means NMI |" if args.kmeans else ""))
    print("|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.kmeans else ""))
    times = {}
    for n in args.sizes:
        r = run(n, args.ranks, args.kmeans, args.timeout)
        times[n] = r["seconds"]
        extra = f" {r['kmeans_seconds']:.1f} | {r['kmeans_nmi']:.3f} |" if args.kmeans else ""
        same = "" if "same_labels_on_ranks" not in r else (
            "  (same labels on every rank)" if r["same_labels_on_ranks"] else "  RANKS DIFFER")
        print(f"| {n} | {r['input_gb'] * 1024:.0f} | {r['epochs'][0]} | {r['epochs'][1]} | "
              f"{r['seconds']:.1f} | {r['peak_gb'] * 1024:.0f} | {r['nmi']:.3f} |{extra}{same}"
              f"  ({r['search']} search)",
              flush=True)
    small, large = min(times), max(times)
    if small != large:
        ratio = times[large] / times[small]
        print(f"\ntime at {large} rows / time at {small} rows: {ratio:.2f} "
              f"(data ratio {large / small:.0f}; log-log slope "
              f"{math.log(ratio) / math.log(large / small):.2f})")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()

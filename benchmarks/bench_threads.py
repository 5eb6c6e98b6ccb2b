"""Fitting on a busy machine: the default thread policy against fixed thread counts.

    python benchmarks/bench_threads.py [--repeats 3] [--loads 0 1 3]

A (500, 500) DeepAutoencoder fits scikit-learn's digits (min-max scaled) for
20 epochs with ``n_threads=None`` (the default: a count from the network's
size, never from timing), ``n_threads="adaptive"`` (timed), ``n_threads=1``
and ``n_threads=<all cores>``, while 0, 1 and 3 other processes keep cores
busy (each a Python loop spinning). Fits alternate between the settings, so
each setting sees the same load; the median of ``--repeats`` fits is shown,
and the default's and the adaptive policy's time as a multiple of the better
fixed setting.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
import warnings

import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import MinMaxScaler

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sk_deepunsup import DeepAutoencoder  # noqa: E402


def spin():  # a process that keeps one core busy
    while True:
        pass


def fit_seconds(X, n_threads):
    ae = DeepAutoencoder(
        n_components=10,
        hidden_layer_sizes=(500, 500),
        max_iter=20,
        tol=0.0,
        n_iter_no_change=1000,
        random_state=0,
        n_threads=n_threads,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        ae.fit(X)
        return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 3])
    args = parser.parse_args()
    cores = torch.get_num_threads()
    X = MinMaxScaler().fit_transform(load_digits().data)
    settings = {
        "default (None)": None,
        '"adaptive"': "adaptive",
        "1 thread": 1,
        f"{cores} threads": cores,
    }
    print(f"torch {torch.__version__}; {os.cpu_count()} cores; torch threads {cores}; "
          f"load average before {os.getloadavg()[0]:.2f}")
    fit_seconds(X[:200], None)  # warm up
    rows = []
    for load in args.loads:
        spinners = [mp.Process(target=spin, daemon=True) for _ in range(load)]
        for p in spinners:
            p.start()
        try:
            time.sleep(0.5)
            times = {name: [] for name in settings}
            for _ in range(args.repeats):
                for name, n in settings.items():
                    times[name].append(fit_seconds(X, n))
        finally:
            for p in spinners:
                p.terminate()
                p.join()
        med = {name: statistics.median(t) for name, t in times.items()}
        best_fixed = min(med[k] for k, n in settings.items() if isinstance(n, int))
        rows.append((load, med, med["default (None)"] / best_fixed, med['"adaptive"'] / best_fixed))
    names = list(settings)
    print()
    print("| busy processes | " + " | ".join(f"{n} s" for n in names)
          + ' | default / best fixed | "adaptive" / best fixed |')
    print("|---:|" + "---:|" * len(names) + "---:|---:|")
    for load, med, ratio, adaptive in rows:
        print(f"| {load} | " + " | ".join(f"{med[n]:.2f}" for n in names)
              + f" | {ratio:.2f} | {adaptive:.2f} |")
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

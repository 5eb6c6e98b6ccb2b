"""Same seed, same labels, whatever the load: the clusterer and the CLI, three runs per load.

    python benchmarks/bench_reproducibility.py [--loads 0 1 2] [--runs 3]

For each number of busy processes (each a Python loop spinning on a core),
fits ``DeepEmbeddingClusterer(n_clusters=3, random_state=0)`` on standardised
wine ``--runs`` times in this process, and runs
``sk-deepunsup cluster wine.csv -k 3 --seed 0`` as a whole process as many
times, then prints whether every run gave the same labels as the first run
of the first load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
from sk_deepunsup import DeepEmbeddingClusterer  # noqa: E402


def spin():  # keeps one core busy
    while True:
        pass


def cli_labels(csv_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-m", "sk_deepunsup", "cluster", csv_path, "-k", "3", "--seed", "0",
         "--quiet"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout
    return pd.read_csv(pd.io.common.StringIO(out)).iloc[:, -1].to_numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    X = StandardScaler().fit_transform(load_wine().data)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = os.path.join(tmp, "wine.csv")
        pd.DataFrame(load_wine().data, columns=load_wine().feature_names).to_csv(csv_path, index=False)
        print(f"load average before {os.getloadavg()[0]:.2f}")
        reference = {}
        print("| busy processes | clusterer runs identical | CLI runs identical | seconds |")
        print("|---:|:---:|:---:|---:|")
        for load in args.loads:
            spinners = [mp.Process(target=spin, daemon=True) for _ in range(load)]
            for p in spinners:
                p.start()
            try:
                start = time.perf_counter()
                same = {"clusterer": True, "cli": True}
                for _ in range(args.runs):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        labels = DeepEmbeddingClusterer(n_clusters=3, random_state=0).fit(X).labels_
                    same["clusterer"] &= np.array_equal(reference.setdefault("clusterer", labels), labels)
                    labels = cli_labels(csv_path)
                    same["cli"] &= np.array_equal(reference.setdefault("cli", labels), labels)
                seconds = time.perf_counter() - start
            finally:
                for p in spinners:
                    p.terminate()
                    p.join()
            print(f"| {load} | {'yes' if same['clusterer'] else 'NO'} | "
                  f"{'yes' if same['cli'] else 'NO'} | {seconds:.0f} |")
        print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

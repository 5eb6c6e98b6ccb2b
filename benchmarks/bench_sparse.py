"""Sparse and out-of-core training: memory and speed against a hand-written loop.

    python benchmarks/bench_sparse.py            # both cases
    python benchmarks/bench_sparse.py --case csr
    python benchmarks/bench_sparse.py --case memmap

csr: a synthetic CSR matrix, 100 000 x 50 000 with 50 non-zeros a row (20 GB
if dense). ``DeepAutoencoder(n_components=16, hidden_layer_sizes=(64,))``
trains one epoch; its peak anonymous memory is printed, and its epoch time
beside a hand-written torch loop that trains the same fitted ``module_`` on
the same batches, densified one at a time (scipy row slicing + ``toarray``),
with ``torch.optim.Adam``.

memmap: a numpy memmap of 1 000 000 x 100 float32 (400 MB on disk); the
growth of anonymous memory during ``fit`` (one epoch) is printed.

Memory is the process's ``RssAnon`` (/proc/self/status), sampled every 5 ms.
Times are the median of ``--repeats`` epochs each, alternated, in one process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sk_deepunsup import DeepAutoencoder  # noqa: E402


def rss_anon_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """Peak RssAnon while the block runs (sampled in a thread)."""

    def __enter__(self):
        self.start = rss_anon_mb()
        self.peak = self.start
        self._stop = threading.Event()

        def watch():
            while not self._stop.is_set():
                self.peak = max(self.peak, rss_anon_mb())
                time.sleep(0.005)

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_mb())


def synthetic_csr(n_rows, n_cols, nnz_per_row, seed=0):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n_cols, size=n_rows * nnz_per_row, dtype=np.int32)
    data = rng.random(n_rows * nnz_per_row, dtype=np.float32)
    indptr = np.arange(0, n_rows * nnz_per_row + 1, nnz_per_row, dtype=np.int64)
    return sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))


def hand_written_epoch(module, X, batch_size, seed):
    """The loop a user would write: permute, slice CSR rows, densify, step."""
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    module.train()
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(X.shape[0], generator=gen).numpy()
    start = time.perf_counter()
    for s in range(0, X.shape[0], batch_size):
        xb = torch.from_numpy(X[perm[s : s + batch_size]].toarray())
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(module(xb), xb)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def case_csr(repeats):
    n_rows, n_cols, nnz = 100_000, 50_000, 50
    X = synthetic_csr(n_rows, n_cols, nnz)
    print(f"csr: {n_rows} x {n_cols}, {nnz} non-zeros a row "
          f"({X.data.nbytes / 1e6 + X.indices.nbytes / 1e6:.0f} MB stored; "
          f"{n_rows * n_cols * 4 / 1e9:.0f} GB dense float32)")
    params = dict(n_components=16, hidden_layer_sizes=(64,), max_iter=1, random_state=0,
                  n_threads=torch.get_num_threads())
    ours, theirs = [], []
    peak = None
    ae = None
    for r in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                ae = DeepAutoencoder(**params).fit(X)
                ours.append(time.perf_counter() - t0)
        peak = mem.peak if peak is None else max(peak, mem.peak)
        theirs.append(hand_written_epoch(ae.module_, X, 256, seed=r))
        print(f"  repeat {r}: ours {ours[-1]:.1f} s (fit, 1 epoch), "
              f"hand-written loop {theirs[-1]:.1f} s")
    print(f"  peak anonymous memory during fit: {peak:.0f} MB (target < 3000 MB)")
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"  epoch time: ours {statistics.median(ours):.1f} s, hand-written "
          f"{statistics.median(theirs):.1f} s, ratio {ratio:.3f} (target <= 1.1)")


def case_memmap(repeats):
    n_rows, n_cols = 1_000_000, 100
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.f32")
        mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(n_rows, n_cols))
        rng = np.random.default_rng(0)
        for s in range(0, n_rows, 100_000):
            mm[s : s + 100_000] = rng.standard_normal((100_000, n_cols), dtype=np.float32)
        mm.flush()
        del mm
        X = np.memmap(path, dtype=np.float32, mode="r", shape=(n_rows, n_cols))
        print(f"memmap: {n_rows} x {n_cols} float32 ({X.nbytes / 1e6:.0f} MB on disk)")
        for r in range(repeats):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    DeepAutoencoder(n_components=8, hidden_layer_sizes=(64,), max_iter=1,
                                    random_state=r).fit(X)
                    elapsed = time.perf_counter() - t0
            print(f"  repeat {r}: fit (1 epoch) {elapsed:.1f} s, anonymous memory grew "
                  f"{mem.peak - mem.start:.0f} MB (target < 300 MB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["csr", "memmap", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    if args.case in ("memmap", "all"):
        case_memmap(args.repeats)
    if args.case in ("csr", "all"):
        case_csr(args.repeats)


if __name__ == "__main__":
    main()

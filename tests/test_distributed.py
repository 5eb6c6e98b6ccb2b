"""Data-parallel fits on torch.distributed: 2 CPU ranks (gloo) against one process.

Each test starts two ranks with ``torch.multiprocessing``, initialises a gloo
process group on a free local port, and bounds everything with timeouts, so a
bug shows as a failure and never as a hang. The ranks are forked from a
forkserver that imported the package once (a fresh interpreter with no
OpenMP pool, so forking is safe), which keeps the start-up to one import.
"""

import multiprocessing
import os
import signal
import socket
import time
from datetime import timedelta

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sk_deepunsup import (
    AutoencoderRecommender,
    DeepAutoencoder,
    DeepEmbeddingClusterer,
    NeighborEmbedding,
)
from sk_deepunsup._neighbor_graph import nearest_neighbors
from sk_deepunsup._nn import MLP, FlatAdam, TensorSource, Trainer, distributed

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)

WORLD = 2
TIMEOUT = 60  # seconds for a whole spawned job, start-up included


class CountingRows:
    """Row storage that counts the rows read (a stand-in for a memmap, h5py or zarr)."""

    def __init__(self, array, fail_after=None):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim
        self.rows_read = 0
        self.fail_after = fail_after

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        block = self.array[key]
        self.rows_read += block.shape[0] if block.ndim == 2 else 1
        if self.fail_after is not None and self.rows_read > self.fail_after:
            raise OSError("disk read failed on this rank")
        return block


class KilledRows(CountingRows):
    """Kills its own process (as the OOM killer would) instead of raising."""

    def __getitem__(self, key):
        if self.rows_read > self.fail_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(key)


def blobs(n=240, d=6, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=4.0, size=(3, d))
    X = centres[rng.randint(3, size=n)] + rng.normal(size=(n, d))
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32)


def histories(n=120, items=30, seed=0):
    rng = np.random.RandomState(seed)
    taste = rng.randint(2, size=n)
    p = np.where(taste[:, None] == 1, np.linspace(0.6, 0.05, items), np.linspace(0.05, 0.6, items))
    return (rng.uniform(size=(n, items)) < p).astype(np.float32)


def autoencoder(**kw):
    params = dict(
        hidden_layer_sizes=(16,), n_components=2, max_iter=6, batch_size=32,
        random_state=0, n_threads=1,
    )
    return DeepAutoencoder(**{**params, **kw})


def clusterer():
    return DeepEmbeddingClusterer(
        3, autoencoder=autoencoder(), max_iter=4, batch_size=32, n_init=3,
        update_interval=1.0, random_state=0, n_threads=1,
    )


def recommender():
    return AutoencoderRecommender(
        n_components=4, hidden_layer_sizes=(16,), max_iter=8, batch_size=16,
        n_anneal_epochs=4, early_stopping=True, n_iter_no_change=50,
        random_state=0, n_threads=1,
    )


def fitted_state(X, R):
    """What each rank (and the single process) reports: weights and fitted attributes."""
    ae = autoencoder().fit(X)
    streamed = CountingRows(X)
    ae_streamed = autoencoder().fit(streamed)
    ae_sparse = autoencoder().fit(sp.csr_matrix(X))
    dec = clusterer().fit(X)
    dec_streamed = CountingRows(X)
    clusterer().fit(dec_streamed)
    rec = recommender().fit(R)
    ne = NeighborEmbedding(
        n_neighbors=8, hidden_layer_sizes=(16,), batch_size=256, max_iter=4,
        random_state=0, n_threads=1,
    ).fit(X)

    def flat(module):
        return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy()

    # ties and duplicates: the neighbours must come in index order on every route
    ties = np.repeat(np.round(X[:60], 1), 2, axis=0)
    knn_idx, knn_dist = nearest_neighbors(ties, 5, algorithm="exact")
    return {
        "knn_idx": knn_idx,
        "knn_dist": knn_dist,
        "auto_batch": np.array(autoencoder(batch_size="auto")._resolve_batch_size(10_000)),
        "dec_auto_batch": np.array(DeepEmbeddingClusterer(3)._resolve_batch_size(10_000)),
        **bucketed_gradients(),
        **step_modes(X),
        "ae": flat(ae.module_),
        "ae_loss": np.array(ae.loss_curve_),
        "ae_streamed": flat(ae_streamed.module_),
        "ae_sparse": flat(ae_sparse.module_),
        "rows_read": np.array(streamed.rows_read),
        "dec_rows_read": np.array(dec_streamed.rows_read),
        "dec_centers": dec.cluster_centers_,
        "dec_labels": dec.labels_,
        "dec_changes": np.array(dec.label_changes_),
        "dec_encoder": flat(dec.autoencoder_.module_),
        "rec": flat(rec.module_),
        "rec_val": np.array(rec.validation_loss_curve_),
        "rec_loss": np.array(rec.loss_curve_),
        "rec_n_iter": np.array(rec.n_iter_),
        "ne": flat(ne.module_),
        "ne_loss": np.array(ne.loss_curve_),
    }


def step_modes(X):
    """Whether the engine replicates a small network's steps and splits a large one's."""
    def loss(module, x):
        return (module(x) - x).square().mean()

    x = torch.from_numpy(X)
    modes = {}
    for name, sizes, batch in (("small", [6, 16, 6], 32), ("large", [6, 1024, 1024, 6], 64)):
        trainer = Trainer(MLP(sizes), loss, batch_size=batch, max_iter=1, n_threads=1)
        trainer.fit(TensorSource(x))
        modes[f"replicated_{name}"] = np.array(trainer.replicated)
    return modes


def bucketed_gradients():
    """The gradient the bucketed, overlapped reduction gives, and the flat sum it must equal.

    Each rank trains on its own rows; one parameter is never reached by the
    loss (its bucket is launched when the step finishes). Empty without a
    process group.
    """
    torch.manual_seed(0)
    # the fused MLP writes .grad itself (it reports each layer); the Linear goes through autograd
    net = torch.nn.Sequential(MLP([6, 32, 16], "tanh"), torch.nn.Tanh(), torch.nn.Linear(16, 6))
    unused = torch.nn.Parameter(torch.ones(3, 4))
    opt = FlatAdam([*net.parameters(), unused])
    x = torch.from_numpy(blobs()[distributed.rank()::max(1, distributed.world_size())])
    weight = x.shape[0] / 240
    if not distributed.is_active():
        return {}
    reducer = distributed.GradientReducer(opt.params, opt.grad, bucket_bytes=64)
    for _ in range(2):  # the first step learns how the buckets fill; the second overlaps
        opt.zero_grad()
        reducer.begin(weight)
        (net(x) - x).square().mean().backward()
        early = reducer.launched
        reducer.finish()
    bucketed, unused_grad = opt.grad.clone(), unused.grad.clone()
    reducer.remove()
    opt.zero_grad()
    (net(x) - x).square().mean().backward()  # no hooks now: one flat all-reduce
    opt.grad.mul_(weight)
    distributed.all_sum_(opt.grad)
    return {"grad_bucketed": bucketed.numpy(), "grad_flat": opt.grad.numpy().copy(),
            "n_buckets": np.array(len(reducer.buckets)), "unused_grad": unused_grad.numpy(),
            "launched_during_backward": np.array(early)}


def _worker(rank, port, out_dir, scenario):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=TIMEOUT)
    )
    X, R = blobs(), histories()
    if scenario == "fit":
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **fitted_state(X, R))
    else:  # rank 1 fails in its second epoch; rank 0 would train for long
        failing = KilledRows if scenario == "kill" else CountingRows
        data = failing(X, fail_after=300) if rank == 1 else CountingRows(X)
        autoencoder(max_iter=10_000, n_iter_no_change=10_000).fit(data)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(scenario, out_dir):
    """Run the ranks; returns (seconds, the exception that ended the job or None)."""
    multiprocessing.set_forkserver_preload(["sk_deepunsup", "torch.distributed"])
    start = time.monotonic()
    context = mp.start_processes(
        _worker, args=(free_port(), str(out_dir), scenario), nprocs=WORLD,
        join=False, start_method="forkserver",
    )
    error = None
    try:
        while not context.join(timeout=1):
            if time.monotonic() - start > TIMEOUT:
                raise AssertionError(f"the ranks did not end within {TIMEOUT} s")
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
        error = exc
    finally:
        for p in context.processes:
            if p.is_alive():
                p.kill()
    return time.monotonic() - start, error


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    _, error = spawn("fit", out)
    assert error is None, error
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single():
    torch.set_num_threads(1)
    return fitted_state(blobs(), histories())


def test_every_rank_ends_with_the_same_fit(ranks):
    for key, value in ranks[0].items():
        if "rows_read" not in key:
            np.testing.assert_array_equal(value, ranks[1][key], err_msg=key)


def test_matches_single_process_with_the_same_global_batch(ranks, single):
    rank = ranks[0]
    for key in ("ae", "ae_streamed", "ae_sparse", "ae_loss", "dec_encoder", "dec_centers"):
        np.testing.assert_allclose(rank[key], single[key], atol=1e-4, err_msg=key)
    np.testing.assert_array_equal(rank["dec_labels"], single["dec_labels"])
    np.testing.assert_allclose(rank["dec_changes"], single["dec_changes"], atol=1e-9)
    # the same data, stored either way, trains the same
    np.testing.assert_allclose(rank["ae"], rank["ae_streamed"], atol=1e-5)
    np.testing.assert_allclose(rank["ae"], rank["ae_sparse"], atol=1e-5)


def test_each_rank_searches_its_rows_and_gets_the_single_process_graph(ranks, single):
    # exact search of each rank's share, gathered: the same lists, ties in index order
    for rank in ranks:
        np.testing.assert_array_equal(rank["knn_idx"], single["knn_idx"])
        np.testing.assert_array_equal(rank["knn_dist"], single["knn_dist"])
    assert single["knn_idx"].dtype == ranks[0]["knn_idx"].dtype


def test_bucketed_overlapped_reduction_sums_as_one_all_reduce(ranks):
    for rank in ranks:
        assert rank["n_buckets"] >= 4
        # the fused MLP's backward reports each layer: buckets leave before it ends
        assert rank["launched_during_backward"] >= 2
        np.testing.assert_array_equal(rank["grad_bucketed"], rank["grad_flat"])
    # the never-reached parameter's bucket was reduced too (zeros, not garbage)
    np.testing.assert_array_equal(ranks[0]["unused_grad"], 0.0)


def test_auto_batch_is_per_rank_for_epoch_budgets(ranks, single):
    assert single["auto_batch"] == 256
    assert ranks[0]["auto_batch"] == 256 * WORLD
    # the clusterer's refinement stops after a number of steps: its batch stays global
    assert ranks[0]["dec_auto_batch"] == single["dec_auto_batch"]


def test_small_steps_are_replicated_and_large_ones_split(ranks, single):
    # 3 x 192 weights x 32 rows: an all-reduce would cost more than the step
    assert ranks[0]["replicated_small"] and not ranks[0]["replicated_large"]
    assert not single["replicated_small"]  # one process: nothing to replicate


def test_threads_per_rank_share_the_machine(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert distributed.threads_per_rank(8) == 4
    assert distributed.threads_per_rank(2) == 1
    assert distributed.threads_per_rank(1) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert distributed.threads_per_rank(8) == 8


def test_noisy_fits_match_single_process_quality(ranks, single):
    # VAE samples and negative samples come from a stream per rank, so only
    # the quality can match: the same losses within a few percent
    rank = ranks[0]
    np.testing.assert_allclose(rank["ne_loss"][-1], single["ne_loss"][-1], rtol=0.05)
    assert rank["rec_n_iter"] == single["rec_n_iter"] == 8
    assert len(rank["rec_val"]) == 8
    assert rank["rec_val"][-1] < rank["rec_val"][0]
    np.testing.assert_allclose(rank["rec_val"], single["rec_val"], rtol=0.05)


def test_each_rank_reads_only_its_share_of_streamed_rows(ranks, single):
    # value check + 6 epochs, each rank its half; plus the 2 rows validation peeks at
    n, epochs = 240, 6
    assert single["rows_read"] == (epochs + 1) * n + 2
    # DEC: pretraining, the k-means embedding, every refresh of Q, the
    # refinement's batches and labels_: all halved; validation peeks twice
    assert single["dec_rows_read"] > 15 * n
    for rank in ranks:
        assert rank["rows_read"] == (epochs + 1) * n // WORLD + 2
        assert rank["dec_rows_read"] == (single["dec_rows_read"] - 4) // WORLD + 4


@pytest.mark.parametrize("scenario", ["raise", "kill"])
def test_a_failing_rank_ends_the_job(scenario, tmp_path):
    seconds, error = spawn(scenario, tmp_path)
    assert error is not None
    assert error.error_index == 1
    if scenario == "raise":
        assert "disk read failed on this rank" in str(error)
    assert seconds < TIMEOUT


def test_share_splits_rows_like_array_split():
    for n in (0, 1, 5, 240, 241):
        for parts in (1, 2, 3):
            got = [distributed.share(n, p, parts) for p in range(parts)]
            want = np.array_split(np.arange(n), parts)
            assert [hi - lo for lo, hi in got] == [len(w) for w in want]
            assert got[0][0] == 0 and got[-1][1] == n


def test_not_distributed_without_a_process_group():
    assert not dist.is_initialized()
    assert distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.broadcast_object("x") == "x"

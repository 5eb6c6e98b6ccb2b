"""
Train an autoencoder data-parallel on a file no process loads whole; save it once
=================================================================================

Run it with torch's launcher, one process per GPU (or a few on the CPU)::

    torchrun --nproc-per-node 2 examples/train_distributed.py

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``. The script itself is ordinary
scikit-learn code: ``fit`` finds the process group and trains data-parallel
(each rank reads only its share of every batch from the memory-mapped file,
the gradients are summed over the ranks, every rank ends with the same
model); ``save`` writes the file on rank 0 only. Here the process group is
initialised explicitly, to let rank 0 write the demo data while the others
wait (``fit`` would initialise it from the launcher's environment by itself).

The demo data: ``--n-samples`` rows of 64 float32 features (a noisy
5-dimensional manifold), written once to ``--data`` as a ``.npy`` file and
opened with ``mmap_mode="r"``. Above 256 MB a memory map is streamed batch by
batch instead of loaded, so the default (1.2 M rows, 307 MB) shows the
streamed path. On 2 busy CPU cores an epoch of the default takes about 20 s
with 2 ranks; try ``--n-samples 300000`` for a quicker look (then each rank loads
the 77 MB whole, as a single process would).

This example is not run when the documentation is built: it needs a
``torchrun`` launch of several processes.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch.distributed as dist

from sk_deepunsup import DeepAutoencoder, load, save


def make_data(path, n_samples, n_features=64, seed=0):
    """A noisy 5-dimensional manifold in 64 dimensions, written in blocks."""
    rng = np.random.RandomState(seed)
    mixing = rng.normal(size=(5, n_features)).astype(np.float32)
    out = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(n_samples, n_features)
    )
    for start in range(0, n_samples, 100_000):
        stop = min(start + 100_000, n_samples)
        latent = rng.uniform(-1, 1, size=(stop - start, 5)).astype(np.float32)
        noise = 0.05 * rng.normal(size=(stop - start, n_features))
        out[start:stop] = np.tanh(latent @ mixing) + noise
    out.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, default=1_200_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512, help="global batch (all ranks)")
    parser.add_argument(
        "--data", default=os.path.join(tempfile.gettempdir(), "skdu_distributed_demo.npy")
    )
    parser.add_argument("--out", default="autoencoder_distributed.skdu")
    args = parser.parse_args()

    dist.init_process_group("gloo")  # the launcher's environment says where and who
    rank, world = dist.get_rank(), dist.get_world_size()
    if rank == 0:
        ready = os.path.exists(args.data)
        if not ready or np.load(args.data, mmap_mode="r").shape[0] != args.n_samples:
            make_data(args.data, args.n_samples)
    dist.barrier()  # the file is complete before any rank opens it

    X = np.load(args.data, mmap_mode="r")
    model = DeepAutoencoder(
        hidden_layer_sizes=(128, 64),
        n_components=5,
        batch_size=args.batch_size,
        max_iter=args.epochs,
        random_state=0,
        n_threads=1,
        verbose=rank == 0,
    )
    start = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - start
    if rank == 0:
        print(
            f"{world} ranks trained {args.epochs} epochs on {X.shape[0]} x {X.shape[1]} "
            f"({X.nbytes / 1e6:.0f} MB memory-mapped) in {seconds:.1f} s; "
            f"loss per epoch {np.round(model.loss_curve_, 5).tolist()}"
        )
    save(model, args.out)  # every rank calls it; rank 0 writes
    dist.barrier()
    if rank == 0:
        again = load(args.out)
        same = np.array_equal(again.transform(X[:1000]), model.transform(X[:1000]))
        print(f"saved to {args.out} once; reloaded model gives the same codes: {same}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Batch sources: where the engine's batches and inference chunks come from.

A source holds the rows of a data set and serves them as dense tensors on one
device, in the order the engine asks for:

- :class:`TensorSource`: tensors already on the device (the fast path for data
  that fits in memory);
- :class:`SparseRowSource`: a CSR matrix kept on the host; each batch is
  gathered alone and densified on the device, so a 100 000 x 50 000 TF-IDF
  matrix trains in the memory of its non-zeros;
- :class:`StreamedRowSource`: anything row-sliceable that need not fit in
  memory (a numpy memmap, an h5py dataset, a zarr array), read batch by batch.

Every source shuffles with the same permutation, drawn from the engine's
generator, so a fit is reproducible and the same data trains identically
whichever way it is stored.

Data-parallel training (:mod:`.distributed`) passes ``part=(rank,
world_size)``: every rank draws the same permutation and the same global
batches, and serves only its contiguous share of each (so a rank of a
streamed source reads only its rows of the file); every rank gets the same
number of batches, some possibly empty.

Nothing here imports scikit-learn.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from . import distributed

__all__ = [
    "BatchSource",
    "SparseRowSource",
    "StreamedRowSource",
    "TensorSource",
    "batch_bounds",
    "chunk_rows",
    "local_bounds",
]

#: Elements (rows x features) of one inference chunk or host-read block: about
#: 64 MB in float32, so wide sparse data is never densified whole.
CHUNK_ELEMENTS = 1 << 24


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each batch; a trailing batch of one is merged."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        # A batch of one breaks batch norm and gives a noisy step: merge it.
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def local_bounds(
    n: int, batch_size: int, part: tuple[int, int] = (0, 1)
) -> list[tuple[int, int]]:
    """Rank ``part[0]``'s ``[start, stop)`` within each global batch of :func:`batch_bounds`."""
    rank, world = part
    if world == 1:
        return batch_bounds(n, batch_size)
    out = []
    for start, stop in batch_bounds(n, batch_size):
        lo, hi = distributed.share(stop - start, rank, world)
        out.append((start + lo, start + hi))
    return out


def chunk_rows(n_features: int, limit: int = 8192) -> int:
    """Rows per inference chunk: at most ``limit``, and about 64 MB dense."""
    return max(1, min(limit, CHUNK_ELEMENTS // max(1, n_features)))


def _host_index(index) -> np.ndarray:
    """Row indices as an int64 numpy array (from a tensor on any device, too)."""
    if isinstance(index, torch.Tensor):
        index = index.cpu().numpy()
    return np.asarray(index, dtype=np.int64)


class BatchSource:
    """The rows of a data set, served as dense tensors on ``device``.

    Subclasses implement :meth:`rows` (any rows, as a tensor) and
    :meth:`subset`; the batching and chunking logic is shared.

    Attributes
    ----------
    n_samples, n_features : int
    device : torch.device
        Where batches are delivered.
    dtype : torch.dtype
        Their dtype.
    """

    n_samples: int
    n_features: int
    device: torch.device
    dtype: torch.dtype

    def __len__(self) -> int:
        return self.n_samples

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_samples, self.n_features)

    def rows(self, index) -> torch.Tensor:
        """The rows ``index`` (int array or tensor, any order) as one dense tensor."""
        raise NotImplementedError

    def subset(self, index: np.ndarray) -> BatchSource:
        """A source over the rows ``index`` of this one."""
        raise NotImplementedError

    def slice(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop``, in order."""
        return self.rows(np.arange(start, stop))

    def permutation(self, generator: torch.Generator | None) -> torch.Tensor:
        """This epoch's order; the same draw for every kind of source."""
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randperm(self.n_samples, generator=generator, device=device)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        with_index: bool = False,
        part: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """One epoch of ``(x,)`` or ``(x, row_index)`` mini-batches.

        The permutation is drawn when this is called. ``part=(rank,
        world_size)`` serves that rank's share of each global batch of
        ``batch_size`` rows.
        """
        bounds = local_bounds(self.n_samples, batch_size, part)
        order = self.permutation(generator) if shuffle else None
        return self._batches(bounds, order, with_index)

    def _batches(self, bounds, order, with_index):
        if order is not None:
            host = order.cpu().numpy()
            order = order.to(self.device)
            for start, stop in bounds:
                x = self.rows(host[start:stop])
                yield (x, order[start:stop]) if with_index else (x,)
        else:
            for start, stop in bounds:
                x = self.slice(start, stop)
                if with_index:
                    yield x, torch.arange(start, stop, device=self.device)
                else:
                    yield (x,)

    def chunks(
        self, chunk_size: int | None = None, *, part: tuple[int, int] = (0, 1)
    ) -> Iterator[torch.Tensor]:
        """All rows in order, ``chunk_size`` at a time (default: about 64 MB).

        ``part=(rank, world_size)``: only that rank's contiguous share.
        """
        size = chunk_size or chunk_rows(self.n_features)
        lo, hi = distributed.share(self.n_samples, *part)
        for start in range(lo, hi, size):
            yield self.slice(start, min(start + size, hi))

    def value_range(self) -> tuple[float, float]:
        """Smallest and largest value (NaN if any value is NaN), read in chunks.

        Under data-parallel training each rank reads its share (a collective).
        """
        lo, hi = np.inf, -np.inf
        for chunk in self.chunks(part=(distributed.rank(), distributed.world_size())):
            # torch's min/max propagate NaN; Python's min/max would drop it
            chunk_lo, chunk_hi = float(chunk.min()), float(chunk.max())
            if np.isnan(chunk_lo) or np.isnan(chunk_hi):
                lo = hi = np.nan
                break
            lo, hi = min(lo, chunk_lo), max(hi, chunk_hi)
        if distributed.is_active():
            los, his = distributed.all_values(lo), distributed.all_values(hi)
            if np.isnan(los + his).any():
                return np.nan, np.nan
            lo, hi = min(los), max(his)
        return lo, hi


class TensorSource(BatchSource):
    """In-memory tensors on the device: permuted whole once an epoch, then sliced.

    ``extra`` tensors (same first dimension) are carried along in each batch,
    after ``x`` (and before the row index).
    """

    def __init__(self, x: torch.Tensor, *extra: torch.Tensor):
        self.x = x
        self.extra = extra
        self.n_samples, self.n_features = int(x.shape[0]), int(np.prod(x.shape[1:]))
        self.device = x.device
        self.dtype = x.dtype

    def rows(self, index):
        return self.x[torch.as_tensor(index, device=self.device)]

    def slice(self, start, stop):
        return self.x[start:stop]

    def subset(self, index):
        index = torch.as_tensor(index, device=self.device)
        return TensorSource(self.x[index], *(t[index] for t in self.extra))

    def batches(
        self, batch_size, *, shuffle=False, generator=None, with_index=False, part=(0, 1)
    ):
        order = self.permutation(generator).to(self.device) if shuffle else None
        if part[1] > 1:  # a share of each batch: gather only those rows
            return self._shares(local_bounds(self.n_samples, batch_size, part), order, with_index)
        return self._whole(batch_size, order, with_index)

    def _whole(self, batch_size, order, with_index):
        data = (self.x, *self.extra)
        if order is not None:
            data = tuple(t[order] for t in data)
        for start, stop in batch_bounds(self.n_samples, batch_size):
            batch = tuple(t[start:stop] for t in data)
            if with_index:
                index = (
                    order[start:stop]
                    if order is not None
                    else torch.arange(start, stop, device=self.device)
                )
                batch = (*batch, index)
            yield batch

    def _shares(self, bounds, order, with_index):
        for start, stop in bounds:
            index = (
                order[start:stop]
                if order is not None
                else torch.arange(start, stop, device=self.device)
            )
            batch = tuple(t[index] for t in (self.x, *self.extra))
            yield (*batch, index) if with_index else batch

    def value_range(self):
        if self.x.numel() == 0:
            return np.inf, -np.inf
        return float(self.x.min()), float(self.x.max())


class SparseRowSource(BatchSource):
    """A CSR matrix on the host; each batch is gathered and densified on the device.

    Parameters
    ----------
    indptr, indices, data : numpy arrays
        The CSR arrays (as scipy's ``csr_matrix`` has them; duplicates are
        summed, indices need not be sorted). They are read, never written.
    n_features : int
    device : torch.device
    dtype : torch.dtype
    """

    def __init__(self, indptr, indices, data, n_features, device, dtype=torch.float32):
        self.indptr = np.asarray(indptr)
        self.indices = np.asarray(indices)
        self.data = np.asarray(data)
        self.n_samples = len(self.indptr) - 1
        self.n_features = int(n_features)
        self.device = torch.device(device)
        self.dtype = dtype

    @classmethod
    def from_csr(cls, matrix, device, dtype=torch.float32):
        """From a scipy CSR matrix or array (not copied)."""
        return cls(matrix.indptr, matrix.indices, matrix.data, matrix.shape[1], device, dtype)

    def _gather(self, index: np.ndarray):
        """CSR arrays of the rows ``index``: ``(lengths, positions)`` into indices/data."""
        starts = self.indptr[index]
        lengths = self.indptr[index + 1] - starts
        total = int(lengths.sum())
        # positions of each row's non-zeros, concatenated in index order
        shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        return lengths, shift + np.arange(total, dtype=shift.dtype)

    def rows(self, index):
        index = _host_index(index)
        lengths, positions = self._gather(index)
        row = np.repeat(np.arange(len(index)), lengths)
        return self._densify(len(index), row, self.indices[positions], self.data[positions])

    def slice(self, start, stop):
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        lengths = np.diff(self.indptr[start : stop + 1])
        row = np.repeat(np.arange(stop - start), lengths)
        return self._densify(stop - start, row, self.indices[lo:hi], self.data[lo:hi])

    def _densify(self, n_rows, row, col, val):
        dev = self.device
        if dev.type == "cpu":
            # numpy's zeros come from calloc: fresh pages the kernel zeroes
            # lazily, where torch.zeros would write the whole (wide) batch
            np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
            out = torch.from_numpy(np.zeros((n_rows, self.n_features), dtype=np_dtype))
        else:
            out = torch.zeros((n_rows, self.n_features), dtype=self.dtype, device=dev)
        if len(val):
            values = torch.from_numpy(np.ascontiguousarray(val)).to(dev, self.dtype)
            at = (
                torch.from_numpy(row).to(dev, non_blocking=True),
                torch.from_numpy(col.astype(np.int64, copy=False)).to(dev, non_blocking=True),
            )
            out.index_put_(at, values, accumulate=True)
        return out

    def subset(self, index):
        index = np.asarray(index, dtype=np.int64)
        lengths, positions = self._gather(index)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        return SparseRowSource(
            indptr,
            self.indices[positions],
            self.data[positions],
            self.n_features,
            self.device,
            self.dtype,
        )

    def value_range(self):
        # implicit zeros count when some row has fewer non-zeros than features
        has_zero = len(self.data) < self.n_samples * self.n_features
        values = self.data
        lo = float(values.min()) if len(values) else 0.0
        hi = float(values.max()) if len(values) else 0.0
        if np.isnan(lo) or np.isnan(hi):
            return np.nan, np.nan
        if has_zero:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        return lo, hi


class StreamedRowSource(BatchSource):
    """Rows read on demand from anything sliceable by rows; never copied whole.

    ``array[i:j]`` and ``array[sorted_int_array]`` must return the rows (numpy
    memmaps, h5py datasets and zarr arrays do). Shuffled batches read their
    rows in increasing order (which h5py requires and disks prefer) and put
    them back in the permutation's order.

    Parameters
    ----------
    array : row-sliceable, 2-D
    device : torch.device
    dtype : torch.dtype
    index : int array, optional
        Serve only these rows of ``array`` (a subset without a copy).
    """

    def __init__(self, array, device, dtype=torch.float32, index=None):
        self.array = array
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        self.n_samples = int(array.shape[0] if index is None else len(self.index))
        self.n_features = int(np.prod(array.shape[1:]))
        self.device = torch.device(device)
        self.dtype = dtype
        self._np_dtype = np.float64 if dtype == torch.float64 else np.float32

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """``array[rows]`` for increasing ``rows``, as a 2-D float array."""
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):  # contiguous
            block = self.array[int(rows[0]) : int(rows[-1]) + 1]
        else:
            block = self.array[rows]
        return np.asarray(block).reshape(len(rows), -1)

    def rows(self, index):
        index = _host_index(index)
        wanted = index if self.index is None else self.index[index]
        order = np.argsort(wanted, kind="stable")
        block = self._read(wanted[order])
        out = np.empty((len(index), self.n_features), dtype=self._np_dtype)
        out[order] = block
        return torch.from_numpy(out).to(self.device)

    def slice(self, start, stop):
        if self.index is not None:
            return self.rows(np.arange(start, stop))
        # a copy: the tensor must not alias the caller's (possibly writable) file
        block = np.array(self._read(np.arange(start, stop)), dtype=self._np_dtype, order="C")
        return torch.from_numpy(block).to(self.device)

    def subset(self, index):
        index = np.asarray(index, dtype=np.int64)
        parent = index if self.index is None else self.index[index]
        return StreamedRowSource(self.array, self.device, self.dtype, index=parent)

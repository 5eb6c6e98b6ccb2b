"""Where validated arrays become tensors: batch sources for training, chunked inference."""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ._nn import (
    BatchSource,
    SparseRowSource,
    StreamedRowSource,
    TensorSource,
    ThreadPolicy,
    chunk_rows,
)
from ._validation import data_dtype, is_streamed, non_finite_error

#: Rows per chunk at inference (fewer for wide data); results do not depend on it.
INFERENCE_CHUNK = 8192


def to_tensor(X: np.ndarray, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """Validated array -> tensor on ``device``; never writes to ``X``."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    arr = np.ascontiguousarray(X, dtype=np_dtype)
    if not arr.flags.writeable:  # torch.from_numpy warns on read-only memory
        arr = arr.copy()
    return torch.from_numpy(arr).to(device)


def make_source(X, device: torch.device, dtype=torch.float32, *, training: bool) -> BatchSource:
    """The batch source for validated X.

    Dense data for training is copied to ``device`` whole (the fast path);
    dense data for inference, sparse data and streamed data are read chunk
    by chunk, so nothing but a chunk is ever densified.
    """
    if sp.issparse(X):
        return SparseRowSource.from_csr(X, device, dtype)
    if training and not is_streamed(X):
        return TensorSource(to_tensor(X, device, dtype))
    return StreamedRowSource(X, device, dtype)


def inference_dtype(X, device: torch.device) -> torch.dtype:
    """float64 for float64 input on the CPU, else float32.

    Training is float32. On the CPU, float64 input is run through a float64
    copy of the network so that a row's output does not depend on which other
    rows share its batch (float32 matrix products change with the batch shape).
    """
    if data_dtype(X) == np.float64 and device.type == "cpu":
        return torch.float64
    return torch.float32


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def infer(module: nn.Module, X, forward, n_threads: int | None = None) -> np.ndarray:
    """``forward(module, batch)`` over X in chunks; a numpy array of X's dtype.

    X is a validated dense array, a CSR matrix or streamed storage; each chunk
    is densified alone. ``forward`` may return one tensor or a tuple of
    tensors (then a tuple of arrays is returned). ``n_threads`` as in
    :class:`~._nn.ThreadPolicy` (torch's setting is restored afterwards).
    """
    device = module_device(module)
    dtype = inference_dtype(X, device)
    if dtype != next(module.parameters()).dtype:
        module = copy.deepcopy(module).to(dtype)
    module.eval()
    source = make_source(X, device, dtype, training=False)
    check_chunks = is_streamed(X)
    out_dtype = data_dtype(X)
    outs = []
    rows = chunk_rows(source.n_features, INFERENCE_CHUNK)
    policy = ThreadPolicy(
        n_threads if device.type == "cpu" else torch.get_num_threads(),
        module=module,
        rows=min(rows, source.n_samples),
        n_features=source.n_features,
        training=False,
    )
    with policy, torch.inference_mode():
        for xb in source.chunks(rows):
            if check_chunks and not bool(torch.isfinite(xb).all()):
                raise non_finite_error()
            with policy.step():
                out = forward(module, xb)
            outs.append(out if isinstance(out, tuple) else (out,))
    results = tuple(
        torch.cat([o[i] for o in outs]).cpu().numpy().astype(out_dtype, copy=False)
        for i in range(len(outs[0]))
    )
    return results if len(results) > 1 else results[0]

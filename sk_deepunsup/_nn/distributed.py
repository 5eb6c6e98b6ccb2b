"""Data-parallel training on ``torch.distributed``: who this process is, and the reductions.

When ``fit`` runs inside a ``torch.distributed`` process group of more than
one process (started by ``torchrun``, SLURM or any launcher that sets
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; or initialised
by the user), the engine (:mod:`.training`) trains data-parallel: every rank
draws the same permutation, reads only its share of each global batch, and
the gradients are summed across ranks before every optimiser step, so every
rank takes the same step and ends with the same weights. Without a process
group nothing here communicates and training is exactly single-process.

A launcher's environment without an initialised group is enough: the first
:func:`is_active` call initialises it (``gloo`` for CPU tensors, ``nccl`` for
CUDA ones when CUDA is available, each rank on ``cuda:LOCAL_RANK``), with a
timeout of ``SK_DEEPUNSUP_DIST_TIMEOUT`` seconds (default 1800): how long a
rank waits in a collective, e.g. while rank 0 builds a neighbour graph.

Every function that communicates is a *collective*: all ranks must call it,
in the same order. They are only called from ``fit``.

Nothing here imports scikit-learn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "BUCKET_BYTES",
    "GradientReducer",
    "all_gather_rows",
    "all_sum",
    "all_sum_",
    "all_values",
    "any_true",
    "broadcast_",
    "broadcast_object",
    "cached",
    "gradient_ready",
    "check_same",
    "is_active",
    "is_main",
    "local_device",
    "map_rows",
    "on_main",
    "rank",
    "share",
    "threads_per_rank",
    "world_size",
    "writes_files",
]

#: Environment a launcher sets (torchrun, SLURM via srun + torchrun, Kubernetes).
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _init_from_env() -> None:
    """Initialise the default process group when a launcher set the environment."""
    if not all(v in os.environ for v in LAUNCHER_ENV):
        return
    if int(os.environ["WORLD_SIZE"]) <= 1 or not dist.is_available():
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    seconds = float(os.environ.get("SK_DEEPUNSUP_DIST_TIMEOUT", 1800))
    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=seconds))


def is_active() -> bool:
    """Whether this process is one of several ranks of an initialised process group."""
    if not dist.is_available():
        return False
    if not dist.is_initialized():
        _init_from_env()
        if not dist.is_initialized():
            return False
    return dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    """Whether this rank prints progress and writes files (rank 0, or no group)."""
    return rank() == 0


def writes_files() -> bool:
    """False on ranks other than 0 of an initialised group (never initialises one)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def share(n: int, part: int | None = None, parts: int | None = None) -> tuple[int, int]:
    """``[start, stop)`` of rank ``part``'s contiguous share of ``n`` rows.

    The first ``n % parts`` ranks get one row more, as ``numpy.array_split``.
    Defaults: this rank of this group.
    """
    part = rank() if part is None else part
    parts = world_size() if parts is None else parts
    base, extra = divmod(n, parts)
    start = part * base + min(part, extra)
    return start, start + base + (part < extra)


def local_device(device: torch.device) -> torch.device:
    """``cuda`` without an index becomes ``cuda:LOCAL_RANK`` under a launcher."""
    if device.type == "cuda" and device.index is None and is_active():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return device


def _comm_device() -> torch.device:
    """Where collective tensors must live: CUDA for an NCCL-only group, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _staged(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself when the group can reduce it in place, else a copy that can."""
    backend = dist.get_backend()
    if tensor.device.type == "cuda" and "nccl" in backend:
        return tensor
    if tensor.device.type == "cpu" and backend != "nccl":
        return tensor
    return tensor.to(_comm_device())


def all_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place; every rank gets the same values."""
    staged = _staged(tensor)
    dist.all_reduce(staged, op=dist.ReduceOp.SUM)
    if staged is not tensor:
        tensor.copy_(staged)
    return tensor


def all_sum(*values: float) -> list[float]:
    """Each value summed over the ranks (one collective for all of them)."""
    t = torch.tensor(values, dtype=torch.float64)
    return all_sum_(t).tolist()


def any_true(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank."""
    return all_sum(float(bool(flag)))[0] > 0


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s, in place."""
    staged = _staged(tensor)
    dist.broadcast(staged, src=src)
    if staged is not tensor:
        tensor.copy_(staged)
    return tensor


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` (picklable) on every rank; ``obj`` itself without a group."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def on_main(fn: Callable[[], object]):
    """``fn()`` computed on rank 0 only and sent to every rank (a global step, once)."""
    if not is_active():
        return fn()
    return broadcast_object(fn() if is_main() else None)


def cached(memorized, func: Callable):
    """A joblib cache of ``func`` that a data-parallel fit can use on every rank.

    Rank 0 decides hit or miss (and reads or writes the cache); on a hit the
    others get its result, on a miss every rank calls ``func`` (which trains
    data-parallel) and rank 0 stores what it computed. Without a process
    group, or without a cache (``memory=None``), ``memorized`` itself.
    """
    if not is_active() or type(memorized).__name__ == "NotMemorizedFunc":
        return memorized

    def call(*args, **kwargs):
        hit = on_main(lambda: bool(memorized.check_call_in_cache(*args, **kwargs)))
        if hit:
            return on_main(lambda: memorized(*args, **kwargs))
        return memorized(*args, **kwargs) if is_main() else func(*args, **kwargs)

    return call


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The ranks' tensors concatenated along rows in rank order (row counts may differ)."""
    if not is_active():
        return tensor
    n = world_size()
    sizes = torch.zeros(n, dtype=torch.int64)
    sizes[rank()] = tensor.shape[0]
    all_sum_(sizes)
    longest = int(sizes.max())
    padded = _staged(tensor.contiguous()).new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(n)]
    dist.all_gather(gathered, padded)
    rows = [g[: int(k)] for g, k in zip(gathered, sizes)]
    return torch.cat(rows).to(tensor.device)


def all_values(value: float) -> list[float]:
    """``value`` of every rank, in rank order (the same list on every rank)."""
    slots = torch.zeros(world_size(), dtype=torch.float64)
    slots[rank()] = value
    return all_sum_(slots).tolist()


def map_rows(fn: Callable, X):
    """``fn(X)`` for a row-wise ``fn`` returning a numpy array, each rank computing its share.

    Every rank slices its contiguous share of X's rows (reading only those of
    a memmap or store), applies ``fn``, and the results are gathered in row
    order; without a process group (or with fewer rows than ranks), ``fn(X)``.
    """
    if not is_active() or X.shape[0] < world_size():
        return fn(X)
    lo, hi = share(X.shape[0])
    part = torch.from_numpy(np.ascontiguousarray(fn(X[lo:hi])))
    return all_gather_rows(part).numpy()


def check_same(value: int, what: str) -> None:
    """ValueError on every rank unless ``value`` is the same on every rank."""
    values = all_values(float(value))
    if min(values) != max(values):
        raise ValueError(
            f"The ranks of this torch.distributed job disagree on {what}: "
            f"{[int(v) for v in values]} (rank order). Every rank must call fit with "
            "the same data (e.g. the same file opened as a memmap) and parameters."
        )


def local_world_size() -> int:
    """Ranks on this machine: ``LOCAL_WORLD_SIZE`` (torchrun sets it), else 1 without a group."""
    if "LOCAL_WORLD_SIZE" in os.environ:
        return max(1, int(os.environ["LOCAL_WORLD_SIZE"]))
    return world_size() if is_active() and "LOCAL_RANK" in os.environ else 1


def threads_per_rank(cores: int) -> int:
    """The threads one rank may use: the machine's ``cores`` shared by its ranks.

    ``LOCAL_WORLD_SIZE`` ranks on one machine each get ``cores // LOCAL_WORLD_SIZE``
    threads (at least 1), so that two ranks of one thread on two cores do not
    also start an intra-op pool each. A configuration, not a measurement: the
    count never depends on the load.
    """
    return max(1, cores // local_world_size())


#: Gradient bytes per all-reduce bucket (DDP's ``bucket_cap_mb``, and its
#: default). Each all-reduce has a fixed cost: on 2 CPU ranks (gloo), a
#: (64, 512, 256, 10) autoencoder's 1.3 MB gradient in 4 buckets of 0.25 MB
#: cost the busiest rank 8.2 CPU seconds over 6 epochs, in 2 buckets of 1 MB
#: 7.5, in one bucket 6.8 (one process: 10.1). Networks of tens of MB get
#: several buckets, reduced while the backward pass goes on.
BUCKET_BYTES = int(float(os.environ.get("SK_DEEPUNSUP_BUCKET_MB", 25)) * 2**20)


#: ``id(param) -> hook`` for gradients accumulated outside autograd's own
#: accumulation (the fused MLP's backward writes ``.grad`` itself, so
#: ``register_post_accumulate_grad_hook`` never fires for its parameters).
_READY_HOOKS: dict[int, Callable] = {}


def gradient_ready(param: torch.Tensor) -> None:
    """Called by a hand-written backward once it has accumulated ``param.grad``."""
    if _READY_HOOKS:
        hook = _READY_HOOKS.get(id(param))
        if hook is not None:
            hook(param)


class GradientReducer:
    """Bucketed all-reduce of a flat gradient, overlapped with the backward pass.

    DDP's reducer for parameters that are views of one flat gradient
    (:class:`~.optim.FlatAdam`): the flat gradient is cut into contiguous
    buckets of about ``bucket_bytes``, ordered as the backward pass fills
    them (the last layers first). A hook after each parameter's gradient is
    accumulated counts its bucket down; a full bucket is scaled by
    ``weight`` and its all-reduce (sum) is launched asynchronously while the
    backward pass goes on with earlier layers. :meth:`finish` launches what
    is left (parameters the loss did not reach, a rank without rows) and
    waits for all of them.

    Buckets are launched strictly in bucket order (a full bucket waits for
    the ones before it), so every rank issues the same collectives in the same
    order whatever order its hooks fire in. How many accumulations fill a
    bucket is learnt in the first step, which reduces everything at its end
    (a module called twice accumulates its gradients twice); a later step
    that accumulates into a bucket already sent raises RuntimeError rather
    than sum a partial gradient. The sums are those of one flat
    all-reduce: bucketing changes when values are reduced, never what.
    """

    def __init__(self, params, grad: torch.Tensor, bucket_bytes: int = BUCKET_BYTES):
        self.grad = grad
        self.weight = 1.0
        offsets, offset = [], 0
        for p in params:
            offsets.append((offset, offset + p.numel(), p))
            offset += p.numel()
        if offset != grad.numel():
            raise ValueError(f"parameters hold {offset} values, the gradient {grad.numel()}")
        per_bucket = max(1, bucket_bytes // grad.element_size())
        # matrices (the bulk) from the last layer back; vectors (biases, norms)
        # are tiny and filled all along the backward pass: one last bucket
        spans, bucket_of = [], {}
        current, size = [], 0
        ordered = [o for o in reversed(offsets) if o[2].dim() >= 2]
        ordered += [o for o in offsets if o[2].dim() < 2]
        for lo, hi, p in ordered:
            if current and (p.dim() < 2) != (current[-1][2].dim() < 2):
                spans.append(current)
                current, size = [], 0
            current.append((lo, hi, p))
            size += hi - lo
            if size >= per_bucket and p.dim() >= 2:
                spans.append(current)
                current, size = [], 0
        if current:
            spans.append(current)
        self.buckets = []
        for k, span in enumerate(spans):
            lo, hi = min(s[0] for s in span), max(s[1] for s in span)
            if hi - lo != sum(s[1] - s[0] for s in span):  # pragma: no cover - layout invariant
                raise AssertionError("a bucket must be a contiguous range of the flat gradient")
            self.buckets.append(grad[lo:hi])
            for _, _, p in span:
                bucket_of[p] = k
        #: notifications each bucket gets in a step, learnt in the first step
        #: (a module called twice accumulates twice); None until then
        self.expected: list[int] | None = None
        self.handles = []
        self.ready_keys = []
        for p in bucket_of:
            hook = self._hook(bucket_of[p])
            self.handles.append(p.register_post_accumulate_grad_hook(hook))
            _READY_HOOKS[id(p)] = hook  # the fused MLP's backward
            self.ready_keys.append(id(p))
        self._reset()

    def _reset(self) -> None:
        # the first step launches everything at the end and counts the notifications
        self.pending = [math.inf] * len(self.buckets) if self.expected is None else list(self.expected)
        self.seen = [0] * len(self.buckets)
        self.launched = 0
        self.works: list = []

    def _hook(self, k: int):
        def hook(_param):
            if self.active:
                self.seen[k] += 1
                if k < self.launched:
                    raise RuntimeError(
                        "a gradient was accumulated into a bucket already being reduced: "
                        "the network's backward pass differs from the first step's "
                        "(a module called a different number of times per step)"
                    )
                self.pending[k] -= 1
                self._launch_ready()
        return hook

    active = False

    def begin(self, weight: float) -> None:
        """Start a step: gradients are scaled by ``weight`` before they are summed."""
        self._reset()
        self.weight = weight
        self.active = True

    def _launch(self, k: int) -> None:
        bucket = self.buckets[k]
        if self.weight != 1.0:
            bucket.mul_(self.weight)
        staged = _staged(bucket)
        work = dist.all_reduce(staged, op=dist.ReduceOp.SUM, async_op=True)
        self.works.append((work, staged, bucket))

    def _launch_ready(self) -> None:
        while self.launched < len(self.buckets) and self.pending[self.launched] <= 0:
            self._launch(self.launched)
            self.launched += 1

    def finish(self) -> None:
        """Launch the buckets not launched yet and wait for every reduction."""
        while self.launched < len(self.buckets):
            self._launch(self.launched)
            self.launched += 1
        for work, staged, bucket in self.works:
            work.wait()
            if staged is not bucket:
                bucket.copy_(staged)
        self.works = []
        self.active = False
        if self.expected is None and any(self.seen):  # learnt from a step with rows
            self.expected = list(self.seen)

    def remove(self) -> None:
        """Remove the hooks (when training ends)."""
        for h in self.handles:
            h.remove()
        for key in self.ready_keys:
            _READY_HOOKS.pop(key, None)
        self.handles, self.ready_keys = [], []

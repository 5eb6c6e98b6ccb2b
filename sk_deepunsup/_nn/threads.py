"""torch's process-wide state around each step: the thread count and the global generator.

The thread count changes float32 results: matrix products and reductions are
split among threads differently, so the same step on one thread and on two
rounds differently. A fit is therefore reproducible only if its thread count
does not depend on anything but the problem and the machine. The default rule
(:func:`threads_for`) counts the multiply-adds of one step (:func:`sample_macs`:
the matrix products and convolutions of one sample's forward pass, from the
shapes alone, times the batch's rows; not timing) and gives a step one more
thread per :data:`MACS_PER_THREAD` of work: small networks, where the
barrier that torch's intra-op threads meet after every operation costs more
than the arithmetic (5-25 times slower on a busy machine), run on one thread;
large ones use the cores.

``"adaptive"`` instead times steps with one thread and with all allowed
threads, interleaved so both see the same load, keeps the faster and measures
again every few seconds: fastest on a machine whose load changes, but the
result then depends on the load.

torch's thread count and its global generator are process-wide. Each step
holds one process-wide lock while it sets them, so fits running at once in
several Python threads never see each other's setting (their steps take
turns); the setting the caller had is restored when the last of them ends.

Nothing here imports scikit-learn.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
import weakref
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "MACS_PER_THREAD",
    "GlobalGenerator",
    "ThreadPolicy",
    "sample_macs",
    "threads_for",
    "usable_cores",
    "weight_macs",
]

#: Multiply-adds of one step that justify one more thread (the default rule):
#: a step gets as many threads as keep each one's share at most this, so
#: steps up to it run on one thread. A (64, 500, 500, 10) autoencoder's
#: training step at batch 256 is 0.43e9: one thread. Measured on 2 idle
#: cores, two threads gained 1.7x there and lost 2.3-2.9x with one other
#: busy process. A 28x28 convolutional autoencoder's step at batch 64
#: (channels 32, 64, 128) is 1.1e9: two threads.
MACS_PER_THREAD = 1e9

#: Held by every step that sets torch's process-wide state (see module doc), and
#: while policies register: one lock, so no two can be taken in opposite orders.
_STEP_LOCK = threading.RLock()
_users = {"count": 0, "baseline": None}


def _acquire_baseline() -> int:
    """Register a policy; returns the caller's thread setting (the cap)."""
    with _STEP_LOCK:
        if _users["count"] == 0:
            _users["baseline"] = torch.get_num_threads()
        _users["count"] += 1
        return _users["baseline"]


def _release_baseline() -> None:
    with _STEP_LOCK:
        _users["count"] -= 1
        if _users["count"] == 0 and torch.get_num_threads() != _users["baseline"]:
            torch.set_num_threads(_users["baseline"])


def weight_macs(module: nn.Module | None) -> int:
    """Multiply-adds per sample of ``module``'s weight matrices (their sizes).

    Exact for fully connected networks; a convolution's kernel counts once,
    as if it had one output position (:func:`sample_macs` counts them all).
    """
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.dim() >= 2)


#: Layers whose weights' sizes are their multiply-adds per sample (on rows);
#: a module made of these alone needs no forward pass to be counted.
_COUNTED_BY_WEIGHTS = (
    nn.Linear, nn.Embedding, nn.EmbeddingBag,
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm,
)
_ATEN = torch.ops.aten
_MATMULS = (_ATEN.mm, _ATEN.addmm, _ATEN.bmm, _ATEN.baddbmm)


class _CountMacs(TorchDispatchMode):
    """Adds up the multiply-adds of the matrix products and convolutions run under it."""

    def __init__(self):
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = func.overloadpacket
        if op in _MATMULS:
            a, b = args[-2:] if op in (_ATEN.addmm, _ATEN.baddbmm) else args[:2]
            self.macs += a.numel() * b.shape[-1]
        elif op is _ATEN.convolution:
            x, weight, transposed = args[0], args[1], args[6]
            if transposed:  # each input position spreads over a kernel of out/groups channels
                self.macs += x.numel() * weight[0].numel()
            else:  # each output position gathers a kernel of in/groups channels
                self.macs += out.numel() * weight[0].numel()
        return out


class _OneSample(nn.Module):
    """Runs ``inner`` on a row: its ``forward``, or a VAE's posterior mean through its decoder."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        inner = self.inner
        if type(inner).forward is not nn.Module.forward:
            return inner(x)
        posterior, decoder = getattr(inner, "posterior", None), getattr(inner, "decoder", None)
        if callable(posterior) and isinstance(decoder, nn.Module):
            return decoder(posterior(x)[0])
        raise TypeError(f"{type(inner).__name__} has no forward")


def _probe_macs(module: nn.Module, n_features: int) -> int:
    """Forward multiply-adds of one row of ``n_features`` through ``module``; 0 if it cannot take one.

    A shape-propagating pass: the row, the weights and the buffers are
    ``meta`` tensors (shapes without values), so nothing is computed, no
    random number is drawn and no statistic changes; the module runs in
    evaluation mode (batch norm on one row) and gets its training flags back.
    """
    probe = _OneSample(module)
    state = {f"inner.{k}": torch.empty_like(v, device="meta")
             for k, v in [*module.named_parameters(), *module.named_buffers()]}
    modes = [(m, m.training) for m in module.modules()]
    counter = _CountMacs()
    try:
        module.eval()
        x = torch.zeros(1, int(n_features), device="meta")
        with torch.no_grad(), counter:
            functional_call(probe, state, (x,))
    except Exception:  # not a module over rows of n_features (e.g. it takes indices)
        return 0
    finally:
        for m, training in modes:
            m.training = training
    return int(counter.macs)


#: module -> (its parameters' shapes and the row width, its count): each
#: network is probed once, not at every fit or inference call
_probed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sample_macs(module: nn.Module | None, n_features: int | None = None) -> int:
    """Multiply-adds of one sample's forward pass through ``module``.

    :func:`weight_macs`, or for a module with layers other than dense ones
    (a convolution, a user's layer) the larger of that and the multiply-adds
    that one row of ``n_features`` runs through ``module`` (its ``forward``;
    a VAE's posterior mean and decoder), found by a shape-propagating pass
    (no values, so neither the data nor the clock play a part): it counts a
    convolution's kernel at every output position, and a layer at every
    use. Without ``n_features``, or for a module that cannot take such a
    row, the weights' count.
    """
    if module is None:
        return 0
    macs = weight_macs(module)
    if n_features is None or n_features < 1 or all(
        isinstance(m, _COUNTED_BY_WEIGHTS)
        for m in module.modules()
        if next(m.parameters(recurse=False), None) is not None
    ):
        return macs
    key = (int(n_features), tuple((k, tuple(v.shape)) for k, v in module.named_parameters()))
    with _STEP_LOCK:  # the probe flips the module's training flags
        cached = _probed.get(module)
        if cached is None or cached[0] != key:
            cached = (key, _probe_macs(module, n_features))
            _probed[module] = cached
    return max(macs, cached[1])


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def _bounded_count(n_threads: int) -> int:
    """``n_threads``, or the usable cores with a warning when it asks for more.

    More threads than cores only add barrier waits, and OpenMP cannot create
    tens of thousands of them at all (it aborts the process).
    """
    cores = usable_cores()
    if n_threads <= cores:
        return n_threads
    warnings.warn(
        f"n_threads={n_threads} is more than the {cores} cores this process may use; "
        f"using {cores}. Set n_threads to at most {cores} (or None, the default rule).",
        UserWarning,
        stacklevel=4,
    )
    return cores


def threads_for(macs: float, training: bool, cap: int) -> int:
    """The default rule: threads for a step of ``macs`` forward multiply-adds.

    A training step costs about three forward passes (the backward pass
    two). The fewest threads that keep each one's share of the work at
    most :data:`MACS_PER_THREAD`, and at most ``cap``.
    """
    work = macs * (3.0 if training else 1.0)
    return int(min(max(cap, 1), max(1, math.ceil(work / MACS_PER_THREAD))))


class GlobalGenerator:
    """A private stream of torch's global generator, swapped in for each step.

    Layers of a user's module (``nn.Dropout``) draw from torch's global
    generator. Swapping this stream in for a step and out after it makes such
    fits depend on ``seed`` alone, leaves the caller's global state as it
    was, and (under the step lock) keeps concurrent fits apart.
    """

    def __init__(self, seed: int, device: torch.device):
        self.cuda = device.type == "cuda"
        self.index = device.index if device.index is not None else 0
        gen = torch.Generator()
        gen.manual_seed(seed)
        self.cpu_state = gen.get_state()
        self.cuda_state = None
        if self.cuda:
            with torch.random.fork_rng(devices=[self.index]):
                torch.cuda.manual_seed(seed)
                self.cuda_state = torch.cuda.get_rng_state(self.index)

    @contextmanager
    def swapped(self):
        saved = torch.get_rng_state()
        saved_cuda = torch.cuda.get_rng_state(self.index) if self.cuda else None
        torch.set_rng_state(self.cpu_state)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_state, self.index)
        try:
            yield
        finally:
            self.cpu_state = torch.get_rng_state()
            torch.set_rng_state(saved)
            if self.cuda:
                self.cuda_state = torch.cuda.get_rng_state(self.index)
                torch.cuda.set_rng_state(saved_cuda, self.index)


class ThreadPolicy:
    """torch's intra-op thread count for a run of similar steps.

    Parameters
    ----------
    n_threads : int, None or "adaptive"
        An int fixes the count (at most the usable cores: more are cut to
        them with a warning). ``None`` applies :func:`threads_for` to
        ``rows`` samples through ``module``'s weights: the count depends on
        the network, the batch and the machine's cores, never on the load. ``"adaptive"`` chooses between one thread and
        ``max_threads`` by timing steps (the result can then change with the
        load).
    module : nn.Module, optional
        The network whose steps run; the default rule counts its work.
    rows : int
        Samples a step runs through ``module``.
    n_features : int, optional
        Width of the rows ``module`` takes: the default rule then counts
        convolutions at every output position (:func:`sample_macs`).
    training : bool
        Whether steps train (about three times a forward pass's work).
    max_threads : int, optional
        The most threads ``None`` and ``"adaptive"`` may use; default torch's
        setting when the first running policy began (``torch.set_num_threads``
        caps it).
    generator : GlobalGenerator, optional
        Swapped in as torch's global generator during each step.
    probe_steps, remeasure_seconds, hold_steps
        ``"adaptive"`` only: steps timed with each candidate; how long a
        choice holds, at least (for long steps ``hold_steps`` steps of the
        chosen count, so that measuring costs a few percent of the time).
    """

    def __init__(
        self,
        n_threads: int | str | None = None,
        *,
        module: nn.Module | None = None,
        rows: int = 1,
        n_features: int | None = None,
        training: bool = True,
        max_threads: int | None = None,
        generator: GlobalGenerator | None = None,
        probe_steps: int = 3,
        remeasure_seconds: float = 5.0,
        hold_steps: int = 100,
    ):
        self.n_threads = n_threads
        self.module = module
        self.rows = rows
        self.n_features = n_features
        self.training = training
        self.max_threads = max_threads
        self.generator = generator
        self.probe_steps = probe_steps
        self.remeasure_seconds = remeasure_seconds
        self.hold_steps = hold_steps
        self.candidates: list[int] = []
        self.chosen: int | None = None
        self._schedule: list[int] = []
        self._timings: dict[int, list[float]] = {}
        self._hold_until = 0.0

    @property
    def adaptive(self) -> bool:
        return self.n_threads == "adaptive"

    def __enter__(self) -> ThreadPolicy:
        baseline = _acquire_baseline()
        cap = baseline if self.max_threads is None else self.max_threads
        if isinstance(self.n_threads, int):
            self.chosen = _bounded_count(self.n_threads)
            self.candidates = [self.chosen]
        elif self.adaptive:
            self.candidates = sorted({1, max(1, cap)})
        else:
            macs = sample_macs(self.module, self.n_features) * self.rows
            self.chosen = threads_for(macs, self.training, cap)
            self.candidates = [self.chosen]
        return self

    def __exit__(self, *exc) -> None:
        _release_baseline()

    def _next_count(self) -> int:
        if len(self.candidates) == 1:
            return self.candidates[0]
        if not self._schedule and time.perf_counter() >= self._hold_until:
            # interleave the candidates so that both see the same load
            self._schedule = self.candidates * self.probe_steps
            self._timings = {c: [] for c in self.candidates}
        return self._schedule[0] if self._schedule else self.chosen

    @contextmanager
    def step(self):
        """Run one step (a batch, a chunk) under the policy's thread count."""
        with _STEP_LOCK:
            count = self._next_count()
            if torch.get_num_threads() != count:
                torch.set_num_threads(count)
            with self.generator.swapped() if self.generator is not None else nullcontext():
                if self._schedule:
                    start = time.perf_counter()
                    yield
                    self._record(count, time.perf_counter() - start)
                else:
                    yield

    def _record(self, count: int, seconds: float) -> None:
        self._timings[count].append(seconds)
        self._schedule.pop(0)
        if not self._schedule:
            medians = {c: sorted(t)[len(t) // 2] for c, t in self._timings.items() if t}
            self.chosen = min(medians, key=medians.get)
            hold = max(self.remeasure_seconds, self.hold_steps * medians[self.chosen])
            self._hold_until = time.perf_counter() + hold

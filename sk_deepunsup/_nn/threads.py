"""How many threads torch uses: chosen by measurement, restored afterwards.

torch's intra-op threads meet at a barrier after every operation. On an idle
machine two threads speed up large matrix products; on a busy one a thread
that is descheduled stalls the others at every barrier, and small networks
run 5-25 times slower than on one thread. No fixed setting is right
everywhere, so :class:`ThreadPolicy` times the steps it runs with one thread
and with all allowed threads, interleaved so both see the same load, keeps
the faster, and measures again after a few seconds (at least 100 steps) in
case the load changed.

Nothing here imports scikit-learn.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

__all__ = ["ThreadPolicy", "torch_threads"]


@contextmanager
def torch_threads(n: int | None):
    """Run the body with ``torch.set_num_threads(n)``; restore the setting after."""
    before = torch.get_num_threads()
    try:
        if n is not None and n != before:
            torch.set_num_threads(n)
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class ThreadPolicy:
    """Chooses torch's intra-op thread count for a run of similar steps.

    Parameters
    ----------
    n_threads : int or None
        An int fixes the count (a fit is then bit-for-bit reproducible).
        ``None`` chooses between one thread and ``max_threads`` by timing
        steps (float32 sums can differ between the two, so fits with the same
        seed may differ in the last bits).
    max_threads : int, optional
        The most threads ``None`` may choose; default torch's current setting
        (``torch.set_num_threads`` caps it).
    probe_steps : int
        Steps timed with each candidate when measuring.
    remeasure_seconds : float
        How long a choice holds before it is measured again, at least; for
        long steps it holds for ``hold_steps`` steps of the chosen count, so
        that measuring costs a few percent of the time whatever the step.
    hold_steps : int
        See ``remeasure_seconds``.
    """

    def __init__(
        self,
        n_threads: int | None = None,
        max_threads: int | None = None,
        probe_steps: int = 3,
        remeasure_seconds: float = 5.0,
        hold_steps: int = 100,
    ):
        self.n_threads = n_threads
        top = torch.get_num_threads() if max_threads is None else max_threads
        self.candidates = [n_threads] if n_threads is not None else sorted({1, max(1, top)})
        self.probe_steps = probe_steps
        self.remeasure_seconds = remeasure_seconds
        self.hold_steps = hold_steps
        self.chosen = self.candidates[0] if len(self.candidates) == 1 else None
        self._schedule: list[int] = []
        self._timings: dict[int, list[float]] = {}
        self._hold_until = 0.0
        self._before: int | None = None

    @property
    def adaptive(self) -> bool:
        return len(self.candidates) > 1

    def __enter__(self) -> ThreadPolicy:
        self._before = torch.get_num_threads()
        if not self.adaptive:
            torch.set_num_threads(self.candidates[0])
        return self

    def __exit__(self, *exc) -> None:
        if self._before is not None and torch.get_num_threads() != self._before:
            torch.set_num_threads(self._before)

    def _next_count(self) -> int:
        if not self.adaptive:
            return self.candidates[0]
        if not self._schedule and time.perf_counter() >= self._hold_until:
            # interleave the candidates so that both see the same load
            self._schedule = self.candidates * self.probe_steps
            self._timings = {c: [] for c in self.candidates}
        return self._schedule[0] if self._schedule else self.chosen

    @contextmanager
    def step(self):
        """Run one step (a batch, a chunk) under the current choice, timing it."""
        count = self._next_count()
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
        if not self._schedule:
            yield
            return
        start = time.perf_counter()
        yield
        self._timings[count].append(time.perf_counter() - start)
        self._schedule.pop(0)
        if not self._schedule:
            medians = {
                c: sorted(t)[len(t) // 2] for c, t in self._timings.items() if t
            }
            self.chosen = min(medians, key=medians.get)
            hold = max(self.remeasure_seconds, self.hold_steps * medians[self.chosen])
            self._hold_until = time.perf_counter() + hold

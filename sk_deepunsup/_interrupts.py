"""Ctrl-C during ``fit``: a usable, consistent model, or the estimator as it was.

The engine turns a Ctrl-C during training into an early stop (the best
weights so far, a :class:`~._nn.TrainingInterrupted` warning). Around it,
two tools keep every other moment consistent:

- :func:`restore_on_interrupt` wraps ``fit``: a Ctrl-C that ends it (during
  the neighbour search, say) leaves the estimator exactly as before the call.
- :func:`finishing` wraps the short final pass that computes and stores the
  fitted attributes after training: a Ctrl-C there is held until the pass is
  done, so the attributes are never half new, half old; the fit then reports
  it as interrupted.
- :func:`run_interruptibly` runs a long C call (an eigendecomposition) beside
  the main thread, so a Ctrl-C during it lands at once.
"""

from __future__ import annotations

import functools
import signal
import threading
import warnings
from contextlib import contextmanager

from ._nn import TrainingInterrupted

__all__ = ["finishing", "restore_on_interrupt", "run_interruptibly", "warn_interrupted"]


def restore_on_interrupt(fit):
    """Decorate ``fit``: on KeyboardInterrupt, restore the estimator's attributes, re-raise."""

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        before = dict(self.__dict__)
        try:
            return fit(self, *args, **kwargs)
        except KeyboardInterrupt:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    return wrapper


def run_interruptibly(fn, *args):
    """``fn(*args)``, with a Ctrl-C in the main thread landing within 0.1 s.

    Python handles a signal only between bytecodes, so a long C call (a
    LAPACK eigendecomposition) in the main thread holds Ctrl-C until it
    returns. The call therefore runs in a helper thread while the main thread
    waits in short, interruptible joins; on Ctrl-C the KeyboardInterrupt is
    raised at once and the call's result, when it comes, is dropped. Outside
    the main thread (no signal reaches it) it runs inline.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="sk_deepunsup-solve", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class _Held:
    hit = False


@contextmanager
def finishing():
    """Hold Ctrl-C (SIGINT) until the body ends; yields an object whose ``hit`` says if one came.

    Only the main thread receives signals; elsewhere, or when SIGINT is not
    Python's default handler (someone else handles it), the body runs as is.
    """
    held = _Held()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield held
        return

    def hold(signum, frame):
        held.hit = True

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


def warn_interrupted(estimator, phase: str) -> None:
    warnings.warn(
        f"{type(estimator).__name__}: Ctrl-C during {phase}; the fit ended there "
        "and the model is usable (interrupted_ is True).",
        TrainingInterrupted,
        stacklevel=3,
    )

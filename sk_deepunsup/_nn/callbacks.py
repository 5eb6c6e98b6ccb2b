"""The engine's callbacks: the hooks of :class:`~.training.Trainer` and the built-in ones.

Early stopping, the best-state checkpoint, the progress bar and the
data-parallel synchronisation are callbacks of the one trainer, in the shape
of skorch's ``EarlyStopping``, ``Checkpoint`` and ``ProgressBar``; an
estimator adds its own (DEC's target updates, a learning-rate decay).
Nothing here imports scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from . import distributed

if TYPE_CHECKING:
    from .training import Trainer

__all__ = [
    "Callback",
    "Checkpoint",
    "DistributedSync",
    "EarlyStopping",
    "ProgressBar",
    "all_finite",
    "snapshot",
]


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s parameters and buffers."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def all_finite(tensors) -> bool:
    """Whether every floating-point tensor holds only finite values."""
    return all(
        bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point() and t.numel()
    )


class Callback:
    """Hooks into :class:`Trainer`; set ``trainer.stop_requested`` to stop."""

    #: True when :meth:`on_batch_end` never sets ``stop_requested``, or sets it
    #: alike on every rank (from values already reduced over the ranks): a
    #: data-parallel engine then skips the collective after every step in which
    #: the ranks agree whether to stop.
    agreed_stop: bool = False

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first epoch."""

    def on_batch_end(self, trainer: Trainer) -> None:
        """After every optimisation step."""

    def on_epoch_trained(self, trainer: Trainer) -> None:
        """After an epoch's steps, before its loss is checked and recorded."""

    def on_epoch_end(self, trainer: Trainer) -> None:
        """After every epoch (its loss is already in the history)."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch of a run that neither failed nor was interrupted."""

    def on_train_exit(self, trainer: Trainer) -> None:
        """Last, however the run ended."""


class EarlyStopping(Callback):
    """Converged after ``patience`` epochs whose monitored loss did not beat the best by ``tol``.

    skorch's ``EarlyStopping``; ``patience=None`` never stops on the loss.
    Runs before :class:`Checkpoint`, which then updates the best loss.
    """

    def __init__(self, tol: float, patience: int | None):
        self.tol = tol
        self.patience = patience
        self.no_improvement = 0

    def on_epoch_end(self, trainer: Trainer) -> None:
        if trainer.monitored > trainer.history.best_loss - self.tol:
            self.no_improvement += 1
        else:
            self.no_improvement = 0
        if self.patience is not None and self.no_improvement >= self.patience:
            trainer.history.converged = True


class Checkpoint(Callback):
    """The weights of the best epoch so far, kept in memory (skorch's ``Checkpoint``).

    The trainer restores them at the end when asked (``restore_best``), after
    a Ctrl-C, and after a non-finite loss (the initial weights when no epoch
    with finite weights was best).
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        self.initial = snapshot(trainer.module)
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer) -> None:
        if trainer.monitored < trainer.history.best_loss:
            trainer.history.best_loss = trainer.monitored
            self.best_state = snapshot(trainer.module)

    def restore_best(self, module: nn.Module) -> bool:
        """Load the best epoch's weights; False when no epoch completed."""
        if self.best_state is None:
            return False
        module.load_state_dict(self.best_state)
        return True

    def restore_after_failure(self, module: nn.Module) -> None:
        """The best epoch's weights if they are finite, else the initial ones."""
        finite = self.best_state is not None and all_finite(self.best_state.values())
        module.load_state_dict(self.best_state if finite else self.initial)


class ProgressBar(Callback):
    """A tqdm bar of the epochs with the last losses, on rank 0 when ``verbose`` (skorch's)."""

    def on_train_begin(self, trainer: Trainer) -> None:
        self.bar = trainer._progress_bar()

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(trainer._postfix(), refresh=False)

    def on_train_exit(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class DistributedSync(Callback):
    """Data-parallel agreement: rank 0's weights at the start, the gradients summed in
    buckets during each backward pass (:class:`~.distributed.GradientReducer`), the
    buffers after each epoch, a stop when any rank asks, one generator state at the end."""

    def on_train_begin(self, trainer: Trainer) -> None:
        distributed.broadcast_(trainer.optimizer.flat)  # start from rank 0's weights, as DDP does
        trainer._sync_buffers()
        trainer.reducer = distributed.GradientReducer(
            trainer.optimizer.params, trainer.optimizer.grad
        )

    def on_train_exit(self, trainer: Trainer) -> None:
        if trainer.reducer is not None:
            trainer.reducer.remove()
            trainer.reducer = None

    def on_epoch_trained(self, trainer: Trainer) -> None:
        trainer._sync_buffers()

    def on_epoch_end(self, trainer: Trainer) -> None:
        trainer.stop_requested = distributed.any_true(trainer.stop_requested)

    def on_train_end(self, trainer: Trainer) -> None:
        trainer._sync_generator()

"""DEC's self-training schedule (Xie et al., 2016): the target distribution's updates.

A :class:`~.callbacks.Callback` of the one engine; the loss itself
(:func:`~.losses.clustering_objective`) and the Student's t assignments live in
:mod:`.losses`. Nothing here imports scikit-learn.
"""

from __future__ import annotations

import torch

from . import distributed
from .losses import student_t_assignment, target_distribution
from .callbacks import Callback
from .training import Trainer, as_source

__all__ = ["TargetUpdater"]


class TargetUpdater(Callback):
    """DEC's self-training schedule, as a callback.

    Every ``update_interval`` optimisation steps (and once before the first),
    the soft assignments Q of the **whole** data set are recomputed and the
    target ``p = target_distribution(Q)`` is refreshed. Training stops when
    the share of samples whose hard label changed since the previous refresh
    falls below ``tol``.

    ``trainer.module`` must have ``encoder`` and ``centers``; ``data`` is the
    training data (a :class:`~.data.BatchSource` or a tensor), read in chunks;
    under data-parallel training each rank reads its share and Q is gathered,
    so P and the label-change test are those of the whole data on every rank.
    """

    agreed_stop = True  # decided from the gathered Q: alike on every rank

    def __init__(self, data, alpha: float, update_interval: int, tol: float):
        self.data = as_source(data)
        self.alpha = alpha
        self.update_interval = int(update_interval)
        self.tol = tol
        self.p: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.label_changes: list[float] = []
        self.change_steps: list[int] = []  # the optimisation step of each label change
        self.converged = False

    @torch.no_grad()
    def refresh(self, trainer: Trainer) -> None:
        module = trainer.module
        module.eval()
        # under data-parallel training each rank assigns its share of the rows
        # and the shares are gathered: every rank holds the same Q
        q = torch.cat(
            [
                student_t_assignment(module.encoder(xb), module.centers, self.alpha)
                for xb in self.data.chunks(part=trainer.part)
            ]
        )
        q = distributed.all_gather_rows(q) if trainer.distributed else q
        module.train()
        labels = q.argmax(dim=1)
        if self.labels is not None:
            changed = float((labels != self.labels).float().mean())
            self.label_changes.append(changed)
            self.change_steps.append(trainer.history.n_steps)
            if changed < self.tol:
                self.converged = True
                trainer.stop_requested = True
        self.labels = labels
        self.p = target_distribution(q)

    def on_train_begin(self, trainer: Trainer) -> None:
        self.refresh(trainer)

    def on_batch_end(self, trainer: Trainer) -> None:
        if trainer.history.n_steps % self.update_interval == 0:
            self.refresh(trainer)

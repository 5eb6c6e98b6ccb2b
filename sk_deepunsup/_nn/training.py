"""The one training engine every estimator uses.

The loop is split into small steps, as in skorch and scikit-learn's MLP:
:meth:`Trainer.fit` runs epochs; early stopping, the best-state
checkpoint, the progress bar and data-parallel synchronisation are callbacks
(:mod:`.callbacks`) run at fixed points of each epoch;
:meth:`Trainer.run_epoch` draws the batches of one epoch from a batch source
(:mod:`.data`: in-memory tensors, sparse rows, or rows streamed from disk),
and :meth:`Trainer.batch_step` does one optimisation step. A *loss function*
``loss_fn(module, *batch) -> scalar tensor`` is all an estimator supplies.
On the CPU, a :class:`~.threads.ThreadPolicy` sets torch's thread count
for the steps (by a rule that does not depend on the load) and restores the
global setting afterwards.

Inside a ``torch.distributed`` process group of several ranks (see
:mod:`.distributed`) the same loop trains data-parallel: ``batch_size`` is the
*global* batch, every rank computes the gradient of its share and the shares
are summed (weighted by their rows) before the one Adam step every rank takes,
so the weights stay identical and a fit follows the single-process one with the
same ``batch_size``. Losses, validation losses and stopping decisions are
reduced over the ranks; only rank 0 shows progress.

Nothing here imports scikit-learn.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from . import distributed
from .callbacks import Callback, Checkpoint, DistributedSync, EarlyStopping, ProgressBar
from .data import BatchSource, TensorSource, batch_bounds
from .modules import set_generator
from .optim import FlatAdam
from .threads import GlobalGenerator, ThreadPolicy, sample_macs, usable_cores

__all__ = [
    "History",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "Trainer",
]

LossFn = Callable[..., torch.Tensor]

#: Multiply-adds of a training step (about three forward passes of the global
#: batch) below which a data-parallel fit of in-memory rows replicates the steps
#: instead of splitting them: an all-reduce costs a fraction of a millisecond to
#: a millisecond on CPU ranks, more than such a step's arithmetic (a DEC
#: refinement of a 24 000-weight network on 256 rows is 2e7).
REPLICATE_MACS = 5e7


class NonFiniteLossError(ValueError):
    """The loss became NaN or infinite; the weights were rolled back."""


class TrainingInterrupted(UserWarning):
    """Warned when a KeyboardInterrupt ends training early."""


@dataclass
class History:
    """What happened during :meth:`Trainer.fit`."""

    loss: list[float] = field(default_factory=list)
    validation_loss: list[float] | None = None
    best_loss: float = math.inf
    n_iter: int = 0
    n_steps: int = 0
    converged: bool = False
    interrupted: bool = False
    stopped_early: bool = False


def as_source(data) -> BatchSource:
    """A :class:`BatchSource`, or a tuple of tensors wrapped in a :class:`TensorSource`."""
    if isinstance(data, BatchSource):
        return data
    if isinstance(data, torch.Tensor):
        return TensorSource(data)
    return TensorSource(*data)


class Trainer:
    """Mini-batch Adam training of ``module`` on a batch source.

    Parameters
    ----------
    module : nn.Module
        Trained in place.
    loss_fn : callable
        ``loss_fn(module, *batch)`` returns the mean loss of a batch; ``batch``
        is ``(x,)``, the tensors of a :class:`TensorSource` carries, and the
        batch's row indices when ``with_index``. It may look at
        ``module.training`` (False during validation) to skip training-only
        noise.
    params : iterable of Parameter, optional
        What to optimise; default all of ``module``'s parameters.
    learning_rate, weight_decay : float
        Adam's step size and L2 coefficient (see :class:`FlatAdam`).
    batch_size : int
    max_iter : int
        Maximum number of epochs.
    tol : float
        Minimum decrease of the monitored loss (validation loss if given,
        else training loss) that counts as an improvement.
    n_iter_no_change : int or None
        Stop after this many epochs without improvement; ``None`` never
        stops on the loss (callbacks may still stop training).
    shuffle : bool
        Permute the samples every epoch.
    generator : torch.Generator, optional
        Source of all randomness: permutations, and dropout masks inside
        ``module``. Must live on the data's device.
    verbose : bool
        Show a progress bar with the losses on stderr.
    optimizer_state : dict, optional
        A previous ``history``'s optimizer state, to continue training.
    callbacks : sequence of Callback
    restore_best : bool or None
        At the end, load the weights of the best epoch. Default: only when
        there is validation data (early stopping).
    description : str
        Progress bar label.
    with_index : bool
        Pass each batch's row indices (into the training data) to ``loss_fn``
        after the batch's tensors.
    n_threads : int, None or "adaptive"
        torch threads for the steps on the CPU: an int fixes them, ``None``
        applies :class:`~.threads.ThreadPolicy`'s rule (from the network's
        size), ``"adaptive"`` chooses by timing. torch's global setting is
        restored when :meth:`fit` returns.
    global_seed : int, optional
        Give each step a private stream of torch's global generator, seeded
        from this (for users' modules whose layers draw from it); the
        caller's global generator is left as it was.

    Notes
    -----
    Under data-parallel training (:mod:`.distributed`) ``batch_size`` is the
    global batch: each of ``W`` ranks computes the mean loss of its share
    (about ``batch_size / W`` rows), its gradient is weighted by its share of
    the rows, the weighted gradients are summed across ranks, and every rank
    takes the same Adam step. Shuffling draws one permutation per epoch on
    every rank from the same generator state (rank 0's, broadcast), so the
    batches are those of a single-process fit with the same seed; the noise a
    loss draws (dropout, denoising, VAE samples) comes from a per-rank stream.
    Objectives that count the rows they trained on (``loss_fn.rows_seen``,
    e.g. KL annealing) count the global batch. When a step is too small to
    carry an all-reduce (fewer than :data:`REPLICATE_MACS` multiply-adds, rows
    in memory), every rank takes each whole step instead, from the same
    generator state: no communication, and the fit of one process.
    """

    def __init__(
        self,
        module: nn.Module,
        loss_fn: LossFn,
        *,
        params: Iterable[nn.Parameter] | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 256,
        max_iter: int = 200,
        tol: float = 1e-4,
        n_iter_no_change: int | None = 10,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        verbose: bool = False,
        optimizer_state: dict | None = None,
        callbacks: Sequence[Callback] = (),
        restore_best: bool | None = None,
        description: str = "training",
        with_index: bool = False,
        n_threads: int | str | None = None,
        global_seed: int | None = None,
    ):
        self.module = module
        self.loss_fn = loss_fn
        self.params = list(module.parameters() if params is None else params)
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = int(batch_size)
        self.max_iter = int(max_iter)
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.generator = generator
        self.verbose = verbose
        self.optimizer_state = optimizer_state
        self.callbacks = list(callbacks)
        self.restore_best = restore_best
        self.description = description
        self.with_index = with_index
        self.n_threads = n_threads
        self.global_seed = global_seed
        self.threads: ThreadPolicy | None = None
        self.history = History()
        self.stop_requested = False
        self.optimizer: FlatAdam | None = None
        self.checkpoint: Checkpoint | None = None
        #: the loss the stopping rule and the checkpoint watch (validation, else training)
        self.monitored = math.inf
        #: ``(rank, world_size)`` of the running fit; ``(0, 1)`` when not distributed
        self.part = (0, 1)
        #: every rank takes each whole step (no reduction): see :data:`REPLICATE_MACS`
        self.replicated = False
        #: the data-parallel gradient reduction (set by :class:`~.callbacks.DistributedSync`)
        self.reducer: distributed.GradientReducer | None = None

    # -- the loop, outermost first -------------------------------------------------

    def fit(self, data, validation_data=None) -> History:
        """Train for up to ``max_iter`` epochs; returns :attr:`history`.

        ``data`` and ``validation_data`` are batch sources (see :mod:`.data`),
        or tuples of tensors (wrapped in a :class:`~.data.TensorSource`).
        """
        data = as_source(data)
        if validation_data is not None:
            validation_data = as_source(validation_data)
        self.part = (distributed.rank(), distributed.world_size())
        self.replicated = (  # steps too small to carry an all-reduce: every rank takes them whole
            self.distributed
            and isinstance(data, TensorSource)
            and 3 * sample_macs(self.module, data.n_features) * self.batch_size < REPLICATE_MACS
        )
        if self.distributed:
            distributed.check_same(data.n_samples, "the number of training samples")
            if validation_data is not None:
                distributed.check_same(validation_data.n_samples, "the validation samples")
            if self.generator is None:  # every rank must draw the same permutations
                seed = distributed.broadcast_object(int(torch.randint(2**62, (1,))))
                self.generator = torch.Generator(device=data.device).manual_seed(seed)
        on_cpu = data.device.type == "cpu"
        self.threads = ThreadPolicy(
            self.n_threads if on_cpu else torch.get_num_threads(),
            module=self.module,
            # this rank's share of a batch
            rows=self.batch_size if self.replicated else -(-self.batch_size // self.part[1]),
            n_features=data.n_features,
            max_threads=(
                min(torch.get_num_threads(), distributed.threads_per_rank(usable_cores()))
                if self.distributed
                else None
            ),
            generator=(
                None
                if self.global_seed is None
                else GlobalGenerator(self.global_seed, data.device)
            ),
        )
        with self.threads:
            return self._fit(data, validation_data)

    def _fit(self, data: BatchSource, validation_data: BatchSource | None) -> History:
        if validation_data is not None:
            self.history.validation_loss = []
        self.optimizer = FlatAdam(
            self.params,
            lr=self.learning_rate,
            weight_decay=self.weight_decay,
            state=self.optimizer_state,
        )
        self.checkpoint = Checkpoint()
        sync = [DistributedSync()] if self.distributed else []
        engine = [*sync, self.checkpoint, ProgressBar()]
        # the order of the epoch's hooks: the stopping rule reads the best loss
        # before the checkpoint updates it; the ranks agree on stopping last
        epoch_hooks = [EarlyStopping(self.tol, self.n_iter_no_change), *engine[len(sync):],
                       *self.callbacks, *sync]
        self.module.train()
        set_generator(self.module, self.generator)
        for cb in engine:
            cb.on_train_begin(self)
        try:
            self._run(data, validation_data, epoch_hooks)
        except KeyboardInterrupt:
            if self.distributed:
                raise  # the ranks cannot agree on where they stopped: end the job
            self._interrupted()
        except NonFiniteLossError:
            # a finite epoch loss can precede a last step that overflowed
            self.checkpoint.restore_after_failure(self.module)
            raise
        finally:
            for cb in engine:
                cb.on_train_exit(self)
            set_generator(self.module, None)
            self.optimizer.release()
            self.module.eval()
        restore_best = validation_data is not None if self.restore_best is None else self.restore_best
        if restore_best and not self.history.interrupted:
            self.checkpoint.restore_best(self.module)
        return self.history

    def _run(self, data: BatchSource, validation_data, hooks: list[Callback]) -> None:
        """The epochs: train, record, run the hooks; stop on convergence or a request."""
        history = self.history
        for cb in self.callbacks:
            cb.on_train_begin(self)
        for _ in range(self.max_iter):
            if self.stop_requested:
                break
            loss = self.run_epoch(data)
            for cb in hooks:
                cb.on_epoch_trained(self)
            self._record_epoch(loss, validation_data)
            for cb in hooks:
                cb.on_epoch_end(self)
            if history.converged:
                break
        history.stopped_early = self.stop_requested
        # The last step can overflow even when the last batch loss did not.
        if not bool(torch.isfinite(self.optimizer.flat).all()):
            self._check_finite(math.nan, "training")
        for cb in hooks:
            cb.on_train_end(self)

    def _record_epoch(self, loss: float, validation_data) -> None:
        """Check and record an epoch's loss; ``monitored``: the validation loss if any, else it."""
        self._check_finite(loss, "training")
        self.history.loss.append(loss)
        self.monitored = loss
        if validation_data is not None:
            self.monitored = self.evaluate(validation_data)
            self._check_finite(self.monitored, "validation")
            self.history.validation_loss.append(self.monitored)
        self.history.n_iter += 1

    def _interrupted(self) -> None:
        """Ctrl-C: the best epoch's weights, and a warning that says so."""
        self.history.interrupted = True
        restored = self.checkpoint.restore_best(self.module)
        warnings.warn(
            f"Training interrupted after {self.history.n_iter} complete epoch(s); "
            + (
                "the weights of the best epoch were restored."
                if restored
                else "no epoch completed, so the weights are those reached "
                "when it was interrupted."
            ),
            TrainingInterrupted,
            stacklevel=4,
        )

    def run_epoch(self, data: BatchSource) -> float:
        """One pass over ``data`` in mini-batches; returns the mean loss."""
        # The epoch's loss is summed in place on the device: no per-batch
        # tensor is kept (thousands of them would pin heap memory between the
        # batch buffers), and there is one device-to-host sync per epoch.
        total, n_seen = None, 0
        batch_callbacks = [
            cb
            for cb in self.callbacks
            if type(cb).on_batch_end is not Callback.on_batch_end
        ]
        split = self.distributed and not self.replicated
        # the ranks agree after every step on a stop only some rank may have asked for
        agree = self.distributed and not all(cb.agreed_stop for cb in batch_callbacks)
        if self.distributed:
            self._sync_generator()
        batches = data.batches(
            self.batch_size,
            shuffle=self.shuffle,
            generator=self.generator,
            with_index=self.with_index,
            part=self.part if split else (0, 1),
        )
        sizes = None
        if split:
            self._fork_generator()
            sizes = [stop - start for start, stop in batch_bounds(data.n_samples, self.batch_size)]
        for i, batch in enumerate(batches):
            with self.threads.step():
                if sizes is None:
                    loss = self.batch_step(batch)
                else:
                    loss = self.shared_step(batch, sizes[i])
            size = batch[0].shape[0]
            if total is None:
                total = loss * size
            else:
                total.add_(loss, alpha=size)
            n_seen += size
            self.history.n_steps += 1
            if batch_callbacks:
                for cb in batch_callbacks:
                    cb.on_batch_end(self)
                if agree:
                    self.stop_requested = distributed.any_true(self.stop_requested)
                if self.stop_requested:
                    break
        if split:
            total, n_seen = distributed.all_sum(float(total), n_seen)
        return float(total) / n_seen

    def batch_step(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One Adam step on one batch; returns the detached batch loss."""
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.module, *batch)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def shared_step(self, batch: tuple[torch.Tensor, ...], global_rows: int) -> torch.Tensor:
        """One data-parallel Adam step: ``batch`` is this rank's share of ``global_rows``.

        The gradient of the share's mean loss, weighted by its share of the
        rows, is summed over the ranks: the gradient of the global batch's mean
        loss. The sum is bucketed and overlapped with the backward pass
        (:class:`~.distributed.GradientReducer`, set up by the
        :class:`~.callbacks.DistributedSync` callback).
        """
        self.optimizer.zero_grad()
        rows = batch[0].shape[0]
        self.reducer.begin(rows / global_rows)
        if rows:
            loss = self.loss_fn(self.module, *batch)
            loss.backward()
            loss = loss.detach()
        else:  # a global batch smaller than the ranks: this rank has no rows
            loss = self.optimizer.flat.new_zeros(())
        if hasattr(self.loss_fn, "rows_seen"):  # annealing schedules count the global batch
            self.loss_fn.rows_seen += global_rows - rows
        self.reducer.finish()
        self.optimizer.step()
        return loss

    @torch.no_grad()
    def evaluate(self, data) -> float:
        """Mean loss over ``data`` in evaluation mode (no dropout, no noise)."""
        data = as_source(data)
        self.module.eval()
        try:
            total = 0.0
            size = max(self.batch_size, 4096)
            for batch in data.batches(size, with_index=self.with_index, part=self.part):
                if batch[0].shape[0]:
                    loss = self.loss_fn(self.module, *batch)
                    total += float(loss) * batch[0].shape[0]
            if self.distributed:
                (total,) = distributed.all_sum(total)
            return total / data.n_samples
        finally:
            self.module.train()

    @property
    def distributed(self) -> bool:
        """Whether the running fit is data-parallel over several ranks."""
        return self.part[1] > 1

    @property
    def optimizer_state_dict(self) -> dict | None:
        return None if self.optimizer is None else self.optimizer.state_dict()

    # -- helpers -------------------------------------------------------------------

    def _check_finite(self, value: float, which: str) -> None:
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"The {which} loss became {value} in epoch {self.history.n_iter + 1}; "
                "fitting was stopped and the last finite weights kept. Lower "
                "learning_rate_init (e.g. by 10x) or scale the inputs (e.g. with "
                "StandardScaler or MinMaxScaler)."
            )

    def _sync_buffers(self) -> None:
        """Rank 0's buffers (batch-norm statistics) on every rank, as DDP does."""
        for buf in self.module.buffers():
            distributed.broadcast_(buf)

    def _sync_generator(self) -> None:
        """Rank 0's generator state on every rank: the next permutation is shared."""
        if self.generator is not None:
            state = self.generator.get_state()
            self.generator.set_state(distributed.broadcast_(state))

    def _fork_generator(self) -> None:
        """Give ranks other than 0 their own noise stream for the rest of the epoch.

        Rank 0 keeps its stream (without noise its draws are those of a
        single-process fit); the others reseed from a draw of the shared state.
        """
        rank = self.part[0]
        if rank and self.generator is not None:
            g = self.generator
            seed = int(torch.randint(2**62, (1,), generator=g, device=g.device))
            g.manual_seed(seed + rank)

    def _postfix(self) -> dict[str, str]:
        h = self.history
        post = {"loss": f"{h.loss[-1]:.4g}"}
        if h.validation_loss:
            post["val_loss"] = f"{h.validation_loss[-1]:.4g}"
        return post

    def _progress_bar(self):
        if not self.verbose or self.part[0] != 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.max_iter,
            desc=self.description,
            unit="epoch",
            file=sys.stderr,
            dynamic_ncols=True,
        )

"""The estimator base layer: shared parameter constraints, and the base that trains one network.

:class:`TorchEstimatorMixin` gives every estimator its seeds, batch size and fitted
check; :class:`NetworkEstimator` trains one network, ``module_``, through the engine
(from scratch, warm-started or one epoch at a time, with an optional validation split).
Input checks live in ``_validation.py``, devices and seeds in ``_devices.py``, tensors
and chunked inference in ``_tensors.py``, pickling of torch state in ``_torch_state.py``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from numbers import Integral, Real

import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._devices import derive_seed, draw_seed, make_generator, resolve_device
from ._interrupts import finishing, warn_interrupted
from ._nn import ACTIVATIONS, Trainer, distributed
from ._tensors import make_source
from ._torch_state import TorchStateMixin
from ._validation import is_streamed, validate_input

#: Constraints of the training parameters that every estimator shares.
TRAINING_CONSTRAINTS = {
    "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "device": [str, torch.device],
    "n_threads": [None, StrOptions({"adaptive"}), Interval(Integral, 1, None, closed="left")],
}

#: Constraints of the parameters of :class:`NetworkEstimator`'s training loop.
EPOCH_CONSTRAINTS = {
    "alpha": [Interval(Real, 0, None, closed="left")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "shuffle": ["boolean"],
    "warm_start": ["boolean"],
}

#: Constraints of the network-shape parameters of the autoencoders.
NETWORK_CONSTRAINTS = {
    "n_components": [Interval(Integral, 1, None, closed="left")],
    "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "batch_norm": ["boolean"],
}

#: ``batch_size="auto"``, clipped to the number of samples (images: see _images)
AUTO_BATCH_SIZE = 256


def budget_epochs(sample_visits: int, n_samples: int, low: int, high: int) -> int:
    """Epochs of a ``sample_visits`` budget (epochs x samples) on ``n_samples``, within [low, high]."""
    return int(min(high, max(low, math.ceil(sample_visits / n_samples))))


def warn_not_converged(estimator, history) -> None:
    if not (history.converged or history.interrupted or history.stopped_early):
        warnings.warn(
            f"{type(estimator).__name__}: maximum iterations "
            f"(max_iter={estimator.max_iter}) reached and the optimization hasn't "
            "converged yet. Increase max_iter or tol.",
            ConvergenceWarning,
        )


class TorchEstimatorMixin(TorchStateMixin):
    """Seeding and device helpers for estimators; mix in left of ``BaseEstimator``."""

    #: Set only once training succeeded (``n_features_in_`` is set earlier, by
    #: data validation, and would make a failed fit look fitted).
    _fitted_attribute = "module_"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self._fitted_attribute)

    def _validated(self, X):
        """X checked for inference: fitted estimator, same features as in fit."""
        check_is_fitted(self)
        return validate_input(self, X, reset=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _training_seed(self, first_call: bool) -> int:
        """A fresh seed for this training call, reproducible from random_state.

        The first call draws a base seed from ``random_state``; calls that
        continue training (``warm_start``, ``partial_fit``) derive theirs from
        it and the number of epochs done, so each gets new permutations.
        """
        if first_call:
            # one seed for every rank of a data-parallel fit (random_state=None too)
            self._base_seed = distributed.broadcast_object(draw_seed(self.random_state))
            return self._base_seed
        return derive_seed(self._base_seed, self.n_iter_)

    def _epochs_are_a_budget(self) -> bool:
        """Whether ``max_iter`` is a fixed budget (no ConvergenceWarning when it is spent)."""
        return False

    def _trainer(self, module, objective, *, generator, batch_size, max_iter, **options):
        """The engine for this estimator: its step size, progress, threads and name, plus ``options``."""
        return Trainer(
            module,
            objective,
            learning_rate=self.learning_rate_init,
            batch_size=batch_size,
            max_iter=max_iter,
            generator=generator,
            verbose=bool(self.verbose),
            description=type(self).__name__,
            n_threads=self.n_threads,
            **options,
        )

    def _finish_fit(self, store, *, interrupted: bool, history=None) -> None:
        """The end of every fit: ``store()`` sets the fitted attributes, then ``interrupted_``.

        They are stored in one pass during which a Ctrl-C is held, so they are
        never half new. Then a ConvergenceWarning when ``history`` (a training
        run, None when no warning applies) spent ``max_iter`` epochs that were
        not a budget (:meth:`_epochs_are_a_budget`) without converging.
        """
        with finishing() as held:
            store()
            self.interrupted_ = bool(interrupted) or held.hit
        if held.hit:
            warn_interrupted(self, "the final pass")
        if history is not None and not self.interrupted_ and not self._epochs_are_a_budget():
            warn_not_converged(self, history)

    #: Whether ``batch_size="auto"`` is rows *per rank* under torch.distributed
    #: (the global batch grows with the ranks: fits with a budget of epochs get
    #: fewer, longer steps) or the global batch (fits that stop after a number
    #: of steps keep them, each rank computing a share). See docs/distributed.rst.
    _auto_batch_per_rank = True

    def _resolve_batch_size(self, n_samples: int) -> int:
        if self.batch_size == "auto":
            ranks = distributed.world_size() if self._auto_batch_per_rank else 1
            return min(self._auto_batch_size(n_samples) * ranks, n_samples)
        return min(self.batch_size, n_samples)

    def _auto_batch_size(self, n_samples: int) -> int:
        """What ``batch_size="auto"`` means for ``n_samples`` before clipping to them."""
        return AUTO_BATCH_SIZE


class NetworkEstimator(TorchEstimatorMixin, BaseEstimator):
    """An estimator that trains one network, ``module_``, through the engine.

    Subclasses build the network (``_build_module``), say what it minimises
    (``_objective``) and which of their parameters it bakes in
    (``_network_signature``); their public ``fit`` (and ``partial_fit`` where it
    makes sense) validate X and call :meth:`_fit`. Optional hooks check the
    training data (``_check_training_data``), the batch size
    (``_check_batch_size``), and run after a full fit (``_after_fit``).
    """

    _parameter_constraints: dict = {**TRAINING_CONSTRAINTS, **EPOCH_CONSTRAINTS}

    # -- hooks -----------------------------------------------------------------------

    def _objective(self, generator: torch.Generator):
        raise NotImplementedError

    def _network_signature(self, n_features: int) -> tuple:
        """The parameters baked into the network ``_build_module`` makes (validated here)."""
        return (("n_features_in_", n_features),)

    def _check_training_data(self, data, streamed: bool) -> None:
        """Refuse training data the objective cannot model (ValueError naming the fix)."""

    def _check_batch_size(self, batch_size: int) -> None:
        """Refuse a batch size the network cannot train on."""

    def _training_context(self, module, device):
        """A context the training runs in (e.g. a faster memory layout)."""
        return contextlib.nullcontext()

    def _draws_global_rng(self) -> bool:
        """Whether the network draws from torch's global generator (users' dropout)."""
        return False

    def _after_fit(self, module, data) -> None:
        """Called after ``fit`` (not ``partial_fit``) trained ``module`` on ``data``."""

    # -- training --------------------------------------------------------------------

    def _starts_afresh(self, signature: tuple, incremental: bool) -> bool:
        """Whether this call builds a new network (else it continues the fitted one).

        ``fit`` builds afresh unless ``warm_start``; a warm start whose network
        parameters changed since the network was built rebuilds it too, so the
        model always agrees with its parameters. ``partial_fit`` cannot
        continue a network whose parameters changed: it says so.
        """
        if not hasattr(self, "module_"):
            return True
        changed = [
            name for (name, new), (_, old) in zip(signature, self._signature) if new != old
        ]
        if incremental and changed:
            raise ValueError(
                f"partial_fit cannot continue training: {', '.join(changed)} changed "
                "since the network was built. Call fit to build a new network, or "
                "restore the parameters."
            )
        return not incremental and (not self.warm_start or bool(changed))

    def _fit(self, X, incremental: bool):
        """Train on validated X: ``max_iter`` epochs, or one epoch (``incremental``)."""
        signature = self._network_signature(X.shape[1])  # validated before any work
        first = self._starts_afresh(signature, incremental)
        device = resolve_device(self.device)
        data = make_source(X, device, training=True)
        self._check_training_data(data, is_streamed(X))
        seed = self._training_seed(first)
        if first:
            module = self._build_module(X.shape[1], make_generator(seed))
            previous = {"loss": [], "val": [], "n_iter": 0, "best": math.inf}
            optimizer_state = None
        else:
            module = self.module_
            previous = {
                "loss": list(self.loss_curve_),
                "val": list(self.validation_loss_curve_ or []),
                "n_iter": self.n_iter_,
                "best": self.best_loss_,
            }
            optimizer_state = self._optimizer_state if incremental else None
        module.to(device)
        generator = make_generator(seed, device)
        validation = None
        if self.early_stopping and not incremental:
            data, validation = self._split_validation(data, generator)
        batch_size = self._resolve_batch_size(data.n_samples)
        self._check_batch_size(batch_size)
        trainer = self._trainer(
            module,
            self._objective(generator),
            generator=generator,
            batch_size=batch_size,
            max_iter=1 if incremental else self.max_iter,
            weight_decay=self.alpha,
            tol=self.tol,
            n_iter_no_change=None if incremental else self.n_iter_no_change,
            shuffle=self.shuffle,
            optimizer_state=optimizer_state,
            global_seed=seed if self._draws_global_rng() else None,
        )
        with self._training_context(module, device):
            history = trainer.fit(data, validation)

        def store():
            if not incremental:
                self._after_fit(module, data)
            self.module_ = module
            self._signature = signature
            self.device_ = str(device)
            self._optimizer_state = trainer.optimizer_state_dict
            self.loss_curve_ = previous["loss"] + history.loss
            self.validation_loss_curve_ = (
                previous["val"] + history.validation_loss
                if history.validation_loss is not None
                else None
            )
            self.n_iter_ = previous["n_iter"] + history.n_iter
            self.best_loss_ = min(previous["best"], history.best_loss)

        self._finish_fit(
            store, interrupted=history.interrupted, history=None if incremental else history
        )
        return self

    def _split_validation(self, data, generator):
        n = data.n_samples
        n_val = math.ceil(self.validation_fraction * n)
        if n - n_val < 2:
            raise ValueError(
                f"early_stopping=True holds out validation_fraction="
                f"{self.validation_fraction} of the {n} samples, leaving {n - n_val} "
                "to train on; pass more samples or set early_stopping=False."
            )
        perm = data.permutation(generator).cpu().numpy()
        return data.subset(perm[n_val:]), data.subset(perm[:n_val])

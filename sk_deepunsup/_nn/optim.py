"""Adam over parameters packed into one contiguous buffer.

``torch.optim.Adam`` spends most of a small step on Python bookkeeping
(per-parameter state, step counters, hooks). Packing every parameter and its
gradient into one flat tensor turns an Adam update into six tensor operations,
whatever the number of layers. The arithmetic is torch's Adam (with ``L2``
added to the gradient, as ``torch.optim.Adam(weight_decay=...)`` does, but on
weight matrices only, not on biases or normalisation parameters).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = ["FlatAdam"]


class FlatAdam:
    """Adam whose parameters are views into one flat tensor.

    Constructing it moves the parameters' data into ``self.flat`` (each
    parameter becomes a view of it) and points each ``.grad`` at a view of
    ``self.grad``; autograd then accumulates into the flat gradient.

    Parameters
    ----------
    params : iterable of torch.nn.Parameter
        All on one device with one dtype. Parameters with
        ``requires_grad=False`` are left alone.
    lr : float
        Step size.
    betas : (float, float)
        Decay rates of the first and second moment estimates.
    eps : float
        Added to the denominator.
    weight_decay : float
        L2 coefficient: ``weight_decay * w`` is added to the gradient of each
        parameter with two or more dimensions.
    state : dict, optional
        A previous :meth:`state_dict` for the same parameters (continues
        training, e.g. ``partial_fit``).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        state: dict | None = None,
    ):
        # Matrices first, so the L2 term touches one contiguous prefix.
        params = sorted(
            (p for p in params if p.requires_grad), key=lambda p: p.dim() < 2
        )
        if not params:
            raise ValueError("FlatAdam got no parameters that require gradients")
        self.params = params
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.n_decayed = sum(p.numel() for p in params if p.dim() >= 2)

        ref = params[0]
        n = sum(p.numel() for p in params)
        self.flat = torch.empty(n, device=ref.device, dtype=ref.dtype)
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        with torch.no_grad():
            for p in params:
                k = p.numel()
                self.flat[offset : offset + k].copy_(p.reshape(-1))
                p.data = self.flat[offset : offset + k].view_as(p)
                p.grad = self.grad[offset : offset + k].view_as(p)
                offset += k

        if state is None:
            self.step_count = 0
            self.exp_avg = torch.zeros_like(self.flat)
            self.exp_avg_sq = torch.zeros_like(self.flat)
        else:
            self.load_state_dict(state)

    def zero_grad(self) -> None:
        self.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        b1, b2 = self.beta1, self.beta2
        grad = self.grad
        if self.weight_decay:
            d = self.n_decayed
            grad[:d].add_(self.flat[:d], alpha=self.weight_decay)
        bias1 = 1.0 - b1**self.step_count
        bias2 = 1.0 - b2**self.step_count
        self.exp_avg.lerp_(grad, 1.0 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
        denom = self.exp_avg_sq.sqrt().div_(math.sqrt(bias2)).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-self.lr / bias1)

    def state_dict(self) -> dict:
        return {
            "step": self.step_count,
            "exp_avg": self.exp_avg.clone(),
            "exp_avg_sq": self.exp_avg_sq.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        n = self.flat.numel()
        if state["exp_avg"].numel() != n or state["exp_avg_sq"].numel() != n:
            raise ValueError(
                f"optimizer state is for {state['exp_avg'].numel()} parameters, "
                f"these are {n}"
            )
        self.step_count = int(state["step"])
        self.exp_avg = state["exp_avg"].to(self.flat, copy=True)
        self.exp_avg_sq = state["exp_avg_sq"].to(self.flat, copy=True)

    def release(self) -> None:
        """Detach the gradient views (call when training ends)."""
        for p in self.params:
            p.grad = None

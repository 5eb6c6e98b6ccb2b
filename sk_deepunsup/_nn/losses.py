"""Loss functions and the tensor maths of DEC and VAEs.

Nothing here imports scikit-learn.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "RECONSTRUCTION_LOSSES",
    "bernoulli_log_likelihood",
    "clustering_objective",
    "decode_draws",
    "decode_output",
    "elbo",
    "elbo_objective",
    "gaussian_kl",
    "gaussian_log_likelihood",
    "kl_clustering_loss",
    "multinomial_log_likelihood",
    "posterior_draws",
    "reconstruction_loss",
    "reconstruction_objective",
    "SoftAssignment",
    "student_t_assignment",
    "target_distribution",
]

#: ``"mse"``: squared error of a linear output. ``"bce"``: binary
#: cross-entropy of a sigmoid output (the decoder emits logits).
#: ``"multinomial"``: cross-entropy of a softmax over the features against
#: the row's counts or weights (the decoder emits logits), the likelihood of
#: NVDM, ProdLDA and Mult-VAE for documents and user histories.
RECONSTRUCTION_LOSSES = ("mse", "bce", "multinomial")


def multinomial_log_likelihood(x, logits):
    """Per-sample ``sum_j x_j log softmax(logits)_j``: a multinomial over the features.

    ``x`` holds non-negative counts or weights; the multinomial coefficient,
    which does not depend on the model, is left out.
    """
    return (x * torch.log_softmax(logits, dim=1)).sum(dim=1)


def reconstruction_loss(output, target, kind: str = "mse", reduction: str = "mean"):
    """Reconstruction error of decoder ``output`` against ``target``.

    ``reduction="mean"`` averages over all elements (the training loss);
    ``"none"`` returns one value per sample (mean over features). The
    multinomial loss is a per-sample negative log-likelihood, summed over
    features; ``"mean"`` averages it over samples.
    """
    if kind == "multinomial":
        per_sample = -multinomial_log_likelihood(target, output)
        return per_sample.mean() if reduction == "mean" else per_sample
    if kind == "mse":
        if reduction == "mean":
            return F.mse_loss(output, target)
        return (output - target).square().mean(dim=1)
    if kind == "bce":
        if reduction == "mean":
            return F.binary_cross_entropy_with_logits(output, target)
        return F.binary_cross_entropy_with_logits(output, target, reduction="none").mean(
            dim=1
        )
    raise ValueError(f"unknown reconstruction loss {kind!r}; use one of {RECONSTRUCTION_LOSSES}")


def decode_output(output, kind: str = "mse"):
    """Map raw decoder output to data space.

    A sigmoid for ``"bce"``; for ``"multinomial"`` a softmax, the share of the
    row's total expected on each feature (rows sum to 1).
    """
    if kind == "bce":
        return torch.sigmoid(output)
    if kind == "multinomial":
        return torch.softmax(output, dim=1)
    return output


def student_t_assignment(z, centers, alpha: float = 1.0):
    """DEC's soft assignment: a Student's t kernel between embeddings and centres.

    ``q_ij = (1 + |z_i - mu_j|^2 / alpha)^(-(alpha + 1) / 2)``, normalised over
    ``j``. Returns an ``(n_samples, n_clusters)`` tensor whose rows sum to 1.
    """
    sq_dist = torch.cdist(z, centers).square()
    # log-space normalisation: no underflow to 0/0 for far-away points.
    logits = -0.5 * (alpha + 1.0) * torch.log1p(sq_dist / alpha)
    return torch.softmax(logits, dim=1)


class SoftAssignment(torch.nn.Module):
    """``student_t_assignment(encoder(x), centers, alpha)`` as a module (DEC's ``Q``)."""

    def __init__(self, encoder: torch.nn.Module, centers: torch.Tensor, alpha: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.alpha = float(alpha)
        self.register_buffer("centers", centers)

    def forward(self, x):
        return student_t_assignment(self.encoder(x), self.centers, self.alpha)


def target_distribution(q):
    """DEC's auxiliary target ``p_ij = (q_ij^2 / f_j) / sum_j'(...)``.

    ``f_j = sum_i q_ij`` are the soft cluster frequencies; squaring sharpens
    the assignments, dividing by ``f_j`` keeps large clusters from taking over.
    Computed over the whole data set.
    """
    weight = q.square() / q.sum(dim=0).clamp_min(torch.finfo(q.dtype).tiny)
    return weight / weight.sum(dim=1, keepdim=True)


def kl_clustering_loss(p, q):
    """``KL(P || Q)`` averaged over the samples of the batch."""
    eps = torch.finfo(q.dtype).tiny
    return (p * (torch.log(p.clamp_min(eps)) - torch.log(q.clamp_min(eps)))).sum(dim=1).mean()


def gaussian_kl(mu, logvar):
    """Per-sample ``KL(N(mu, exp(logvar)) || N(0, I))``, summed over dimensions."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=1)


def gaussian_log_likelihood(x, mean, log_scale):
    """Per-sample ``log N(x; mean, exp(log_scale)^2)``, summed over features."""
    z = (x - mean) * torch.exp(-log_scale)
    return (-0.5 * z.square() - log_scale - 0.5 * math.log(2 * math.pi)).sum(dim=1)


def bernoulli_log_likelihood(x, logits):
    """Per-sample Bernoulli log-likelihood of ``x`` in [0, 1], summed over features."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)


def reconstruction_objective(kind: str = "mse", noise: float = 0.0, generator=None):
    """Training loss of a (denoising) autoencoder, for :class:`Trainer`.

    In training mode the input is corrupted with Gaussian noise of standard
    deviation ``noise`` (drawn from ``generator``); the target stays clean.
    """

    def objective(module, x):
        inp = x
        if noise and module.training:
            inp = x + noise * torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        return reconstruction_loss(module(inp), x, kind)

    return objective


def clustering_objective(
    target, alpha: float = 1.0, reconstruction_weight: float = 0.0, kind: str = "mse"
):
    """DEC (``reconstruction_weight=0``) or IDEC training loss, for :class:`Trainer`.

    ``target`` is an object whose ``.p`` is the current target distribution of
    the whole data set; batches carry their row indices to slice it.
    ``module`` has ``encoder``, ``decoder`` and ``centers``.
    """

    def objective(module, x, index):
        z = module.encoder(x)
        loss = kl_clustering_loss(target.p[index], student_t_assignment(z, module.centers, alpha))
        if reconstruction_weight:
            loss = loss + reconstruction_weight * reconstruction_loss(module.decoder(z), x, kind)
        return loss

    return objective


def elbo_objective(beta: float = 1.0, generator=None, anneal_rows: int = 0):
    """Negative beta-ELBO per sample, for :class:`Trainer`; ``module`` is a VAEModule.

    In training mode ``z`` is drawn with the reparameterisation trick from
    ``generator``; in evaluation mode (validation) the posterior mean is used.

    ``anneal_rows > 0`` anneals the KL weight (Bowman et al. 2016; Mult-VAE,
    Liang et al. 2018): in training it rises linearly from 0 to ``beta`` over
    the first ``anneal_rows`` rows trained on (e.g. ``n_epochs * n_samples``),
    then stays at ``beta``. The objective keeps that count as its state
    (``objective.rows_seen``, ``objective.current_beta()``); validation
    always uses ``beta``, so validation losses stay comparable across epochs.
    """

    def current_beta():
        if anneal_rows <= 0:
            return beta
        return beta * min(1.0, objective.rows_seen / anneal_rows)

    def objective(module, x):
        mu, logvar = module.posterior(x)
        z = mu
        weight = beta
        if module.training:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
            weight = current_beta()
            objective.rows_seen += x.shape[0]
        log_lik = module.log_likelihood(x, module.decoder(z))
        return (weight * gaussian_kl(mu, logvar) - log_lik).mean()

    objective.rows_seen = 0
    objective.current_beta = current_beta
    return objective


def posterior_draws(mu, logvar, n_draws: int = 32):
    """``n_draws`` fixed samples of ``z ~ q(z|x)`` per row, shape ``(n_draws, n, k)``.

    The standard-normal draws are seeded and antithetic (``eps`` and
    ``-eps``), and shared by every row: the result is deterministic and a
    row's samples do not depend on the other rows.
    """
    half = max(1, n_draws // 2)
    gen = torch.Generator(device="cpu").manual_seed(0)
    eps = torch.randn(half, mu.shape[1], generator=gen, dtype=torch.float64)
    eps = torch.cat([eps, -eps]).to(device=mu.device, dtype=mu.dtype)
    return mu.unsqueeze(0) + torch.exp(0.5 * logvar).unsqueeze(0) * eps.unsqueeze(1)


def decode_draws(module, z):
    """Decoder output for draws ``z`` of shape ``(n_draws, n, k)``, flattened to rows."""
    return module.decoder(z.reshape(z.shape[0] * z.shape[1], -1))


def elbo(module, x, n_draws: int = 32):
    """Per-sample evidence lower bound ``E_q[log p(x|z)] - KL(q(z|x) || p(z))``.

    The expectation is a Monte Carlo average over :func:`posterior_draws`
    (deterministic, and a sample's value does not depend on the others).
    """
    mu, logvar = module.posterior(x)
    z = posterior_draws(mu, logvar, n_draws)
    x_rep = x.unsqueeze(0).expand(z.shape[0], -1, -1).reshape(z.shape[0] * z.shape[1], -1)
    log_lik = module.log_likelihood(x_rep, decode_draws(module, z))
    return log_lik.reshape(z.shape[0], -1).mean(dim=0) - gaussian_kl(mu, logvar)

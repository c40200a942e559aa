"""Evidence lower bound of a sampled sequence along its own sampling trajectory (paper Sec. 3.2 (iv)).

For a two-way mixture path p_t(x | x1) = kappa_t delta_{x1}(x) + (1 - kappa_t) p_0(x) (the sampler's
path at inference, kappa_t = t), Shaul et al. (2024) bound the model likelihood by

    log p(x1) >= - int_0^1 E_{x_t} sum_i l_i(x1, x_t, t) dt,

    l_i = kappa'_t / (1 - kappa_t) * {  1 - p(x1^i | x_t)                  if x_t^i == x1^i
                                     { -log p(x1^i | x_t) - p(x_t^i | x_t)  otherwise

with p = p_{1|t}. Every l_i >= 0 (p(x1^i) + p(x_t^i) <= 1), so the bound is <= 0 and equals 0
exactly when the posterior is certain of x1. Here the integral is the sampler's Euler rule: the
states x_{t_k} it visited on the way to x1, at its times t_k = k / N, weight h = 1 / N. It is a
one-sample estimate (the paper notes that ELBO ranking is unstable); pinned positions are left out.
"""
from __future__ import annotations

from typing import Callable

import torch

from drax.flow.scheduler import PolynomialScheduler


@torch.no_grad()
def trajectory_elbo(
    posterior: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    trajectory: list[torch.Tensor],
    times: list[float],
    x1: torch.Tensor,
    free: torch.Tensor,
    scheduler=None,
) -> torch.Tensor:
    """ELBO estimate (B,) of x1 (B, L) given the visited states (each (B, L)) at `times`.

    posterior(x_t, t) -> logits (B, L, V); free: (B, L) bool, the positions that were sampled.
    scheduler: the sampler's two-way scheduler (default kappa_t = t); its rate is kappa' / (1 - kappa).
    """
    scheduler = scheduler or PolynomialScheduler(1.0)
    if scheduler.has_mid:
        raise ValueError("the trajectory ELBO is defined for two-way (source, target) schedulers only")
    if len(trajectory) != len(times) or not times:
        raise ValueError("trajectory and times must be non-empty and of equal length")
    elbo = torch.zeros(x1.shape[0], device=x1.device)
    h = 1.0 / len(times)
    for x_t, t in zip(trajectory, times):
        rate = float(scheduler.rates(torch.tensor(t))[0])
        logp = posterior(x_t, torch.full((x1.shape[0],), t, device=x1.device)).float().log_softmax(-1)
        logp_x1 = logp.gather(-1, x1[..., None])[..., 0]
        vocab = logp.shape[-1]  # a mask token (id = vocab) has posterior probability 0
        p_xt = logp.gather(-1, x_t.clamp(max=vocab - 1)[..., None])[..., 0].exp() * (x_t < vocab)
        same = x_t == x1
        loss = torch.where(same, 1.0 - logp_x1.exp(), -logp_x1 - p_xt)
        elbo -= h * rate * (loss * free).sum(-1)
    return elbo

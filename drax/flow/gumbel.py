"""Gumbel-max and straight-through Gumbel-softmax draws from categorical logits."""
from __future__ import annotations

import torch

from drax.flow.noise import uniform


def gumbel_noise(shape, generator=None, device=None, canvas_dims: tuple[int, ...] = ()) -> torch.Tensor:
    """Standard Gumbel noise g = -log(-log(u)), u ~ U(0, 1); generator: a torch.Generator or a RowNoise."""
    u = uniform(shape, generator, device, canvas_dims)
    return -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))


def gumbel_max(logits: torch.Tensor, temperature: float, generator=None) -> torch.Tensor:
    """Ids drawn from softmax(logits / temperature); argmax for temperature 0.

    Cheaper than torch.multinomial over a large vocabulary: one noise draw and an argmax.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    return (logits.float() / temperature + gumbel_noise(logits.shape, generator, logits.device)).argmax(-1)


def gumbel_softmax_sample(
    logits: torch.Tensor, tau: float = 1.0, generator=None, canvas_dims: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard Gumbel-softmax: ids and the straight-through delta y_soft - sg(y_soft).

    The delta is numerically zero; adding `delta @ W` to an embedding lookup W[ids] gives the
    straight-through gradient of the relaxed sample (Jang et al. 2016) back to the logits.
    """
    perturbed = logits + gumbel_noise(logits.shape, generator, logits.device, canvas_dims).to(logits.dtype)
    y_soft = torch.softmax(perturbed / tau, dim=-1)
    return perturbed.argmax(-1), y_soft - y_soft.detach()

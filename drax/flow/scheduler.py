"""Mixing schedulers kappa(t) for mixture probability paths.

A mixture path (paper Eq. 2, 7) puts, independently at every position,

    p_t(x | x0, x1, a) = kappa_0(t) delta_{x0}(x) + kappa_mid(t) p_mid(x | a) + kappa_1(t) delta_{x1}(x)

with kappa_0 + kappa_mid + kappa_1 = 1. A two-way path has kappa_mid = 0.

The marginal velocity of such a path (App. B, Gat et al. 2024 Thm. 3) is

    u_t(x, z) = alpha_1 p_{1|t}(x | z) + alpha_mid p_mid(x) + beta delta_z(x),
    alpha_j = dkappa_j - kappa_j * dkappa_0 / kappa_0,   beta = dkappa_0 / kappa_0,

valid when the source has the smallest d/dt log kappa, which the factorised construction guarantees.
Schedulers expose kappa, its derivative and the jump rates alpha_1, alpha_mid used by the sampler.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Rates diverge at t = 0 (r = t^q, q < 1) and at t = 1 (kappa_0 -> 0); the sampler never evaluates
# t = 1 (its last step takes x1_hat) and t is clamped away from 0 by this much.
_T_EPS = 1e-4


def _as_float(t) -> torch.Tensor:
    t = torch.as_tensor(t)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


@dataclass
class Kappa:
    """kappa_j(t) and d kappa_j / dt for the source (0), middle and target (1) components."""

    source: torch.Tensor
    mid: torch.Tensor
    target: torch.Tensor
    d_source: torch.Tensor
    d_mid: torch.Tensor
    d_target: torch.Tensor


class TriMixtureScheduler:
    """Factorised tri-mixture scheduler (App. C.1, Eq. 25-28).

        kappa_1 = 1 - s,   kappa_mid = r s,   kappa_0 = (1 - r) s,   s = 1 - t^p,   r = t^q.

    kappa_mid is bell-shaped with its peak at t* = (q / (p + q))^(1/p) (0.5 for p = 2, q = 2/3).
    The jump rates simplify to alpha_mid = r' s / (1 - r) and alpha_1 = -s'/s + (1 - s) r' / (1 - r),
    both non-negative, so no negative probabilities appear in the Euler step.
    """

    def __init__(self, p: float = 2.0, q: float = 2.0 / 3.0):
        for key, value in (("p", p), ("q", q)):
            if not value > 0:
                raise ValueError(
                    f"scheduler_conf.{key} must be > 0 (got {value}); the paper uses p = 2, q = 2/3"
                )
        self.p = float(p)
        self.q = float(q)

    @property
    def has_mid(self) -> bool:
        return True

    @property
    def mid_peak(self) -> float:
        return (self.q / (self.p + self.q)) ** (1.0 / self.p)

    def kappa(self, t: torch.Tensor) -> Kappa:
        t = _as_float(t)
        s = 1 - t**self.p
        r = t**self.q
        ds = -self.p * t ** (self.p - 1)
        dr = self.q * t.clamp_min(_T_EPS) ** (self.q - 1)
        return Kappa(
            source=(1 - r) * s,
            mid=r * s,
            target=1 - s,
            d_source=-dr * s + (1 - r) * ds,
            d_mid=dr * s + r * ds,
            d_target=-ds,
        )

    def time_of_target(self, fraction: torch.Tensor) -> torch.Tensor:
        """t with kappa_1(t) = fraction: kappa_1 = t^p."""
        return fraction.float() ** (1.0 / self.p)

    def rates(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_1, alpha_mid) at time t < 1."""
        t = _as_float(t).clamp(_T_EPS, 1 - _T_EPS)
        s = 1 - t**self.p
        r = t**self.q
        ds = -self.p * t ** (self.p - 1)
        dr = self.q * t ** (self.q - 1)
        alpha_mid = dr * s / (1 - r)
        alpha_target = -ds / s + (1 - s) * dr / (1 - r)
        return alpha_target, alpha_mid


class PolynomialScheduler:
    """Two-way scheduler kappa_1 = t^n, kappa_0 = 1 - t^n (n = 1: the linear sampling scheduler of App. C.3).

    The only jump rate is alpha_1 = dkappa_1 / (1 - kappa_1); an Euler step of size h jumps to a
    sampled x1_hat with probability 1 - exp(-h alpha_1).
    """

    def __init__(self, exponent: float = 1.0):
        if not exponent > 0:
            raise ValueError(f"scheduler_conf.exponent must be > 0 (got {exponent})")
        self.exponent = float(exponent)

    @property
    def has_mid(self) -> bool:
        return False

    def kappa(self, t: torch.Tensor) -> Kappa:
        t = _as_float(t)
        n = self.exponent
        k1 = t**n
        dk1 = n * t.clamp_min(_T_EPS) ** (n - 1) if n < 1 else n * t ** (n - 1)
        zero = torch.zeros_like(t)
        return Kappa(source=1 - k1, mid=zero, target=k1, d_source=-dk1, d_mid=zero, d_target=dk1)

    def time_of_target(self, fraction: torch.Tensor) -> torch.Tensor:
        """t with kappa_1(t) = fraction: kappa_1 = t^n."""
        return fraction.float() ** (1.0 / self.exponent)

    def rates(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.kappa(_as_float(t).clamp(_T_EPS, 1 - _T_EPS))
        return k.d_target / (1 - k.target), torch.zeros_like(k.target)


SCHEDULERS = {"tri_mixture": TriMixtureScheduler, "polynomial": PolynomialScheduler}


def build_scheduler(name: str, **conf) -> TriMixtureScheduler | PolynomialScheduler:
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler '{name}'; valid choices: {', '.join(SCHEDULERS)}")
    try:
        return SCHEDULERS[name](**conf)
    except TypeError as e:
        raise ValueError(f"bad scheduler_conf for '{name}': {e}") from None

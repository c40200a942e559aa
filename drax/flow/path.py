"""Probability paths: how a training state x_t is drawn from (x0, p_mid, x1) at time t.

Every path here is a per-position mixture (paper Eq. 6-7): a position of x_t comes from the source
with probability kappa_0(t), from the middle distribution with kappa_mid(t), else it is the target
token. Paths differ only in what the source and middle components are:

    name          source                middle                 scheduler (default)
    uniform       uniform over vocab    -                      polynomial (2-way)
    mask          a mask token          -                      polynomial (2-way)
    uniform_mid   uniform over vocab    uniform over vocab     tri_mixture
    audio_mid     uniform over vocab    p_mid(. | audio)       tri_mixture    <- Drax
    mask_mid      a mask token          p_mid(. | audio)       tri_mixture    <- Drax, mask source
    audio_src     p_mid(. | audio)      -                      polynomial (2-way)

Tokens drawn from the audio-conditioned p_mid use the straight-through Gumbel-softmax, so the
loss on the decoder reaches p_mid's parameters (paper Sec. 3.2, "Training").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from drax.flow.gumbel import gumbel_softmax_sample
from drax.flow.noise import randint, uniform
from drax.flow.scheduler import build_scheduler


@dataclass
class PathSample:
    xt: torch.Tensor  # (B, L) token ids
    # (B, L, V), numerically zero; carries the straight-through gradient of the Gumbel-softmax
    # samples back to p_mid. Add `soft_delta @ embedding_weight` to the token embeddings.
    soft_delta: torch.Tensor | None
    # (B, L) bool: the positions where soft_delta can carry a gradient (drawn from p_mid); elsewhere its
    # rows are zero, so `soft_delta[soft_rows] @ embedding_weight` is all a decoder needs to compute
    soft_rows: torch.Tensor | None
    noised: torch.Tensor  # (B, L) bool: drawn from the source or the middle component, not the target


_COMPONENTS = {
    # name: (source, middle)
    "uniform": ("uniform", None),
    "mask": ("mask", None),
    "uniform_mid": ("uniform", "uniform"),
    "audio_mid": ("uniform", "audio"),
    "mask_mid": ("mask", "audio"),
    "audio_src": ("audio", None),
}
PATH_CHOICES = tuple(_COMPONENTS)


class MixturePath:
    """A source / (middle) / target mixture path over a vocabulary of `vocab_size` tokens.

    `mask_id` is the id of the mask token for the `mask` path (an extra embedding row, never predicted).
    """

    def __init__(self, name: str, vocab_size: int, scheduler, gumbel_tau: float = 1.0):
        if name not in _COMPONENTS:
            raise ValueError(f"unknown path '{name}'; valid choices: {', '.join(PATH_CHOICES)}")
        self.name = name
        self.source, self.mid = _COMPONENTS[name]
        self.vocab_size = vocab_size
        self.mask_id = vocab_size  # only used by the mask path
        self.gumbel_tau = gumbel_tau
        if self.mid is not None and not scheduler.has_mid:
            raise ValueError(f"path '{name}' has a middle component and needs scheduler 'tri_mixture'")
        if self.mid is None and scheduler.has_mid:
            raise ValueError(f"path '{name}' is two-way and needs scheduler 'polynomial'")
        self.scheduler = scheduler

    @property
    def uses_audio_pmid(self) -> bool:
        """True if the path draws from the learned p_mid(. | audio) (then L_mid is trained)."""
        return "audio" in (self.source, self.mid)

    @property
    def num_embeddings(self) -> int:
        return self.vocab_size + (1 if self.source == "mask" else 0)

    def _draw(self, kind, shape, pmid_logits, generator, device):
        if kind == "uniform":
            return randint(self.vocab_size, shape, generator, device, canvas_dims=(1,)), None
        if kind == "mask":
            return torch.full(shape, self.mask_id, dtype=torch.long, device=device), None
        return gumbel_softmax_sample(pmid_logits, self.gumbel_tau, generator, canvas_dims=(1,))

    def sample_source(self, shape, pmid_logits=None, generator=None, device=None) -> torch.Tensor:
        """x0 for the sampler (no gradient)."""
        if self.source == "audio":
            with torch.no_grad():
                return gumbel_softmax_sample(pmid_logits, self.gumbel_tau, generator)[0]
        return self._draw(self.source, shape, None, generator, device)[0]

    def sample_noise(self, shape, t: torch.Tensor, pmid_logits=None, generator=None, device=None) -> torch.Tensor:
        """Tokens (B, L) of positions known not to be the target at times t (B,): from the source with
        probability kappa_0 / (kappa_0 + kappa_mid), else from the middle component (no gradient)."""
        kappa = self.scheduler.kappa(t.to(torch.float32))
        with torch.no_grad():
            x0 = self._draw(self.source, shape, pmid_logits, generator, device)[0]
            if self.mid is None:
                return x0
            from_source = uniform(shape, generator, device) * (kappa.source + kappa.mid)[:, None] < kappa.source[:, None]
            return torch.where(from_source, x0, self._draw(self.mid, shape, pmid_logits, generator, device)[0])

    def sample(
        self,
        x1: torch.Tensor,
        t: torch.Tensor,
        pmid_logits: torch.Tensor | None = None,
        generator=None,
    ) -> PathSample:
        """Draw x_t ~ p_t(. | x0, x1, a) for target ids x1 (B, L) at times t (B,); generator: a
        torch.Generator, or a RowNoise (drax/flow/noise.py) for draws per utterance."""
        if self.uses_audio_pmid and pmid_logits is None:
            raise ValueError(f"path '{self.name}' needs p_mid logits")
        kappa = self.scheduler.kappa(t.to(torch.float32))
        k0 = kappa.source[:, None]
        kmid = kappa.mid[:, None]
        u = uniform(x1.shape, generator, x1.device, canvas_dims=(1,))
        from_source = u < k0
        from_mid = (u >= k0) & (u < k0 + kmid)

        x0, delta0 = self._draw(self.source, x1.shape, pmid_logits, generator, x1.device)
        xt = torch.where(from_source, x0, x1)
        soft_delta, soft_rows = (None, None) if delta0 is None else (delta0 * from_source[..., None], from_source)
        if self.mid is not None:
            xmid, delta_mid = self._draw(self.mid, x1.shape, pmid_logits, generator, x1.device)
            xt = torch.where(from_mid, xmid, xt)
            if delta_mid is not None:
                soft_delta, soft_rows = delta_mid * from_mid[..., None], from_mid
        return PathSample(xt=xt, soft_delta=soft_delta, soft_rows=soft_rows, noised=from_source | from_mid)


def build_path(name: str, vocab_size: int, scheduler: str | None = None, scheduler_conf=None,
               gumbel_tau: float = 1.0) -> MixturePath:
    """Build a path from its YAML name; the scheduler defaults to the one the path needs."""
    if name not in _COMPONENTS:
        raise ValueError(f"unknown path '{name}'; valid choices: {', '.join(PATH_CHOICES)}")
    if scheduler is None:
        scheduler = "tri_mixture" if _COMPONENTS[name][1] else "polynomial"
    return MixturePath(name, vocab_size, build_scheduler(scheduler, **(scheduler_conf or {})), gumbel_tau)

"""Samplers: from a starting canvas to x1 in a few posterior calls, one class per algorithm.

Every sampler has the same interface, `sample(posterior, x_init, pinned, generator, return_trajectory)
-> SampleOutput`; the model picks one from its DecodingOptions (`DraxASRModel.sampler`). A posterior
maps a canvas x_t (B, L) and times t (B,) to the logits (B, L, V) of p_{1|t}; pinned (B, L) positions
(prompt, accepted prefix) are copied from x_init and never change.

    EulerJumps       the paper's Euler CTMC sampler (Eq. 10-11, App. B and C.3)
    ConfidenceOrder  mask-predict / MaskGIT ordering on the same time grid
    JacobiSteps      every free position re-predicted at t = 1 (or read_time) each step, to a fixed point
    BlockSampler     blocks of a block-parallel model committed by confidence (drax/flow/block.py)

The first three share the loop of `StepSampler`: at most `nfe` steps at t_k = k / nfe (k = 0..nfe-1),
each one posterior call and a draw x1_hat ~ p_{1|t}(. | x_t) at `temperature` (Gumbel-max; argmax at
0); a sampler says how the state moves towards x1_hat, and the last step takes x1_hat everywhere.

EulerJumps: each position independently jumps with probability 1 - exp(-h (alpha_1 + alpha_mid)) to
x1_hat or, with weight alpha_mid / (alpha_1 + alpha_mid), to a draw from p_mid (only when p_mid is
used, App. D.6), and stays otherwise (h = 1 / nfe). For the linear two-way scheduler kappa = t the jump
probability is 1 - exp(-h / (1 - t)). A jump to the current token is a no-op, which is how the
"efficient" sampler of Shaul et al. (2024) handles the diagonal of the rate matrix.

ConfidenceOrder (Ghazvininejad et al. 2019, Chang et al. 2022): after step k, round(kappa_1(t_{k+1}) x
free positions) positions are decided, the new ones being the undecided positions whose x1_hat has the
highest probability; a decided position keeps its token until the last step. No p_mid term.

JacobiSteps: every free position takes x1_hat at every step, the posterior read at t = 1 (the denoiser
read as "this state is clean"; `read_time` < 1 reads every canvas as that noisy): Jacobi iteration
of the whole canvas. With a causal denoiser
(`decoder_conf.attention_block: 1`) the prediction of position j depends on the positions before it
only, so after k steps the first k free positions hold exactly what greedy left-to-right decoding at
t = 1 would, and the rest what the model predicts from that prefix. It stops at the first step that
changes nothing that matters (a fixed point, which stays one): no position at all, or, given
`end_token`, no position up to each row's first end token (what follows it is not part of the
transcript, and with a causal denoiser cannot change what comes before); `SampleOutput.steps` says
how many steps it took. Told that the denoiser is causal (`causal=True`), it evaluates each step only
up to one position past the furthest first end token of the batch, the positions beyond holding the
end token: every row's fixed point is the same, at the cost of the transcripts' length.
`window=w` (causal) re-predicts at most w positions a step, from the first one that can still change:
positions before it are final (their prefix is), and a position predicted from a final prefix is
final, so each step settles at least one more position and the fixed point is the same greedy
decoding. It gives up only what the positions beyond the window would have guessed from a prefix
that is not final yet; the last allowed step re-predicts every position, so a transcript cut short by
`nfe` still ends on the model's guesses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from drax.flow.gumbel import gumbel_max

# posterior(x_t, t) -> logits of p_{1|t}(. | x_t), shape (B, L, V); t has shape (B,)
Posterior = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ORDERS = ("random", "confidence", "jacobi")


@dataclass
class SampleOutput:
    tokens: torch.Tensor  # (B, L) final x_1
    steps: int = 0  # posterior calls made: nfe, or fewer when the jacobi order reached a fixed point
    # Per step k: the state x_{t_k} fed to the model, and the x1_hat it drew (when asked for).
    trajectory: list[torch.Tensor] = field(default_factory=list)
    x1_hats: list[torch.Tensor] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    # The block decoder (drax/flow/block.py), per call when asked for: the committed positions (B, L) bool
    committed: list[torch.Tensor] = field(default_factory=list)
    # (B,) the calls each row took part in (the block decoder's rows finish apart); None: all `steps`
    row_steps: torch.Tensor | None = None


class StepSampler:
    """The loop the Euler-grid samplers share; a subclass says how a step moves the state (`update`)
    and may evaluate fewer positions (`width`) or stop early (`finished`)."""

    def __init__(self, nfe: int, temperature: float = 0.01):
        if int(nfe) != nfe or nfe < 1:
            raise ValueError(f"nfe must be a positive integer (got {nfe})")
        self.nfe, self.temperature = int(nfe), temperature

    def time(self, k: int) -> float:
        return k / self.nfe  # integer step index: exactly nfe steps for every nfe

    @torch.no_grad()
    def sample(self, posterior: Posterior, x_init: torch.Tensor, pinned: torch.Tensor | None = None,
               generator: torch.Generator | None = None, return_trajectory: bool = False) -> SampleOutput:
        """Integrate from x_init (B, L) to t = 1 in at most `nfe` posterior calls; pinned (B, L) bool."""
        x = x_init.clone()
        out = SampleOutput(tokens=x)
        self.reset(x_init, pinned)
        for k in range(self.nfe):
            t = self.time(k)
            width = self.width(x, k)
            logits = posterior(x[:, :width], torch.full((x.shape[0],), t, device=x.device))
            x1_hat = gumbel_max(logits, self.temperature, generator)
            if width < x.shape[1]:
                x1_hat = self.beyond(x, x1_hat)
            if return_trajectory:
                out.trajectory.append(x.clone())
                out.x1_hats.append(x1_hat.clone())
                out.times.append(t)
            new = x1_hat if k == self.nfe - 1 else self.update(k, x, x1_hat, logits, generator)
            if pinned is not None:
                new = torch.where(pinned, x_init, new)
            out.steps = k + 1
            stop = self.finished(x, new, width)
            x = new
            if stop:
                break
        out.tokens = x
        return out

    def reset(self, x_init: torch.Tensor, pinned: torch.Tensor | None) -> None:
        """Start a canvas (a sampler keeping state across steps sets it up here)."""

    def width(self, x: torch.Tensor, k: int) -> int:
        return x.shape[1]

    def beyond(self, x: torch.Tensor, x1_hat: torch.Tensor) -> torch.Tensor:
        """x1_hat (B, width) completed to the whole canvas."""
        raise NotImplementedError

    def update(self, k: int, x, x1_hat, logits, generator) -> torch.Tensor:
        raise NotImplementedError

    def finished(self, old: torch.Tensor, new: torch.Tensor, width: int) -> bool:
        return False


class EulerJumps(StepSampler):
    """The paper's sampler; `scheduler` gives the jump rates (PolynomialScheduler(1) = the paper's),
    pmid_probs (B, L, V) adds the p_mid term when the scheduler has a middle component."""

    def __init__(self, scheduler, nfe: int, temperature: float = 0.01, pmid_probs: torch.Tensor | None = None):
        super().__init__(nfe, temperature)
        self.scheduler = scheduler
        self.pmid_probs = pmid_probs if scheduler.has_mid else None

    def update(self, k, x, x1_hat, logits, generator):
        h = 1.0 / self.nfe
        alpha_target, alpha_mid = self.scheduler.rates(torch.tensor(self.time(k)))
        alpha_mid = alpha_mid if self.pmid_probs is not None else torch.zeros_like(alpha_mid)
        rate = float(alpha_target + alpha_mid)
        u = torch.rand(x.shape, generator=generator, device=x.device)
        jump = u < 1.0 - torch.exp(torch.tensor(-h * rate)).item()
        dest = x1_hat
        if self.pmid_probs is not None:
            probs = self.pmid_probs
            x_mid = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view_as(x)
            to_mid = torch.rand(x.shape, generator=generator, device=x.device) < float(alpha_mid / (alpha_target + alpha_mid))
            dest = torch.where(to_mid, x_mid, x1_hat)
        return torch.where(jump, dest, x)


class ConfidenceOrder(StepSampler):
    """Mask-predict ordering on the time grid of `scheduler` (kappa_1: the fraction decided)."""

    def __init__(self, scheduler, nfe: int, temperature: float = 0.01):
        super().__init__(nfe, temperature)
        self.scheduler = scheduler

    def reset(self, x_init, pinned):
        self.decided = pinned.clone() if pinned is not None else torch.zeros_like(x_init, dtype=torch.bool)
        self.free = (~self.decided).sum(1)

    def update(self, k, x, x1_hat, logits, generator):
        confidence = logits.log_softmax(-1).gather(-1, x1_hat[..., None]).squeeze(-1)
        confidence = confidence.masked_fill(self.decided, float("-inf"))
        goal = (self.free * float(self.scheduler.kappa(torch.tensor(self.time(k + 1))).target)).round().long()
        more = goal - (self.decided.sum(1) - (x.shape[1] - self.free))  # new decisions of each row
        rank = confidence.argsort(1, descending=True).argsort(1)
        pick = (rank < more[:, None]) & ~self.decided
        self.decided |= pick
        return torch.where(pick, x1_hat, x)


class JacobiSteps(StepSampler):
    """Jacobi iteration at t = 1 to a fixed point (see the module docstring)."""

    def __init__(self, nfe: int, temperature: float = 0.01, end_token: int | None = None, causal: bool = False,
                 window: int | None = None, read_time: float = 1.0):
        super().__init__(nfe, temperature)
        self.read_time = read_time
        if window is not None and not (causal and end_token is not None and window >= 1):
            raise ValueError(f"window {window}: a jacobi step's window needs the jacobi order, a causal denoiser, "
                             "an end token and window >= 1")
        self.end_token, self.causal, self.window = end_token, causal, window

    def time(self, k: int) -> float:
        return self.read_time

    def reset(self, x_init, pinned):
        # the first position a step can change (every position before it is final)
        free = (~pinned).any(0) if pinned is not None else None
        self.final = int(free.int().argmax()) if free is not None and free.any() else 0

    def width(self, x, k):
        self.reach = _reach(x, self.end_token) if self.causal and self.end_token is not None else x.shape[1]
        if self.window is None or k == self.nfe - 1:
            return self.reach
        return min(self.reach, self.final + self.window)

    def beyond(self, x, x1_hat):  # beyond the window: unchanged; beyond the reach: the end token
        b, width = x1_hat.shape
        return torch.cat([x1_hat, x[:, width:self.reach], x1_hat.new_full((b, x.shape[1] - self.reach), self.end_token)], 1)

    def update(self, k, x, x1_hat, logits, generator):
        return x1_hat

    def finished(self, old, new, width):
        if _settled(old, new, self.end_token) and _first_end(new, self.end_token).max() < width:
            return True  # (every row's first end token re-predicted: nothing beyond the window is left)
        if self.window is not None:
            changed = (new[:, :width] != old[:, :width]).any(0)
            self.final = min(width, int(changed.int().argmax()) + 1) if changed.any() else width
        return False


def _first_end(x: torch.Tensor, end_token: int | None = None) -> torch.Tensor:
    """(B,) position of each row's first `end_token` in x (B, L), L where it has none (no end token
    given: 0, a fixed point that needs none)."""
    if end_token is None:
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    is_end = x == end_token
    return torch.where(is_end.any(1), is_end.int().argmax(1), x.shape[1])


def _reach(x: torch.Tensor, end_token: int) -> int:
    """One past the furthest first end token of the rows of x (B, L), at most L: the positions a causal
    denoiser's step must evaluate (no end token in a row: all L)."""
    return min(x.shape[1], int(_first_end(x, end_token).max()) + 2)


def _settled(old: torch.Tensor, new: torch.Tensor, end_token: int | None) -> bool:
    """No row changed (up to and including its first `end_token`, which it must hold, when given)."""
    if end_token is None:
        return torch.equal(old, new)
    is_end = new == end_token
    first = _first_end(new, end_token)  # (B,): no end -> whole row
    upto = torch.arange(new.shape[1], device=new.device)[None] <= first[:, None]
    return bool(is_end.any(1).all() and ((old == new) | ~upto).all())

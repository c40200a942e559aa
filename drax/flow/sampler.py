"""Euler sampler for the CTMC of a mixture path (paper Eq. 10-11, App. B and C.3).

Over N steps of size h = 1/N at times t_k = k/N (k = 0..N-1, so NFE = N exactly), each position
of the current state z independently

    1. draws x1_hat ~ p_{1|t}(. | z) at temperature tau (Gumbel-max on logits / tau),
    2. jumps with probability 1 - exp(-h (alpha_1 + alpha_mid)) to x1_hat, or, with weight
       alpha_mid / (alpha_1 + alpha_mid), to a draw from p_mid (only when p_mid is used, App. D.6),
    3. stays otherwise; the last step takes x1_hat everywhere.

For the linear two-way scheduler kappa = t the jump probability is 1 - exp(-h / (1 - t)).
A jump to the current token is a no-op, which is how the "efficient" sampler of Shaul et al. (2024)
handles the diagonal of the rate matrix. Pinned positions (prompt, accepted prefix) never change.

`order="confidence"` replaces the independent jumps by mask-predict / MaskGIT ordering (Ghazvininejad
et al. 2019, Chang et al. 2022): after step k, round(kappa_1(t_{k+1}) x free positions) positions are
decided, the new ones being the undecided positions whose x1_hat has the highest probability; a
decided position keeps its token until the last step, which takes x1_hat everywhere as above. Same
NFE, same scheduler, no p_mid term.

`order="jacobi"` lets every free position jump to x1_hat at every step, the posterior evaluated at
t = 1 (the denoiser read as "this state is clean"): Jacobi iteration of the whole canvas, no p_mid
term. With a causal denoiser (`decoder_conf.attention_block: 1`) the prediction of position j depends
on the positions before it only, so after k steps the first k free positions hold exactly what
greedy left-to-right decoding at t = 1 would, and the rest what the model predicts from that prefix.
It stops at the first step that changes nothing that matters (a fixed point, which stays one): no
position at all, or, given `end_token`, no position up to each row's first end token (what follows
it is not part of the transcript, and with a causal denoiser cannot change what comes before). So
`nfe` is its most steps; `SampleOutput.steps` says how many it took. Told that the denoiser is
causal (`causal=True`), it evaluates each step only up to one position past the furthest first end
token of the batch, the positions beyond holding the end token: every row's fixed point (greedy
decoding up to its end) is the same, at the cost of the transcripts' length instead of the canvas's.

`window=w` (jacobi, causal) re-predicts at most w positions a step, from the first one that can still
change: positions before it are final (their prefix is), and a position predicted from a final
prefix is final, so each step settles at least one more position, as the whole canvas does, and the
fixed point is the same greedy decoding. It gives up only what the positions beyond the window would
have guessed from a prefix that is not final yet; the last allowed step (k = nfe - 1) re-predicts
every position, so a transcript cut short by `nfe` still ends on the model's guesses, not on the start.
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


class EulerSampler:
    """Few-step sampler; `scheduler` gives the jump rates (PolynomialScheduler(1) = the paper's)."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    @torch.no_grad()
    def sample(
        self,
        posterior: Posterior,
        x_init: torch.Tensor,
        nfe: int,
        temperature: float = 0.01,
        pinned: torch.Tensor | None = None,
        pmid_probs: torch.Tensor | None = None,
        return_trajectory: bool = False,
        generator: torch.Generator | None = None,
        order: str = "random",
        end_token: int | None = None,
        causal: bool = False,
        window: int | None = None,
    ) -> SampleOutput:
        """Integrate from x_init (B, L) at t = 0 to t = 1 in exactly `nfe` posterior calls.

        pinned: (B, L) bool, positions copied from x_init at every step.
        pmid_probs: (B, L, V) probabilities of p_mid; used only if the scheduler has a middle component.
        order: "random" (independent jumps, the paper's), "confidence" or "jacobi" (see the module docstring).
        end_token: the jacobi order's fixed point looks at each row up to its first end token only.
        causal: the logits of position j depend on the positions before j only; with the jacobi order
        and an end token, steps evaluate the canvas up to one past the furthest first end token.
        window: the jacobi order re-predicts at most this many positions a step (causal only; None: all).
        """
        if int(nfe) != nfe or nfe < 1:
            raise ValueError(f"nfe must be a positive integer (got {nfe})")
        if order not in ORDERS:
            raise ValueError(f"unknown jump order '{order}'; valid: {', '.join(ORDERS)}")
        nfe = int(nfe)
        use_mid = pmid_probs is not None and self.scheduler.has_mid
        if order != "random" and use_mid:
            raise ValueError(f"the {order} order has no p_mid term; use it without use_pmid")
        if window is not None and not (order == "jacobi" and causal and end_token is not None and window >= 1):
            raise ValueError(f"window {window}: a jacobi step's window needs the jacobi order, a causal denoiser, "
                             "an end token and window >= 1")
        if order == "confidence":
            decided = pinned.clone() if pinned is not None else torch.zeros_like(x_init, dtype=torch.bool)
            free = (~decided).sum(1)
        x = x_init.clone()
        out = SampleOutput(tokens=x)
        batch = x.shape[0]
        h = 1.0 / nfe
        # the first position a jacobi step can change (every position before it is final)
        final = int((~pinned).any(0).int().argmax()) if pinned is not None and (~pinned).any() else 0
        for k in range(nfe):
            t = k * h  # integer step index: exactly nfe steps for every nfe
            width = x.shape[1]
            if causal and order == "jacobi" and end_token is not None:
                width = _reach(x, end_token)
            upto = width if window is None or k == nfe - 1 else min(width, final + window)
            logits = posterior(x[:, :upto], torch.full((batch,), 1.0 if order == "jacobi" else t, device=x.device))
            x1_hat = gumbel_max(logits, temperature, generator)
            if upto < x.shape[1]:  # beyond the window: unchanged; beyond the reach: the end token
                x1_hat = torch.cat([x1_hat, x[:, upto:width], x1_hat.new_full((batch, x.shape[1] - width), end_token)], 1)
            if return_trajectory:
                out.trajectory.append(x.clone())
                out.x1_hats.append(x1_hat.clone())
                out.times.append(t)
            if k == nfe - 1 or order == "jacobi":
                new = x1_hat
            elif order == "confidence":
                confidence = logits.log_softmax(-1).gather(-1, x1_hat[..., None]).squeeze(-1)
                confidence = confidence.masked_fill(decided, float("-inf"))
                goal = (free * float(self.scheduler.kappa(torch.tensor(t + h)).target)).round().long()
                more = goal - (decided.sum(1) - (x.shape[1] - free))  # new decisions of each row
                rank = confidence.argsort(1, descending=True).argsort(1)
                pick = (rank < more[:, None]) & ~decided
                decided |= pick
                new = torch.where(pick, x1_hat, x)
            else:
                alpha_target, alpha_mid = self.scheduler.rates(torch.tensor(t))
                alpha_mid = alpha_mid if use_mid else torch.zeros_like(alpha_mid)
                rate = float(alpha_target + alpha_mid)
                u = torch.rand(x.shape, generator=generator, device=x.device)
                jump = u < 1.0 - torch.exp(torch.tensor(-h * rate)).item()
                dest = x1_hat
                if use_mid:
                    x_mid = torch.multinomial(
                        pmid_probs.reshape(-1, pmid_probs.shape[-1]), 1, generator=generator
                    ).view_as(x)
                    to_mid = torch.rand(x.shape, generator=generator, device=x.device) < float(
                        alpha_mid / (alpha_target + alpha_mid)
                    )
                    dest = torch.where(to_mid, x_mid, x1_hat)
                new = torch.where(jump, dest, x)
            if pinned is not None:
                new = torch.where(pinned, x_init, new)
            out.steps = k + 1
            if order == "jacobi" and _settled(x, new, end_token) and _first_end(new, end_token).max() < upto:
                x = new  # (every row's first end token re-predicted: nothing beyond the window is left)
                break
            if window is not None:
                changed = (new[:, :upto] != x[:, :upto]).any(0)
                final = min(upto, int(changed.int().argmax()) + 1) if changed.any() else upto
            x = new
        out.tokens = x
        return out


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

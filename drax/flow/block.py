"""Block-parallel decoding of a block-parallel Drax (`model_conf.active_block`, drax/asr/model.py).

The canvas is decoded left to right, a row's active block being the n positions from its first
uncommitted one. The positions before the active block are committed: their self-attention
keys/values were computed once, causally and at t = 1, and are read from a cache. Each decoder call
evaluates a row's active block (plus the committed positions not cached yet) and, per row,

    1. reads x1_hat and its probability at every position of the block (greedy, or at a temperature),
    2. commits the block's first position, predicted from the state of the last committed position
       (the shifted readout): the greedy AR token, and every other uncommitted position whose
       probability is at least `threshold` (Fast-dLLM's rule, its one-token fallback being the AR
       token: at worst the AR decoder's pace and result),
    3. slides the block to the first position still uncommitted and redraws the uncommitted positions
       as the path's noise at the block's time t = kappa_1^{-1}(committed / n): the state the path
       puts there when that fraction is target.

A committed token never changes; with n = 1 or `threshold` 1 the decoding is greedy AR decoding, one
token per call. A block never holds a given position (a free language slot before given prompt
tokens is a block of its own). A row is done when an end token is committed with every position
before it committed; rows advance independently, so a call carries each row's own block. Calls
made, tokens committed and the rows' results go into a SampleOutput.
"""
from __future__ import annotations

import torch

from drax.flow.gumbel import gumbel_noise
from drax.flow.sampler import SampleOutput


class BlockSampler:
    """Blocks of `block_size`, committed by confidence `threshold` (see the module docstring), up to
    `end_token`; pmid_logits (B, L, V): p_mid of the rows, for a path whose noise draws from it.

    reuse_cache: read the committed positions' keys/values from the cache (False: recompute every
    committed position at every call, the same result at the cost of the whole prefix)."""

    def __init__(self, path, block_size: int, threshold: float = 0.9, temperature: float = 0.0,
                 end_token: int = 0, pmid_logits: torch.Tensor | None = None, reuse_cache: bool = True):
        if not (int(block_size) == block_size and block_size >= 1):
            raise ValueError(f"block_size must be an integer >= 1 (got {block_size})")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1] (got {threshold})")
        self.path, self.block_size, self.threshold = path, int(block_size), float(threshold)
        self.temperature, self.reuse_cache = temperature, reuse_cache
        self.end_token, self.pmid_logits = end_token, pmid_logits

    @torch.no_grad()
    def sample(self, posterior, canvas: torch.Tensor, committed: torch.Tensor,
               generator: torch.Generator | None = None, return_trajectory: bool = False) -> SampleOutput:
        """Decode the canvas (B, L): `committed` (B, L) bool marks the positions given (the prompt, at
        least position 0); the others are decoded. posterior: its `decoder` (a DiTDecoder, or anything
        with its `block_step`) and `audio` (the decoder's AudioMemory of the B rows) are what this reads.
        return_trajectory: keep the canvas and its committed positions after every call."""
        decoder, audio, end_token, pmid_logits = posterior.decoder, posterior.audio, self.end_token, self.pmid_logits
        b, length = canvas.shape
        device, n = canvas.device, self.block_size
        # n end tokens past the canvas: a block's positions never need clipping (only its reach does)
        x = torch.cat([canvas, canvas.new_full((b, n), end_token)], 1)
        committed = torch.cat([committed, committed.new_ones(b, n)], 1)
        given = committed.clone()
        if not committed[:, 0].all():
            raise ValueError("the block decoder needs position 0 given (the first prompt token)")
        start = _first_free(committed, torch.zeros(b, dtype=torch.long, device=device), length)
        done = start >= length
        cached = torch.zeros(b, dtype=torch.long, device=device)  # positions 0 .. cached - 1 are in the cache
        cache = None  # per DiT block (K, V) (B, H, L, D / H)
        out = SampleOutput(tokens=x, row_steps=torch.zeros(b, dtype=torch.long, device=device))
        offsets = torch.arange(n, device=device)
        while not done.all():
            stop = torch.minimum(start + n, _first_free(~given, start + 1, length))  # up to a given one
            lo = cached if self.reuse_cache else torch.zeros_like(cached)
            # a block of one is read from its predecessor's state alone: its own state predicts nothing
            # the call commits, so the call computes the committed positions only (one row, as AR greedy)
            reach = stop if n > 1 else start
            q = int((reach - lo)[~done].max())
            idx = lo[:, None] + torch.arange(q, device=device)[None]  # (B, q) absolute positions
            valid = (idx < reach[:, None]) & ~done[:, None]
            idx = idx.clamp(max=length - 1)
            pos = start[:, None] + offsets[None]  # (B, n) the block's positions
            in_block = (pos < stop[:, None]) & ~done[:, None]
            known = committed.gather(1, pos) | ~in_block
            fraction = (committed.gather(1, pos) & in_block).sum(1) / in_block.sum(1).clamp(min=1)
            t = self.path.scheduler.time_of_target(fraction)
            mid = None if pmid_logits is None else pmid_logits.gather(
                1, pos.clamp(max=length - 1)[..., None].expand(-1, -1, pmid_logits.shape[-1]))
            noise = self.path.sample_noise((b, n), t, mid, generator, device)  # the block's positions only
            state = x.scatter(1, pos, torch.where(in_block & ~known, noise, x.gather(1, pos)))[:, :length]
            active = (idx >= start[:, None]) & valid
            m = int(lo.max()) if self.reuse_cache else 0
            past = None if m == 0 else [(k[:, :, :m], v[:, :, :m]) for k, v in cache]
            past_valid = torch.arange(m, device=device)[None] < lo[:, None]
            logits, new = decoder.block_step(state.gather(1, idx), idx, t, audio, active, valid, past, past_valid)
            out.steps += 1
            out.row_steps += ~done
            # position p of the block reads the state of p - 1 (the shifted readout)
            rows_logits = logits.gather(1, (pos - 1 - lo[:, None]).clamp(0, q - 1)[..., None].expand(-1, -1, logits.shape[-1]))
            probs = rows_logits.float().softmax(-1)
            if self.temperature > 0:
                scores = rows_logits.float() / self.temperature + gumbel_noise(rows_logits.shape, generator, device)
                guess = scores.argmax(-1)
            else:
                guess = probs.argmax(-1)
            confidence = probs.gather(-1, guess[..., None]).squeeze(-1)
            take = ~known & ((confidence >= self.threshold) | (offsets[None] == 0))  # the AR token always
            x.scatter_(1, pos, torch.where(take, guess, x.gather(1, pos)))
            committed.scatter_(1, pos, committed.gather(1, pos) | take)
            if return_trajectory:
                out.trajectory.append(x[:, :length].clone())
                out.committed.append(committed[:, :length].clone())
            # cache the committed positions computed in this call: each was read clean and causally, so
            # its keys/values are final (the block's positions, read noised, are computed again once committed)
            if self.reuse_cache:
                if cache is None:
                    cache = [(k.new_zeros(b, k.shape[1], length, k.shape[3]), v.new_zeros(b, v.shape[1], length, v.shape[3]))
                             for k, v in new]
                write = valid & (idx < start[:, None]) & (idx >= lo[:, None])
                r, c = write.nonzero(as_tuple=True)
                for (ck, cv), (k, v) in zip(cache, new):
                    ck[r, :, idx[r, c]] = k[r, :, c]
                    cv[r, :, idx[r, c]] = v[r, :, c]
                cached = torch.where(done, cached, torch.maximum(cached, start))
            # slide; a row ends at a committed end token with every position before it committed
            following = _first_free(committed, start, length)
            settled = torch.arange(x.shape[1], device=device)[None] < following[:, None]
            ended = ((x == end_token) & settled & ~given).any(1) | (following >= length)
            start = torch.where(done, start, following)
            done = done | ended
        x = x[:, :length]
        is_end = (x == end_token) & ~given[:, :length]
        first = torch.where(is_end.any(1), is_end.int().argmax(1), length)
        out.tokens = torch.where(torch.arange(length, device=device)[None] > first[:, None], end_token, x)
        return out


def _first_free(committed: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
    """(B,) each row's first position p >= start (B,) with committed[p] False, among the first `length`
    positions; `length` where there is none."""
    pos = torch.arange(committed.shape[1], device=committed.device)[None]
    free = ~committed & (pos >= start[:, None]) & (pos < length)
    return torch.where(free.any(1), free.int().argmax(1), length)

"""Autoregressive decoders with a key/value cache: the AR baselines and speculative decoding's verifier.

An `IncrementalDecoder` is fed tokens in blocks and returns, for every fed token, the logits of the
token that follows it; `rollback(n)` forgets everything after the first n fed tokens. Greedy
decoding feeds one token at a time, speculative verification feeds a whole draft block at once, and
both go through the same code, so the verifier's top-1 at every position is the greedy one.

    ESPnetTransformerAR   ESPnet's TransformerDecoder (the recipe's `model: espnet` baseline)
    DiTAR                 the DiT decoder run causally (the `model: drax_ar` yardstick)
    WhisperAR             transformers' Whisper decoder (the pretrained model the recipe uses)

All cache the self-attention states of fed positions and the audio keys/values (computed once per
utterance), as a CPU-efficient AR decoder must.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch


class IncrementalDecoder(Protocol):
    eot: int

    def reset(self, memory: torch.Tensor) -> None:
        """Start an utterance: memory = encoder states (1, T, D)."""

    def extend(self, tokens: list[int]) -> torch.Tensor:
        """Feed tokens; returns logits (len(tokens), V), row i predicting the token after tokens[i]."""

    def rollback(self, length: int) -> None:
        """Keep the first `length` fed tokens only."""


@torch.no_grad()
def greedy(decoder: IncrementalDecoder, memory: torch.Tensor, prefix: list[int], max_new: int,
           min_new: int = 0) -> list[int]:
    """Greedy decoding after `prefix` (e.g. the prompt): up to max_new tokens, the end token included.

    min_new: the end token is not chosen before this many tokens (min_new = max_new times a forced
    output length, as the speed study does)."""
    decoder.reset(memory)
    logits = decoder.extend(list(prefix))
    out = []
    while True:
        last = logits[-1]
        if len(out) < min_new:
            last = last.clone()
            last[decoder.eot] = float("-inf")
        token = int(last.argmax())
        out.append(token)
        if token == decoder.eot or len(out) >= max_new:
            return out
        logits = decoder.extend([token])


class ESPnetTransformerAR:
    """Incremental decoding for ESPnet's TransformerDecoder (pre-LN decoder layers).

    Batches of B sequences fed in lockstep go through `extend_batch` (memory padded, `reset` given
    the true lengths); `extend` is the B = 1 case."""

    def __init__(self, decoder, eot: int):
        for layer in decoder.decoders:
            if not layer.normalize_before or layer.concat_after:
                raise ValueError("ESPnetTransformerAR needs decoder layers with normalize_before=True, concat_after=False")
        self.decoder = decoder.eval()
        self.eot = eot

    def reset(self, memory: torch.Tensor, memory_lengths: torch.Tensor | None = None) -> None:
        """memory (B, T, D); memory_lengths (B,) when the batch is padded."""
        batch = memory.shape[0]
        self.tokens = torch.zeros(batch, 0, dtype=torch.long)
        self.cache: list[torch.Tensor] = []  # per layer: outputs (B, n, D) of the fed positions
        self.memory_mask = (None if memory_lengths is None else
                            (torch.arange(memory.shape[1])[None] < memory_lengths[:, None])[:, None])  # (B, 1, T)
        self.memory_kv = []
        for layer in self.decoder.decoders:
            att = layer.src_attn
            k = att.linear_k(memory).view(batch, -1, att.h, att.d_k).transpose(1, 2)
            v = att.linear_v(memory).view(batch, -1, att.h, att.d_k).transpose(1, 2)
            self.memory_kv.append((k, v))

    def extend(self, tokens: list[int]) -> torch.Tensor:
        return self.extend_batch(torch.tensor([tokens]))[0]

    @torch.no_grad()
    def extend_batch(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, k) -> logits (B, k, V)."""
        batch, k = tokens.shape
        self.tokens = torch.cat([self.tokens, tokens], 1)
        n = self.tokens.shape[1]
        x = self.decoder.embed(self.tokens)  # positions are absolute: embed all, keep new
        x_all = x
        causal = torch.ones(k, n, dtype=torch.bool).tril(diagonal=n - k)[None]  # (1, k, n)
        new_cache = []
        for i, layer in enumerate(self.decoder.decoders):
            if i > 0:
                x_all = torch.cat([self.cache[i - 1], x], 1) if self.cache else x
            h = layer.norm1(x_all)
            x = x_all[:, -k:] + layer.self_attn(h[:, -k:], h, h, causal)
            att = layer.src_attn
            q = att.linear_q(layer.norm2(x)).view(batch, -1, att.h, att.d_k).transpose(1, 2)
            mk, mv = self.memory_kv[i]
            x = x + att.forward_attention(mv, q @ mk.transpose(-2, -1) / math.sqrt(att.d_k), self.memory_mask)
            x = x + layer.feed_forward(layer.norm3(x))
            new_cache.append(x)
        self.cache = [torch.cat([c, nc], 1) for c, nc in zip(self.cache, new_cache)] if self.cache else new_cache
        return self.decoder.output_layer(self.decoder.after_norm(x))

    def rollback(self, length: int) -> None:
        self.tokens = self.tokens[:, :length]
        self.cache = [c[:, :length] for c in self.cache]


class DiTAR:
    """Incremental decoding with a DiT decoder (DiTDecoder.step) at a fixed time t, as the
    `model: drax_ar` yardstick trains it. The caller puts the decoder in eval mode.

    Batches of B sequences fed in lockstep go through `extend_batch` (memory padded, `reset` given
    the true lengths); `extend` is the B = 1 case."""

    def __init__(self, decoder, eot: int, t: float = 1.0):
        self.decoder = decoder
        self.eot = eot
        self.t = t

    def reset(self, memory: torch.Tensor, memory_lengths: torch.Tensor | None = None) -> None:
        """memory (B, T, D) encoder states; memory_lengths (B,) when the batch is padded."""
        batch, frames = memory.shape[:2]
        if memory_lengths is None:
            memory_lengths = torch.full((batch,), frames, device=memory.device)
        self.audio = self.decoder.encode_audio(memory, memory_lengths)  # cross-attention K/V, once
        self.times = torch.full((batch,), self.t, device=memory.device)
        self.cache = None  # per block (K, V) (B, H, n, D / H) of the n fed positions

    def extend(self, tokens: list[int]) -> torch.Tensor:
        return self.extend_batch(torch.tensor([tokens], device=self.times.device))[0]

    @torch.no_grad()
    def extend_batch(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, k) -> logits (B, k, V)."""
        logits, self.cache = self.decoder.step(tokens, self.times, self.audio, self.cache)
        return logits

    def rollback(self, length: int) -> None:
        if self.cache is not None:
            self.cache = [(k[:, :, :length], v[:, :, :length]) for k, v in self.cache]


@torch.no_grad()
def batched_greedy(decoder: ESPnetTransformerAR | DiTAR, memory: torch.Tensor, memory_lengths: torch.Tensor,
                   prefixes: torch.Tensor, max_new: int, caps: torch.Tensor | None = None) -> list[list[int]]:
    """Greedy decoding of B utterances in lockstep (padded memory, equal-length prefixes (B, P)).

    Rows that have ended keep being fed the end token until every row has ended or max_new tokens
    are out; each row's output stops at its end token (included), as greedy() returns it. caps (B,):
    a row that has written this many tokens without its end token is ended there."""
    decoder.reset(memory, memory_lengths)
    logits = decoder.extend_batch(prefixes)[:, -1]
    out = torch.zeros(len(prefixes), 0, dtype=torch.long, device=logits.device)
    done = torch.zeros(len(prefixes), dtype=torch.bool, device=logits.device)
    caps = caps.to(done.device) if caps is not None else None
    while True:
        token = logits.argmax(-1).masked_fill(done, decoder.eot)
        out = torch.cat([out, token[:, None]], 1)
        done |= token == decoder.eot
        if caps is not None:
            done |= out.shape[1] >= caps
        if bool(done.all()) or out.shape[1] >= max_new:
            break
        logits = decoder.extend_batch(token[:, None])[:, -1]
    rows = []
    for row in out.tolist():
        rows.append(row[: row.index(decoder.eot) + 1] if decoder.eot in row else row)
    return rows


class WhisperAR:
    """Incremental decoding with a transformers Whisper model (self- and cross-attention cache)."""

    def __init__(self, model, eot: int):
        self.model = model.eval()
        self.eot = eot

    def reset(self, memory: torch.Tensor) -> None:
        # slow to import; only this path needs it
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        self.memory = memory
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self.length = 0

    @torch.no_grad()
    def extend(self, tokens: list[int]) -> torch.Tensor:
        out = self.model.model.decoder(input_ids=torch.tensor([tokens]), encoder_hidden_states=self.memory,
                                       past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.length += len(tokens)
        return self.model.proj_out(out.last_hidden_state)[0]

    def rollback(self, length: int) -> None:
        if length < self.length:
            self.cache.crop(length - self.length)  # transformers: a negative value removes that many
            self.length = length

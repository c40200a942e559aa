"""Speculative decoding (paper Sec. 5.3): a drafter proposes a block of tokens after the accepted
prefix, the autoregressive target verifies the block in one forward pass and keeps the drafted tokens
while they equal its own top-1, then adds its own next token; repeat until the end token.

Because every kept token is the target's top-1 given the same prefix, the output is the target's
greedy output, token for token; the drafter only changes how many target forward passes it takes.

Drafters:
    DraxDrafter   Drax with the accepted prefix pinned (trained for with `prompt_prob`), few steps
                  (NFE 2) at a low temperature; proposes up to `block` tokens after the prefix
    ARDrafter     a smaller autoregressive model proposing `block` greedy tokens (the usual baseline)

Drafter and target may use different vocabularies. `TokenMap` maps shared token strings (a target
token the drafter lacks ends drafting); `SubwordMap` bridges Drax's compact Whisper units and
Whisper's full byte-level BPE by splitting and re-tokenising, as the units tokenise text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from drax.decode.autoregressive import IncrementalDecoder
from drax.decode.options import DecodingOptions


class Drafter(Protocol):
    def reset(self, memory: torch.Tensor, lang: str | None) -> None: ...

    def draft(self, sequence: list[int], block: int) -> list[int]:
        """Up to `block` tokens (target ids) proposed after `sequence` (target ids, prompt included)."""


class TokenMap:
    """Ids of one vocabulary in another, by token string (missing tokens map to None)."""

    def __init__(self, source_tokens: list[str], target_index: dict[str, int]):
        self.forward = [target_index.get(tok) for tok in source_tokens]
        self.backward = {t: s for s, t in enumerate(self.forward) if t is not None}

    @classmethod
    def identity(cls, size: int) -> "TokenMap":
        return cls([str(i) for i in range(size)], {str(i): i for i in range(size)})

    def to_target(self, ids: list[int]) -> list[int] | None:
        out = [self.forward[i] for i in ids]
        return None if None in out else out

    def to_source(self, ids: list[int]) -> list[int] | None:
        out = [self.backward.get(i) for i in ids]
        return None if None in out else out


class SubwordMap:
    """Drax's compact Whisper units (drax.text.units.WhisperUnits) against the full byte-level BPE
    they are a subset of (Whisper's 51,865 tokens): the target is the units' own tokenizer.

    to_source: a target token missing from the units is split as the units split it when they
    tokenise text. to_target: the drafted pieces are joined and re-tokenised with the full BPE, so
    " sh" + "oes" becomes Whisper's own " shoes"; the last token of a block that did not end with a
    special token is dropped, as its word may go on.
    """

    def __init__(self, source_tokens: list[str], units):
        self.source = list(source_tokens)
        self.index = {tok: i for i, tok in enumerate(self.source)}
        self.units, self.tok = units, units.tokenizer
        self.vocab = self.tok.get_vocab()
        self.specials = (set(self.tok.get_added_vocab()) | set(self.tok.all_special_tokens)
                         | {t for t in self.source if t.startswith("<|")})  # never split or re-tokenised

    def to_source(self, ids: list[int]) -> list[int] | None:
        out = []
        for tok in self.tok.convert_ids_to_tokens(ids):
            if tok in self.specials and tok not in self.index:
                return None
            pieces = [tok] if tok in self.index else self.units.split(tok)
            if any(p not in self.index for p in pieces):
                return None
            out += [self.index[p] for p in pieces]
        return out

    def to_target(self, ids: list[int]) -> list[int] | None:
        out, run = [], []
        for tok in (self.source[i] for i in ids):
            if tok not in self.specials:
                run.append(tok)
                continue
            out += self._retokenize(run)
            run = []
            target = self.vocab.get(tok)
            if target is None:
                return None
            out.append(target)
        if run:
            out += self._retokenize(run)[:-1]
        return out

    def _retokenize(self, pieces: list[str]) -> list[int]:
        if not pieces:
            return []
        return self.tok.encode(self.tok.convert_tokens_to_string(pieces), add_special_tokens=False)


@dataclass
class SpeculativeResult:
    tokens: list[int]  # after the prefix, end token included (as greedy() returns)
    verify_steps: int = 0  # target forward passes after the prefix
    drafted: int = 0
    accepted_per_step: list[int] = field(default_factory=list)  # drafted tokens kept at each step

    @property
    def accepted(self) -> int:
        return sum(self.accepted_per_step)


@torch.no_grad()
def speculative(target: IncrementalDecoder, drafter: Drafter, memory: torch.Tensor, prefix: list[int],
                max_new: int, block: int, lang: str | None = None,
                draft_memory: torch.Tensor | None = None) -> SpeculativeResult:
    """Decode after `prefix` with `target` (greedy), `drafter` proposing up to `block` tokens per step.

    memory: the target's encoder states; draft_memory: the drafter's (default: the same).
    """
    target.reset(memory)
    drafter.reset(memory if draft_memory is None else draft_memory, lang)
    logits = target.extend(list(prefix))
    seq, out = list(prefix), []
    res = SpeculativeResult(tokens=out)
    token = int(logits[-1].argmax())
    while True:
        out.append(token)  # the target's own choice (fed with the next block)
        seq.append(token)
        if token == target.eot or len(out) >= max_new:
            return res
        draft = drafter.draft(seq, min(block, max_new - len(out)))
        logits = target.extend([token] + draft)
        res.verify_steps += 1
        res.drafted += len(draft)
        top1 = logits.argmax(-1).tolist()
        n = 0
        while n < len(draft) and draft[n] == top1[n]:
            out.append(draft[n])
            seq.append(draft[n])
            n += 1
            if draft[n - 1] == target.eot or len(out) >= max_new:
                res.accepted_per_step.append(n)
                return res
        res.accepted_per_step.append(n)
        target.rollback(len(seq))
        token = top1[n]


class DraxDrafter:
    """Drax drafting after a pinned prefix: `nfe` Euler steps at `temperature` over the canvas of
    the model's output length; the block is the positions right after the prefix, cut after the
    first end token."""

    def __init__(self, model, token_map: TokenMap | SubwordMap, nfe: int = 2, temperature: float = 0.01,
                 output_length: int | None = None, seed: int = 0, skip: int = 0):
        """skip: leading target tokens Drax's layout does not have (an ESPnet target's <sos>)."""
        self.model, self.map, self.skip = model, token_map, skip
        self.options = DecodingOptions(nfe=nfe, temperature=temperature, output_length=output_length or model.output_length)
        self.generator = torch.Generator().manual_seed(seed)

    def reset(self, memory: torch.Tensor, lang: str | None) -> None:
        self.encoded = (memory, torch.tensor([memory.shape[1]]))
        self.audio_memory = self.model.decoder.encode_audio(*self.encoded)  # audio K/V once per utterance

    def draft(self, sequence: list[int], block: int) -> list[int]:
        pinned = self.map.to_source(sequence[self.skip:])
        if pinned is None or len(pinned) >= self.options.output_length or block <= 0:
            return []
        out = self.model.generate_encoded(*self.encoded, self.options, prompt=torch.tensor([pinned]),
                                          generator=self.generator, audio_memory=self.audio_memory)
        proposed = out.tokens[0, 0, len(pinned): len(pinned) + block].tolist()
        if self.model.eot_id in proposed:
            proposed = proposed[: proposed.index(self.model.eot_id) + 1]
        return self.map.to_target(proposed) or []


class ARDrafter:
    """A smaller autoregressive model drafting `block` greedy tokens (its cache follows the prefix)."""

    def __init__(self, decoder: IncrementalDecoder, token_map: TokenMap | SubwordMap, lead: list[int] | None = None):
        """lead: drafter tokens before the target's sequence (an ESPnet drafter's <sos> for Whisper)."""
        self.decoder, self.map, self.lead = decoder, token_map, list(lead or [])

    def reset(self, memory: torch.Tensor, lang: str | None) -> None:
        self.decoder.reset(memory)
        self.fed: list[int] = []
        self.last_logits = None

    def draft(self, sequence: list[int], block: int) -> list[int]:
        seq = self.map.to_source(sequence)
        if seq is None or block <= 0:
            return []
        seq = self.lead + seq
        common = 0
        while common < min(len(seq), len(self.fed)) and seq[common] == self.fed[common]:
            common += 1
        if common == len(seq):  # the sequence is a prefix of what was fed: re-feed its last token
            common -= 1
        self.decoder.rollback(common)
        logits = self.decoder.extend(seq[common:])
        self.fed = list(seq)
        proposed = []
        for _ in range(block):
            token = int(logits[-1].argmax())
            proposed.append(token)
            if token == self.decoder.eot or len(proposed) == block:
                break
            logits = self.decoder.extend([token])
            self.fed.append(token)
        return self.map.to_target(proposed) or []

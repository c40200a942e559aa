"""Runtime measurement as in paper App. C.2/C.4: RTFx = audio seconds / compute seconds.

The runtime set draws the same number of utterances from every duration bin (0-5 s, 5-10 s, ...,
25-30 s); each utterance is decoded alone (batch size 1, fp32, no compilation), from the waveform:
log-mel + encoder ("encoder"), then sampling ("decoder"), then candidate selection ("scoring").
RTFx of a part = total audio seconds / total seconds of that part over the set.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

BINS = (0, 5, 10, 15, 20, 25, 30)


def bin_label(lo: float, hi: float) -> str:
    return f"{lo:g}-{hi:g} s"


def runtime_set(durations: dict[str, float], per_bin: int, bins=BINS, seed: int = 0) -> dict[str, list[str]]:
    """bin label -> up to `per_bin` utterance ids drawn (seeded) from the utterances in that bin.

    A bin with fewer utterances gives all it has (possibly none); the caller reports the counts.
    """
    out = {}
    rng = random.Random(seed)
    for lo, hi in zip(bins[:-1], bins[1:]):
        members = sorted(u for u, d in durations.items() if lo <= d < hi or (hi == bins[-1] and d == hi))
        out[bin_label(lo, hi)] = sorted(rng.sample(members, min(per_bin, len(members))))
    return out


@dataclass
class Seconds:
    """Accumulated compute seconds per part and audio seconds."""

    audio: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)

    def add(self, part: str, seconds: float) -> None:
        self.parts[part] = self.parts.get(part, 0.0) + seconds

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def rtfx(self, part: str | None = None) -> float:
        spent = self.total if part is None else self.parts.get(part, 0.0)
        return self.audio / spent if spent > 0 else float("inf")

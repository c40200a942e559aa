"""The synthetic speakers: one fixed (voice, pitch, speed) of one language.

espeak-ng speakers are its 13 voice variants (m1..m8, f1..f5) x 3 pitches x 3 speeds = 117 per
language; :func:`speaker_sets` divides them into disjoint train/dev/test sets, so dev and test
measure unseen speakers. A voice family of :mod:`drax.data.voices` makes one speaker per
(voice, pace).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from drax.data import voices as voices_mod

#: espeak-ng voice per language (pt: Brazilian, matching fortunes-br / manpages-pt-br / Django).
VOICES: dict[str, str] = {"en": "en-us", "de": "de", "es": "es", "fr": "fr-fr", "it": "it",
                          "pt": "pt-br", "zh": "cmn-latn-pinyin", "ja": "ja"}
VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
                             "f1", "f2", "f3", "f4", "f5")
PITCHES: tuple[int, ...] = (35, 50, 65)
SPEEDS: tuple[int, ...] = (145, 160, 175)


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker of one language. espeak-ng: voice variant, pitch (0-99) and speed
    (words/min); a family of :mod:`drax.data.voices`: its voice, pitch 0 (the voice's own)
    and speed in percent of the voice's own pace."""

    lang: str
    variant: str
    pitch: int
    speed: int
    family: str = "espeak"

    @property
    def id(self) -> str:
        if self.family != "espeak":
            return f"{self.lang}_{self.family}-{self.variant}_s{self.speed:03d}"
        return f"{self.lang}_{self.variant}_p{self.pitch:02d}_s{self.speed:03d}"

    @property
    def voice(self) -> str:
        if self.family != "espeak":
            return f"{self.family}:{self.variant}"
        return f"{VOICES[self.lang]}+{self.variant}"


def all_speakers(lang: str, family: str = "espeak") -> list[Speaker]:
    """Every (variant, pitch, speed) combination of ``lang`` (or every (voice, pace) of another
    family), in a fixed order."""
    if family != "espeak":
        fam = voices_mod.FAMILIES[family]
        return [Speaker(lang, v, 0, pace, family) for v in fam.voices for pace in fam.paces]
    return [Speaker(lang, v, p, s) for v in VARIANTS for p in PITCHES for s in SPEEDS]


def speaker_sets(lang: str, seed: int = 0, n_eval_speakers: int = 10) -> dict[str, list[Speaker]]:
    """Disjoint speaker sets per split: ``n_eval_speakers`` each for test and dev, the rest train."""
    spk = all_speakers(lang)
    if 2 * n_eval_speakers >= len(spk):
        raise ValueError(f"n_eval_speakers={n_eval_speakers} leaves no training speaker")
    random.Random(f"drax-speakers-{seed}-{lang}").shuffle(spk)
    test = sorted(spk[:n_eval_speakers], key=lambda s: s.id)
    dev = sorted(spk[n_eval_speakers:2 * n_eval_speakers], key=lambda s: s.id)
    train = sorted(spk[2 * n_eval_speakers:], key=lambda s: s.id)
    return {"train": train, "dev": dev, "test": test}

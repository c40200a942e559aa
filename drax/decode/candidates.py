"""Candidate selection among several sampled transcriptions of one utterance (paper Sec. 3.2).

    mode    the most frequent candidate
    mbr     minimum Bayes risk: the candidate with the lowest mean error rate to the others (Eq. 12),
            WER for space-delimited languages, CER for zh/ja, on normalised text
    oracle  the candidate closest to the reference (an upper bound, never a decoding method)

Ties go to the earliest candidate, so results are deterministic.
"""
from __future__ import annotations

from collections import Counter

import jiwer

from drax.decode.scoring import CER_LANGS, normalize


def _error_rate(ref: str, hyp: str, lang: str) -> float:
    ref, hyp = normalize(ref, lang), normalize(hyp, lang)
    if not ref:
        return 0.0 if not hyp else 1.0
    return jiwer.cer(ref, hyp) if lang in CER_LANGS else jiwer.wer(ref, hyp)


def select_mode(candidates: list[str]) -> int:
    counts = Counter(candidates)
    best = max(counts.values())
    return next(i for i, c in enumerate(candidates) if counts[c] == best)


def select_mbr(candidates: list[str], lang: str) -> int:
    """argmin_x mean_y ER(x, y) over the candidate set, y as reference (Eq. 12)."""
    n = len(candidates)
    risk = [sum(_error_rate(y, x, lang) for y in candidates) / n for x in candidates]
    return min(range(n), key=lambda i: (risk[i], i))


def select_oracle(candidates: list[str], reference: str, lang: str) -> int:
    errors = [_error_rate(reference, x, lang) for x in candidates]
    return min(range(len(candidates)), key=lambda i: (errors[i], i))


SELECTORS = {"mode": select_mode, "mbr": select_mbr}

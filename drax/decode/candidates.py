"""Candidate selection among several sampled transcriptions of one utterance (paper Sec. 3.2).

    mode    the most frequent candidate
    mbr     minimum Bayes risk: the candidate with the lowest mean error rate to the others (Eq. 12),
            WER for space-delimited languages, CER for zh/ja, on normalised text
    ar      the highest log-likelihood under an external AR model (drax/decode/rescoring.py)
    elbo    the highest ELBO under Drax itself, along the sampling trajectory (drax/flow/elbo.py)
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


def select_max(scores: list[float]) -> int:
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


SCORINGS = ("mode", "mbr", "ar", "elbo")


def select(scoring: str, candidates: list[str], lang: str, scores: list[float] | None = None) -> int:
    """Index of the chosen candidate; `scores` (higher is better) are needed by ar and elbo."""
    if scoring == "mode":
        return select_mode(candidates)
    if scoring == "mbr":
        return select_mbr(candidates, lang)
    if scoring in ("ar", "elbo"):
        if scores is None or len(scores) != len(candidates):
            raise ValueError(f"scoring '{scoring}' needs one score per candidate")
        return select_max(scores)
    raise ValueError(f"unknown scoring '{scoring}'; valid: {', '.join(SCORINGS)}")

"""Scoring: text normalisation per language, WER/CER with jiwer, per-utterance alignments.

Conventions (paper Sec. 5, Open ASR leaderboard): English is normalised with Whisper's English
normaliser, other languages with Whisper's basic normaliser; Mandarin and Japanese are scored by
characters (CER, whitespace removed), the rest by words (WER). CER is reported for every language.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jiwer

from drax.studies.report import fmt

CER_LANGS = {"zh", "ja"}


@lru_cache(maxsize=None)
def normalizer(lang: str):
    # slow to import; only this path needs it
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    if lang == "en":
        return EnglishTextNormalizer({})
    return BasicTextNormalizer(remove_diacritics=False)


def normalize(text: str, lang: str) -> str:
    text = " ".join(normalizer(lang)(text).split())
    return text.replace(" ", "") if lang in CER_LANGS else text


@dataclass
class LangScore:
    lang: str
    n_utts: int
    n_missing: int  # utterances without a hypothesis (scored as empty)
    words: int
    word_errors: int
    chars: int
    char_errors: int
    # the shape of the character errors, and two symptoms of a canvas filled or ended wrongly
    char_substitutions: int = 0
    char_deletions: int = 0
    char_insertions: int = 0
    short_hyps: int = 0  # hypotheses with fewer than 0.8x the reference's characters
    repeat_hyps: int = 0  # hypotheses with a word repeated next to itself that the reference does not repeat

    @property
    def wer(self) -> float | None:
        return None if self.lang in CER_LANGS or not self.words else 100.0 * self.word_errors / self.words

    @property
    def cer(self) -> float | None:
        return 100.0 * self.char_errors / self.chars if self.chars else None


def _errors(out) -> int:
    return out.substitutions + out.deletions + out.insertions


def _repeats(text: str) -> int:
    words = text.split()
    return sum(a == b for a, b in zip(words, words[1:]))


def score(refs: dict[str, str], hyps: dict[str, str], utt2lang: dict[str, str]):
    """Per-language scores and a per-utterance alignment report.

    Every reference utterance is scored; a missing hypothesis counts as empty and is listed.
    """
    by_lang: dict[str, list[str]] = {}
    for utt in sorted(refs):
        by_lang.setdefault(utt2lang[utt], []).append(utt)
    scores, report = [], []
    for lang, utts in sorted(by_lang.items()):
        ref = [normalize(refs[u], lang) for u in utts]
        hyp = [normalize(hyps.get(u, ""), lang) for u in utts]
        # jiwer rejects empty references; an empty reference only adds insertions
        pairs = [(r, h) for r, h in zip(ref, hyp) if r]
        chars = jiwer.process_characters([r for r, _ in pairs], [h for _, h in pairs])
        char_errors = _errors(chars) + sum(len(h) for r, h in zip(ref, hyp) if not r)
        words_out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        word_errors = _errors(words_out) + sum(len(h.split()) for r, h in zip(ref, hyp) if not r)
        scores.append(LangScore(
            lang=lang, n_utts=len(utts), n_missing=sum(u not in hyps for u in utts),
            words=sum(len(r.split()) for r, _ in pairs), word_errors=word_errors,
            chars=sum(len(r) for r, _ in pairs), char_errors=char_errors,
            char_substitutions=chars.substitutions, char_deletions=chars.deletions,
            char_insertions=chars.insertions + sum(len(h) for r, h in zip(ref, hyp) if not r),
            short_hyps=sum(len(h) < 0.8 * len(r) for r, h in pairs),
            repeat_hyps=sum(_repeats(h) > _repeats(r) for r, h in pairs),
        ))
        process = jiwer.process_characters if lang in CER_LANGS else jiwer.process_words
        for utt, r, h in zip(utts, ref, hyp):
            if r == h:
                body = f"REF: {r}\nHYP: {h}\n(correct)"
            elif r:
                body = jiwer.visualize_alignment(process([r], [h]), show_measures=False).split("\n", 2)[2]
            else:
                body = f"REF: (empty)\nHYP: {h}\n"
            report.append(f"{utt} ({lang}){' MISSING' if utt not in hyps else ''}\n{body.rstrip()}")
    return scores, "\n\n".join(report) + "\n"


def markdown_table(title: str, scores: list[LangScore]) -> str:
    pct = lambda n, s: fmt(100.0 * n / s.chars if s.chars else None)  # noqa: E731
    lines = [f"### {title}", "",
             "| lang | utts | WER (%) | CER (%) | sub / del / ins (CER points) | short hyps | repeating hyps | missing |",
             "|---|---|---|---|---|---|---|---|"]
    for s in scores:
        lines.append(f"| {s.lang} | {s.n_utts} | {fmt(s.wer)} | {fmt(s.cer)} | {pct(s.char_substitutions, s)} / "
                     f"{pct(s.char_deletions, s)} / {pct(s.char_insertions, s)} | {s.short_hyps} | {s.repeat_hyps} "
                     f"| {s.n_missing} |")
    return "\n".join(lines) + "\n"

"""Tokenizer stage helpers: build output units, write tokenised text and shape files.

`text` files in dump/<set> hold the Whisper-style prompt and the units of each transcript,
space-separated, e.g. `utt1 <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|> Ġhello Ġworld`,
which ESPnet reads with `token_type: word` and `dump/units/tokens.txt`.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from drax.data.kaldi_dir import DataDirError, format_kv, read_kv_dict
from drax.fileio import atomic_write_text
from drax.text.units import (
    UNIT_KINDS,
    BPEUnits,
    WhisperUnits,
    load_units,
    prompt_names,
    save_units,
    save_whisper_vocabulary,
)

logger = logging.getLogger(__name__)


def unit_texts(train_dir: Path, data_dir: Path) -> list[str]:
    """The texts output units are built from: the training transcripts (train_dir/text.raw) plus any
    text pool the corpus ships (data_dir/**/text_pool/*.txt; never dev or test text)."""
    texts = list(read_kv_dict(str(Path(train_dir) / "text.raw")).values())
    for pool in sorted(Path(data_dir).glob("**/text_pool/*.txt")):
        texts += pool.read_text(encoding="utf-8").splitlines()
    return texts


def build_units(kind: str, conf: dict, out_dir: Path, texts: list[str], langs: list[str],
                whisper_dir: str | None = None):
    """Build and save units of `kind` from `texts`; writes out_dir/{units.yaml,tokens.txt}."""
    if kind not in UNIT_KINDS:
        raise ValueError(f"unknown units '{kind}'; valid choices: {', '.join(UNIT_KINDS)}")
    if kind == "whisper" and conf.get("full_vocabulary"):  # e.g. to fine-tune a released Drax
        if set(conf) != {"full_vocabulary"}:
            raise ValueError(f"units_conf: full_vocabulary takes no other key (got {sorted(conf)})")
        save_whisper_vocabulary(whisper_dir, out_dir)
        units, tokens = load_units(out_dir), Path(out_dir) / "tokens.txt"
    else:
        units = WhisperUnits.build(whisper_dir, texts, **conf) if kind == "whisper" else BPEUnits.build(out_dir, texts, **conf)
        tokens = save_units(units, out_dir, langs)
    logger.info("%s units: %d entries in %s", kind, len(tokens.read_text().splitlines()), tokens)
    return units


_SPECIAL = re.compile(r"<\|[^|<>]*\|>")  # Whisper's special tokens: <|endoftext|>, <|en|>, ...


def write_token_text(units, set_dir: Path) -> None:
    """dump/<set>/text from text.raw and utt2lang."""
    set_dir = Path(set_dir)
    texts = read_kv_dict(str(set_dir / "text.raw"))
    langs = read_kv_dict(str(set_dir / "utt2lang"))
    lines = []
    for utt, text in texts.items():
        if special := _SPECIAL.search(text):
            raise DataDirError(f"{set_dir / 'text.raw'}: utterance {utt} holds {special[0]!r}, a special token "
                               "that only the prompt and the end of a canvas hold; take it out of the corpus's "
                               "transcript and run again from stage 1")
        lines.append((utt, " ".join(prompt_names(langs[utt]) + units.encode(text))))
    atomic_write_text(str(set_dir / "text"), format_kv(sorted(lines)))


def token_counts(text_file: Path) -> dict[str, int]:
    return {utt: len(value.split()) for utt, value in read_kv_dict(str(text_file)).items()}


def fit_output_length(text_file: Path, max_length: int, multiple: int = 8) -> int:
    """L = longest tokenised text (prompt included) + 1 end token, rounded up, at most max_length."""
    longest = max(token_counts(text_file).values())
    return min(max_length, multiple * math.ceil((longest + 1) / multiple))


def fit_token_rate(set_dir: Path, quantile: float, silence_frames: int = 0) -> float:
    """The `quantile` of transcript tokens (the prompt left out) per dumped feature frame over a set's
    utterances (its text and speech_shape; Recipe.token_rate turns it into tokens per encoder state).
    silence_frames: frames of silence appended to each utterance (stage 3), left out of its count so
    that the rate is per frame of speech: applied to frames with the silence, the cap only loosens."""
    frames = {u: int(v.split(",")[0]) - silence_frames
              for u, v in read_kv_dict(str(Path(set_dir) / "speech_shape")).items()}
    texts = read_kv_dict(str(Path(set_dir) / "text"))
    rates = sorted(sum(not _SPECIAL.fullmatch(t) for t in texts[u].split()) / n
                   for u, n in frames.items() if n > 0 and u in texts)
    if not rates:
        raise ValueError(f"{set_dir}: no utterance with both text and speech_shape to fit a token rate on")
    return rates[min(len(rates) - 1, math.ceil(quantile * len(rates)) - 1)]


def write_shapes(set_dir: Path, tokens_file: Path, output_length: int | None = None,
                 drop_too_long: bool = True) -> None:
    """speech_shape (utt frames,dim) and text_shape (utt tokens,vocab) for ESPnet's batch samplers.

    With output_length, utterances whose text does not fit (tokens > L - 1) are listed in `too_long`
    and, with drop_too_long, left out.
    """
    set_dir = Path(set_dir)
    vocab = len(Path(tokens_file).read_text(encoding="utf-8").splitlines())
    counts = token_counts(set_dir / "text")
    feats = read_kv_dict(str(set_dir / "feats_shape"))
    too_long = sorted(u for u in counts if output_length is not None and counts[u] > output_length - 1)
    dropped = set(too_long) if drop_too_long else set()
    keep = sorted(u for u in counts if u in feats and u not in dropped)
    if not keep:
        fits = "" if not dropped else f" and a text of at most L - 1 = {output_length - 1} tokens"
        raise ValueError(f"{set_dir}: no utterance has features{fits}; check feats_shape and text"
                         + (", or raise max_output_length" if dropped else ""))
    if too_long:
        logger.warning("%s: %d utterance(s) longer than L - 1 = %d tokens %s; see %s", set_dir.name,
                       len(too_long), output_length - 1,
                       "left out" if drop_too_long else "kept, their targets truncated to L - 1",
                       set_dir / "too_long")
    atomic_write_text(str(set_dir / "too_long"), format_kv((u, str(counts[u])) for u in too_long))
    atomic_write_text(str(set_dir / "speech_shape"), format_kv((u, feats[u]) for u in keep))
    atomic_write_text(str(set_dir / "text_shape"), format_kv((u, f"{counts[u]},{vocab}") for u in keep))

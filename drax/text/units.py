"""Output units for Drax: Whisper's byte-level BPE restricted to a compact list, or a sentencepiece BPE.

Recipes tokenise transcripts once (stage "tokenizer") and write them as space-separated token
strings, so ESPnet reads them with `token_type: word` and the token list written here. Decoding maps
tokens back to text with the same units. A units directory holds `units.yaml` (kind + files) and
`tokens.txt` (ESPnet's token list: <blank>, <unk>, units..., prompt specials, end token).

Whisper units (the paper's tokenizer): the full vocabulary has 51,865 entries; a small decoder on a
CPU learns far faster on the few thousand tokens a corpus uses. The compact list keeps the most
frequent Whisper tokens of a text pool plus all 256 byte tokens; any other token is split into the
longest listed pieces, so held-out text is always covered and decodes to the same string.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable

import yaml

from drax.fileio import atomic_write_text

SPECIALS_HEAD = ["<blank>", "<unk>"]
WHISPER_LANGS = ["en", "de", "es", "fr", "it", "pt", "zh", "ja"]
PROMPT_TEMPLATE = ["<|startoftranscript|>", "<|{lang}|>", "<|transcribe|>", "<|notimestamps|>"]
EOT = "<|endoftext|>"


def prompt_names(lang: str | None) -> list[str]:
    """Whisper's prompt for `lang` (None: without its language token)."""
    return [t.format(lang=lang) for t in PROMPT_TEMPLATE if lang or "{lang}" not in t]


def prompt_tokens(langs: Iterable[str]) -> list[str]:
    """The prompt specials for these languages, in token-list order."""
    langs = list(langs)
    return [name for t in PROMPT_TEMPLATE for name in ([t.format(lang=lang) for lang in langs] if "{lang}" in t else [t])]


def prompt_ids(template: list[str], token_list: list[str], lang: str | None) -> list[int]:
    """Ids in `token_list` of the prompt `template` for language `lang` (e.g. 'en'); None: -1 in the
    language slot, left free."""
    ids = []
    for tok in template:
        name = tok.format(lang=lang)
        if "{lang}" in tok and lang is None:
            ids.append(-1)
        elif name in token_list:
            ids.append(token_list.index(name))
        else:
            raise ValueError(f"language '{lang}': token '{name}' is not in the token list" if "{lang}" in tok
                             else f"prompt token '{name}' is not in the token list")
    return ids


def byte_alphabet() -> list[str]:
    """The 256 printable characters GPT-2/Whisper byte-level BPE uses for raw bytes."""
    from tokenizers.pre_tokenizers import ByteLevel  # slow to import; only this path needs it

    return sorted(ByteLevel.alphabet())


class WhisperUnits:
    kind = "whisper"

    def __init__(self, tokenizer_dir: str | Path, units: list[str]):
        from transformers import AutoTokenizer  # slow to import; only this path needs it

        self.tokenizer_dir = str(tokenizer_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_dir)
        self.units = list(units)
        self._known = set(self.units)

    @classmethod
    def build(cls, tokenizer_dir: str | Path, texts: Iterable[str], min_count: int = 1,
              max_units: int | None = None) -> "WhisperUnits":
        """Keep the Whisper tokens seen at least `min_count` times in `texts` (at most `max_units`,
        most frequent first) plus the byte alphabet."""
        self = cls(tokenizer_dir, byte_alphabet())
        counts = Counter(tok for text in texts for tok in self.tokenizer.tokenize(" " + text.strip()))
        alphabet = set(self.units)
        extra = sorted((t for t, c in counts.items() if c >= min_count and t not in alphabet),
                       key=lambda t: (-counts[t], t))
        if max_units is not None:
            extra = extra[: max(0, max_units - len(self.units))]
        return cls(tokenizer_dir, self.units + extra)

    def encode(self, text: str) -> list[str]:
        """Whisper tokens of ' ' + text (Whisper's leading-space convention); a token outside the
        list is split into the longest known pieces (single bytes always are)."""
        out = []
        for tok in self.tokenizer.tokenize(" " + text.strip()):
            out.extend([tok] if tok in self._known else self.split(tok))
        return out

    def split(self, tok: str) -> list[str]:
        """A Whisper token as the longest listed pieces, left to right."""
        pieces, start = [], 0
        while start < len(tok):
            end = next(e for e in range(len(tok), start, -1) if tok[start:e] in self._known)
            pieces.append(tok[start:end])
            start = end
        return pieces

    def decode(self, tokens: list[str]) -> str:
        return self.tokenizer.convert_tokens_to_string(list(tokens)).strip()

    def files(self) -> dict:
        return {"tokenizer_dir": self.tokenizer_dir}


class BPEUnits:
    kind = "bpe"

    def __init__(self, model_file: str | Path):
        import sentencepiece as spm  # only BPE units need it

        self.model_file = str(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=self.model_file)
        self.units = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())
                      if not self.sp.is_control(i) and not self.sp.is_unknown(i)]

    @classmethod
    def build(cls, out_dir: str | Path, texts: Iterable[str], vocab_size: int = 1000) -> "BPEUnits":
        import sentencepiece as spm  # only BPE units need it

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([t.strip() for t in texts if t.strip()]), model_prefix=str(out_dir / "bpe"),
            vocab_size=vocab_size, model_type="bpe", character_coverage=0.9995, byte_fallback=True,
            hard_vocab_limit=False, num_threads=2, minloglevel=2,
        )
        return cls(out_dir / "bpe.model")

    def encode(self, text: str) -> list[str]:
        return self.sp.encode(text.strip(), out_type=str)

    def decode(self, tokens: list[str]) -> str:
        return self.sp.decode_pieces(list(tokens))

    def files(self) -> dict:
        return {"model_file": self.model_file}


UNIT_KINDS = {"whisper": WhisperUnits, "bpe": BPEUnits}


def _recorded(path: str | Path, units_dir: Path) -> str:
    """A file or directory units.yaml names: relative to the units dir where it exists here (the units
    load from any working directory), else as given (a hub id)."""
    return os.path.relpath(Path(path).resolve(), units_dir.resolve()) if Path(path).exists() else str(path)


def _located(recorded: str, units_dir: Path) -> str:
    """The path units.yaml records, found from the working directory (`_recorded`'s inverse)."""
    path = Path(units_dir) / recorded
    return str(path) if not Path(recorded).is_absolute() and path.exists() else recorded


def save_units(units, out_dir: str | Path, langs: Iterable[str]) -> Path:
    """Write units.yaml and ESPnet's tokens.txt; returns the token list path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = SPECIALS_HEAD + [u for u in units.units if u not in SPECIALS_HEAD] + prompt_tokens(langs) + [EOT]
    if len(set(tokens)) != len(tokens):
        dup = [t for t, c in Counter(tokens).items() if c > 1]
        raise ValueError(f"token list has duplicates {dup[:5]}")
    atomic_write_text(out_dir / "tokens.txt", "\n".join(tokens) + "\n")
    files = {key: _recorded(path, out_dir) for key, path in units.files().items()}
    atomic_write_text(out_dir / "units.yaml", yaml.safe_dump({"kind": units.kind, **files,
                                                           "units": units.units if units.kind == "whisper" else None}))
    return out_dir / "tokens.txt"


def save_whisper_vocabulary(tokenizer_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Units that are a Whisper model's whole vocabulary (a released model's output layer): tokens.txt
    is <blank>, <unk>, then every Whisper token in id order (the prompt specials and the end token at
    their Whisper ids; an id without a name, e.g. 50256, as <|id50256|>). Returns the token list."""
    units = WhisperUnits(tokenizer_dir, [])
    vocab = units.tokenizer.convert_ids_to_tokens(list(range(len(units.tokenizer))))
    units = WhisperUnits(tokenizer_dir, [tok or f"<|id{i}|>" for i, tok in enumerate(vocab)])
    tokens = SPECIALS_HEAD + units.units
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"{tokenizer_dir}: the vocabulary repeats a token or names one <blank> or <unk>")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "tokens.txt", "\n".join(tokens) + "\n")
    atomic_write_text(out_dir / "units.yaml", yaml.safe_dump({"kind": units.kind, "units": units.units,
                                                           "tokenizer_dir": _recorded(tokenizer_dir, out_dir)}))
    return tokens


def load_units(units_dir: str | Path):
    conf = yaml.safe_load((Path(units_dir) / "units.yaml").read_text(encoding="utf-8"))
    if conf["kind"] not in UNIT_KINDS:
        raise ValueError(f"{units_dir}/units.yaml: unknown kind '{conf['kind']}'; valid: {', '.join(UNIT_KINDS)}")
    if conf["kind"] == "whisper":
        return WhisperUnits(_located(conf["tokenizer_dir"], units_dir), conf["units"])
    return BPEUnits(_located(conf["model_file"], units_dir))

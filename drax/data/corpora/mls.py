"""Multilingual LibriSpeech (openslr.org/94): LibriVox audiobooks in 8 languages, 16 kHz FLAC (or Opus)."""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from drax.data.corpora.common import (
    SPLITS,
    CorpusError,
    Native,
    numbered,
    read_lines,
    read_transcripts,
    save_audio,
    synthetic_corpus,
    untranscribed,
    write_set,
)
from drax.data.kaldi_dir import Utterance
from drax.fileio import atomic_write_text

MLS = Native("mls", "MLS", """\
  $MLS/mls_<language>/{train,dev,test}/transcripts.txt      (lines: <spk>_<book>_<seg> TAB text)
  $MLS/mls_<language>/<split>/audio/<spk>/<book>/<spk>_<book>_<seg>.flac   (.opus in mls_<language>_opus)
  $MLS/mls_<language>/train/limited_supervision/{9hr,1hr/0..5}/handles.txt (for corpus_conf.train_subset)
  (MLS = the folder holding the mls_<language> folders, e.g. mls_german)""")

#: MLS folder name of each language code (a recipe selects them with `langs`).
LANGUAGES = {"en": "english", "de": "german", "nl": "dutch", "fr": "french", "es": "spanish", "it": "italian",
             "pt": "portuguese", "pl": "polish"}
_ID = re.compile(r"\d+_\d+_\d+")  # <spk>_<book>_<seg>: LibriVox ids, unique across languages


def prepare_mls(data_root: Path, langs: list[str], jobs: int = 2, root: str = "",
                train_subset: str | list[str] | None = None, synthetic: bool | dict = False) -> list[str]:
    """data/{train,dev,test} holding every language of `langs`; `train_subset` (e.g. 9hr, 1hr/0 or
    [9hr, 1hr]) keeps only the training utterances listed in limited_supervision/<subset>/**/handles.txt."""
    if synthetic:
        root = str(synthesize_mls(data_root, langs, synthetic, jobs))
    base = MLS.root(root)
    sets = []
    for split in SPLITS:
        utts, skipped = [], {}
        for lang in langs:
            folder = _language_dir(base, lang)
            audio_ext = ".opus" if folder.name.endswith("_opus") else ".flac"
            texts, problems = read_transcripts(MLS.require(folder / split / "transcripts.txt"), _ID, sep="\t")
            skipped.update(problems)
            skipped.update(untranscribed((folder / split / "audio").glob(f"*/*/*{audio_ext}"),
                                         set(texts) | set(problems), f"{folder.name}/{split}/transcripts.txt"))
            if split == "train" and train_subset:
                texts = _subset(texts, folder / "train" / "limited_supervision", train_subset, skipped)
            for utt, text in texts.items():
                spk, book, _ = utt.split("_")
                audio = folder / split / "audio" / spk / book / f"{utt}{audio_ext}"
                utts.append(Utterance(utt, spk, str(audio), text, lang))
        sets.append(write_set(data_root / split, utts, skipped, langs, jobs))
    return sets


def _language_dir(base: Path, lang: str) -> Path:
    if lang not in LANGUAGES:
        raise CorpusError(f"mls: no language {lang!r} in MLS (langs must be among {', '.join(LANGUAGES)})")
    for name in (f"mls_{LANGUAGES[lang]}", f"mls_{LANGUAGES[lang]}_opus"):
        if (base / name).is_dir():
            return base / name
    raise MLS.error(f"{base}/mls_{LANGUAGES[lang]} not found (language {lang} is in langs)")


def _subset(texts: dict[str, str], limited: Path, subsets: str | list[str], skipped: dict[str, str]) -> dict[str, str]:
    """The transcripts listed in the handles.txt files of the limited-supervision subsets."""
    keep = set()
    for subset in [subsets] if isinstance(subsets, str) else subsets:
        handles = sorted(MLS.require(limited / subset).rglob("handles.txt"))
        if not handles:
            raise MLS.error(f"no handles.txt under {limited / subset} (corpus_conf.train_subset: {subset})")
        keep |= {line.strip() for h in handles for _, line in read_lines(h)}
    for utt in sorted(keep - set(texts)):
        skipped.setdefault(utt, f"listed in {limited}/**/handles.txt but not in train/transcripts.txt")
    return {utt: text for utt, text in texts.items() if utt in keep}


def synthesize_mls(data_root: Path, langs: list[str], spec: bool | dict, jobs: int) -> Path:
    """An MLS-shaped tree of espeak-ng speech: one book per speaker and split; training
    utterances alternate between limited_supervision/9hr and 1hr/0."""
    tree, splits = synthetic_corpus(data_root, "mls", langs, spec, jobs)
    speakers = numbered([u for us in splits.values() for u in us], start=1000)
    transcripts: dict[Path, list[str]] = defaultdict(list)
    handles: dict[Path, list[str]] = defaultdict(list)
    segments: Counter = Counter()
    for split_index, split in enumerate(SPLITS):
        for u in splits[split]:
            folder = tree / f"mls_{LANGUAGES[u.lang]}" / split
            spk = speakers[u.speaker]
            book = 10 * spk + split_index
            utt = f"{spk}_{book}_{segments[spk, book]:06d}"
            segments[spk, book] += 1
            save_audio(u.wav, folder / "audio" / str(spk) / str(book) / f"{utt}.flac")
            transcripts[folder].append(f"{utt}\t{u.text}\n")
            if split == "train":
                subset = "9hr" if len(transcripts[folder]) % 2 else "1hr/0"
                handles[folder / "limited_supervision" / subset / "handles.txt"].append(f"{utt}\n")
    for folder, lines in transcripts.items():
        atomic_write_text(str(folder / "transcripts.txt"), "".join(lines))
    for path, lines in handles.items():
        atomic_write_text(str(path), "".join(lines))
    return tree

"""LibriSpeech (openslr.org/12): English audiobooks read by LibriVox volunteers, 16 kHz FLAC."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from drax.data.corpora.common import (
    SPLITS,
    Native,
    numbered,
    read_transcripts,
    save_audio,
    synthetic_corpus,
    untranscribed,
    write_set,
)
from drax.data.kaldi_dir import Utterance
from drax.fileio import atomic_write_text

LIBRISPEECH = Native("librispeech", "LIBRISPEECH", """\
  $LIBRISPEECH/<part>/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac
  $LIBRISPEECH/<part>/<spk>/<chapter>/<spk>-<chapter>.trans.txt   (lines: <spk>-<chapter>-<nnnn> UPPER CASE TEXT)
  (LIBRISPEECH = the LibriSpeech folder; parts as configured in corpus_conf.parts, e.g. train-clean-100)""")

PARTS = ["train-clean-100", "dev-clean", "test-clean", "test-other"]


def prepare_librispeech(data_root: Path, langs: list[str], jobs: int = 2, root: str = "",
                        parts: list[str] = PARTS, synthetic: bool | dict = False) -> list[str]:
    """One data dir per part, named with underscores (train-clean-100 -> data/train_clean_100)."""
    if synthetic:
        root = str(synthesize_librispeech(data_root, parts, synthetic, jobs))
    base = LIBRISPEECH.root(root)
    sets = []
    for part in parts:
        utts, skipped = [], {}
        for trans in sorted(LIBRISPEECH.require(base / part).glob("*/*/*.trans.txt")):
            spk, chapter = trans.parent.parent.name, trans.parent.name
            texts, problems = read_transcripts(trans, re.compile(rf"{re.escape(spk)}-{re.escape(chapter)}-\d+"))
            skipped.update(problems)
            # lower case: Whisper's BPE splits all-caps words into about twice as many tokens
            # (scoring ignores case)
            utts += [Utterance(utt, spk, str(trans.parent / f"{utt}.flac"), text.lower(), "en")
                     for utt, text in texts.items()]
        listed = {u.utt_id for u in utts} | set(skipped)
        skipped.update(untranscribed((base / part).glob("*/*/*.flac"), listed, "<spk>-<chapter>.trans.txt"))
        sets.append(write_set(data_root / part.replace("-", "_"), utts, skipped, langs, jobs))
    return sets


def synthesize_librispeech(data_root: Path, parts: list[str], spec: bool | dict, jobs: int) -> Path:
    """A LibriSpeech-shaped tree of espeak-ng English: generated train/dev/test utterances go
    round-robin to the configured train-*/dev-*/test-* parts, one chapter per speaker and part."""
    tree, splits = synthetic_corpus(data_root, "LibriSpeech", ["en"], spec, jobs)
    chapters: dict[tuple[str, str], list[Utterance]] = defaultdict(list)
    for split in SPLITS:
        names = [p for p in parts if p.startswith(split)]
        for i, u in enumerate(splits[split] if names else []):
            chapters[names[i % len(names)], u.speaker].append(u)
    speakers = numbered([u for us in chapters.values() for u in us], start=100)
    for chapter, ((part, speaker), utts) in enumerate(sorted(chapters.items()), start=1000):
        folder = tree / part / str(speakers[speaker]) / str(chapter)
        lines = []
        for n, u in enumerate(utts):
            utt = f"{speakers[speaker]}-{chapter}-{n:04d}"
            save_audio(u.wav, folder / f"{utt}.flac")
            lines.append(f"{utt} {u.text.upper()}\n")
        atomic_write_text(str(folder / f"{speakers[speaker]}-{chapter}.trans.txt"), "".join(lines))
    return tree

"""AISHELL-1 (openslr.org/33): Mandarin read speech, 400 speakers, 16 kHz WAV."""
from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from drax.data.corpora.common import SPLITS, Native, read_transcripts, save_audio, synthetic_corpus, write_set
from drax.data.kaldi_dir import Utterance
from drax.fileio import atomic_write_text

logger = logging.getLogger(__name__)

AISHELL = Native("aishell", "AISHELL", """\
  $AISHELL/data_aishell/wav/{train,dev,test}/<spk>/BAC009<spk>W<nnnn>.wav   (extract wav/*.tar.gz first)
  $AISHELL/data_aishell/transcript/aishell_transcript_v0.8.txt   (lines: BAC009<spk>W<nnnn> word segmented text)
  (AISHELL = the folder holding data_aishell)""")

_ID = re.compile(r"BAC009S\d{4}W\d{4}")


def prepare_aishell(data_root: Path, langs: list[str], jobs: int = 2, root: str = "",
                    synthetic: bool | dict = False) -> list[str]:
    """data/{train,dev,test}; utterance ids <spk>-BAC009<spk>W<nnnn>; transcripts without the word
    segmentation's spaces (scoring is per character)."""
    if synthetic:
        root = str(synthesize_aishell(data_root, synthetic, jobs))
    base = AISHELL.root(root) / "data_aishell"
    texts, problems = read_transcripts(AISHELL.require(base / "transcript" / "aishell_transcript_v0.8.txt"), _ID)
    used = set()
    sets = []
    for split in SPLITS:
        utts, skipped = [], {}
        for wav in sorted(AISHELL.require(base / "wav" / split).glob("*/*.wav")):
            spk, native = wav.parent.name, wav.stem
            used.add(native)
            if native in texts:
                utts.append(Utterance(f"{spk}-{native}", spk, str(wav), "".join(texts[native].split()), "zh"))
            else:
                skipped[f"{spk}-{native}"] = problems.get(native, "no line in aishell_transcript_v0.8.txt")
        sets.append(write_set(data_root / split, utts, skipped, langs, jobs))
    unused = sorted((set(texts) | set(problems)) - used)
    if unused:  # not attributable to a set, so only logged
        logger.warning("aishell: %d transcript line(s) without audio, e.g. %s", len(unused), ", ".join(unused[:5]))
    return sets


def synthesize_aishell(data_root: Path, spec: bool | dict, jobs: int) -> Path:
    """An AISHELL-shaped tree of espeak-ng Mandarin: WAV files, and a transcript with a space
    between characters standing in for the word segmentation."""
    tree, splits = synthetic_corpus(data_root, "aishell", ["zh"], spec, jobs)
    speakers = {s: f"S{i:04d}" for i, s in enumerate(sorted({u.speaker for us in splits.values() for u in us}), 1)}
    count: Counter = Counter()
    lines = []
    for split in SPLITS:
        for u in splits[split]:
            spk = speakers[u.speaker]
            count[spk] += 1
            native = f"BAC009{spk}W{count[spk]:04d}"
            save_audio(u.wav, tree / "data_aishell" / "wav" / split / spk / f"{native}.wav")
            lines.append(f"{native} {' '.join(u.text.replace(' ', ''))}\n")
    atomic_write_text(str(tree / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt"), "".join(sorted(lines)))
    return tree

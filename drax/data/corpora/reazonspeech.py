"""ReazonSpeech (research.reazon.jp): Japanese TV speech, 16 kHz FLAC, no speaker labels.

The corpus ships as tar archives (000.tar, 001.tar, ...) of FLAC files and a transcript table
(e.g. all.tsv, no header: `<name> TAB <transcription>`); a local copy is the archives extracted
beside the table. There is no official dev/test: as ESPnet's egs2/reazonspeech recipe, dev is the
first `n_dev` utterances, test the next `n_test`, train the rest. ESPnet takes them in the hub
dataset's order; here the order is by name (archive, then file), which is stable for any copy.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from drax.data.corpora.common import SPLITS, CorpusError, Native, read_lines, save_audio, synthetic_corpus, write_set
from drax.data.kaldi_dir import Utterance
from drax.fileio import atomic_write_text

REAZONSPEECH = Native("reazonspeech", "REAZONSPEECH", """\
  $REAZONSPEECH/<table>.tsv   (lines: <name> TAB <transcription>; a header line "name<TAB>transcription" is allowed)
  $REAZONSPEECH/<name>        (e.g. 000/0a1b2c3d4e5f6.flac: the extracted 000.tar, 001.tar, ...)
  (REAZONSPEECH = that folder; corpus_conf.table names the table when there are several .tsv files)""")


def prepare_reazonspeech(data_root: Path, langs: list[str], jobs: int = 2, root: str = "", table: str = "",
                         n_dev: int = 1000, n_test: int = 1000, synthetic: bool | dict = False) -> list[str]:
    """data/{dev,test,train} split by position in name order; utterance (= speaker) ids are the
    names without extension, "/" replaced by "-" (000/0a1b.flac -> 000-0a1b)."""
    if synthetic:
        root, n_dev, n_test = synthesize_reazonspeech(data_root, synthetic, jobs)
    base = REAZONSPEECH.root(root)
    rows = sorted(_read_table(_find_table(base, table)))
    if len(rows) <= n_dev + n_test:
        raise CorpusError(f"reazonspeech: {len(rows)} utterances leave none for train after n_dev={n_dev} and "
                          f"n_test={n_test}: lower corpus_conf.n_dev / n_test")
    bounds = {"dev": (0, n_dev), "test": (n_dev, n_dev + n_test), "train": (n_dev + n_test, len(rows))}
    sets = []
    for split in SPLITS:
        utts, skipped = [], {}
        for name, text, where in rows[slice(*bounds[split])]:
            utt = str(Path(name).with_suffix("")).replace("/", "-")
            if text:
                utts.append(Utterance(utt, utt, str(base / name), text, "ja"))
            else:
                skipped[utt] = f"empty or missing transcription ({where})"
        sets.append(write_set(data_root / split, utts, skipped, langs, jobs))
    return sets


def _find_table(base: Path, table: str) -> Path:
    if table:
        return REAZONSPEECH.require(base / table)
    tables = sorted(base.glob("*.tsv"))
    if len(tables) != 1:
        raise REAZONSPEECH.error(f"{len(tables)} .tsv files in {base}: set corpus_conf.table to the transcript table")
    return tables[0]


def _read_table(path: Path) -> list[tuple[str, str, str]]:
    """(name, transcription, file:line) per row; a row without a tab has an empty transcription."""
    rows = []
    for number, line in read_lines(path):
        name, _, text = line.partition("\t")
        if number == 1 and (name, text) == ("name", "transcription"):
            continue
        if not name.strip():
            raise CorpusError(f"{path}:{number}: no file name before the tab")
        rows.append((name.strip(), text.strip(), f"{path.name}:{number}"))
    return rows


def synthesize_reazonspeech(data_root: Path, spec: bool | dict, jobs: int) -> tuple[str, int, int]:
    """A ReazonSpeech-shaped tree of espeak-ng Japanese (folder 000 dev, 001 test, 002 train, so that
    name order puts them first); returns the tree and the dev and test sizes."""
    tree, splits = synthetic_corpus(data_root, "reazonspeech", ["ja"], spec, jobs)
    lines = []
    for archive, split in enumerate(("dev", "test", "train")):
        for u in splits[split]:
            name = f"{archive:03d}/{hashlib.sha1(u.utt_id.encode()).hexdigest()[:13]}.flac"
            save_audio(u.wav, tree / name)
            lines.append(f"{name}\t{u.text}\n")
    atomic_write_text(str(tree / "synthetic.tsv"), "".join(lines))
    return str(tree), len(splits["dev"]), len(splits["test"])

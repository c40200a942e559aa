"""Mozilla Common Voice (commonvoice.mozilla.org): crowd-read sentences, MP3 clips, many languages."""
from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

from drax.data.corpora.common import SPLITS, CorpusError, Native, save_audio, synthetic_corpus, write_set
from drax.data.kaldi_dir import Utterance
from drax.fileio import atomic_write_text

logger = logging.getLogger(__name__)

COMMONVOICE = Native("commonvoice", "COMMONVOICE", """\
  $COMMONVOICE/<lang>/{train,dev,test,validated}.tsv   (tab-separated, a header line naming the columns;
                                                        client_id, path and sentence are read)
  $COMMONVOICE/<lang>/clips/<path>                     (MP3)
  (COMMONVOICE = the cv-corpus-<version> folder; <lang> as in corpus_conf.lang_dirs, else the language code)""")

#: Common Voice folder of a language code where they differ (override with corpus_conf.lang_dirs).
LANG_DIRS = {"zh": "zh-CN"}
#: Columns of a newer release (older ones lack sentence_id, sentence_domain, variant; some say accent).
COLUMNS = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
           "gender", "accents", "variant", "locale", "segment"]


def prepare_commonvoice(data_root: Path, langs: list[str], jobs: int = 2, root: str = "", train: str = "train",
                        lang_dirs: dict | None = None, synthetic: bool | dict = False) -> list[str]:
    """data/{train,dev,test} holding every language of `langs`. `train: validated` trains on
    validated.tsv minus the clips and the sentences of dev and test (more data than train.tsv)."""
    if train not in ("train", "validated"):
        raise CorpusError(f"commonvoice: corpus_conf.train must be train or validated, not {train!r}")
    lang_dirs = {**LANG_DIRS, **(lang_dirs or {})}
    if synthetic:
        root = str(synthesize_commonvoice(data_root, langs, lang_dirs, synthetic, jobs))
    base = COMMONVOICE.root(root)
    utts: dict[str, list[Utterance]] = {split: [] for split in SPLITS}
    skipped: dict[str, dict[str, str]] = {split: {} for split in SPLITS}
    for lang in langs:
        folder = COMMONVOICE.require(base / lang_dirs.get(lang, lang))
        rows = {split: read_tsv(folder / f"{train if split == 'train' else split}.tsv", skipped[split])
                for split in SPLITS}
        if train == "validated":
            # validated.tsv also holds the dev/test clips and other recordings of their sentences
            held_out = [r for split in ("dev", "test") for r in rows[split]]
            paths, sentences = {r["path"] for r in held_out}, {r["sentence"] for r in held_out}
            kept = [r for r in rows["train"] if r["path"] not in paths and r["sentence"] not in sentences]
            logger.info("commonvoice %s: train = validated.tsv minus %d rows of dev/test clips or sentences",
                        lang, len(rows["train"]) - len(kept))
            rows["train"] = kept
        for split in SPLITS:
            utts[split] += [Utterance(f"{r['client_id']}-{Path(r['path']).stem}", r["client_id"],
                                      str(folder / "clips" / r["path"]), r["sentence"], lang) for r in rows[split]]
    return [write_set(data_root / split, utts[split], skipped[split], langs, jobs) for split in SPLITS]


def read_tsv(path: Path, skipped: dict[str, str]) -> list[dict[str, str]]:
    """Rows of a Common Voice TSV, read by column name (releases add and reorder columns); unusable
    rows go to `skipped`."""
    with open(COMMONVOICE.require(path), encoding="utf-8", newline="") as f:
        # QUOTE_NONE: sentences contain quote characters that are text, not CSV quoting
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"client_id", "path", "sentence"} - set(reader.fieldnames or [])
        if missing:
            raise CorpusError(f"{path}: no column(s) {sorted(missing)} in the header line {reader.fieldnames}")
        rows = []
        for row in reader:
            where = f"{path.name}:{reader.line_num}"
            key = f"{row['client_id']}-{Path(row['path'] or '').stem}" if row["client_id"] and row["path"] else where
            if None in row or None in row.values():  # more or fewer fields than the header
                skipped[key] = f"malformed line ({where}): not as many fields as the header"
            elif not row["sentence"].strip():
                skipped[key] = f"empty sentence ({where})"
            else:
                rows.append({**row, "sentence": row["sentence"].strip()})
    return rows


def synthesize_commonvoice(data_root: Path, langs: list[str], lang_dirs: dict, spec: bool | dict, jobs: int) -> Path:
    """A Common Voice-shaped tree of espeak-ng speech: MP3 clips and the TSVs of a newer release
    (validated.tsv = train + dev + test)."""
    tree, splits = synthetic_corpus(data_root, "cv-corpus-synthetic", langs, spec, jobs)
    tables: dict[Path, list[str]] = {}
    for n, (split, u) in enumerate(((split, u) for split in SPLITS for u in splits[split]), start=1000):
        folder = tree / lang_dirs.get(u.lang, u.lang)
        clip = f"common_voice_{folder.name}_{n}.mp3"
        save_audio(u.wav, folder / "clips" / clip)
        row = dict.fromkeys(COLUMNS, "") | {
            "client_id": hashlib.sha512(u.speaker.encode()).hexdigest(), "path": clip,
            "sentence_id": hashlib.sha256(u.text.encode()).hexdigest(), "sentence": u.text,
            "up_votes": "2", "down_votes": "0", "locale": folder.name}
        line = "\t".join(row[c] for c in COLUMNS) + "\n"
        tables.setdefault(folder / f"{split}.tsv", []).append(line)
        tables.setdefault(folder / "validated.tsv", []).append(line)
    for path, lines in tables.items():
        atomic_write_text(str(path), "\t".join(COLUMNS) + "\n" + "".join(lines))
    return tree

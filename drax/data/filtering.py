"""Filtering: keep the utterances a model can use, list the others with their reason.

Reads `data/<set>` (text, utt2lang, utt2dur) and what feature dumping wrote into `dump/<set>`
(`dumped.scp`, `skipped`); writes into `dump/<set>`: `feats.scp` (kept only), `text.raw` (their
transcripts), `utt2lang`, and `filtered` (utt reason) for every utterance dropped here or by feature
dumping. Its inputs are never rewritten: filtering again with other settings starts from all of them.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

from drax.data.kaldi_dir import DataDirError, format_kv, read_kv_dict
from drax.fileio import atomic_write_text

logger = logging.getLogger(__name__)

DUMPED_SCP = "dumped.scp"  # every utterance feature dumping (stage 3) wrote


def read_text_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Transcripts by utterance, and the ids whose line is not UTF-8 or has no text (with reason)."""
    texts, bad = {}, {}
    for number, raw in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not raw.strip():
            continue  # a blank line names no utterance
        utt, rest = (raw.split(None, 1) + [b""])[:2]  # the id ends at a space or a tab
        key = utt.decode("utf-8", errors="replace")
        if key in texts or key in bad:
            raise DataDirError(f"{path}:{number}: duplicate id {key!r}; every id must appear once: "
                               "rename or remove one of them")
        try:
            text = rest.decode("utf-8").strip()
        except UnicodeDecodeError:
            bad[key] = f"transcript is not UTF-8 ({path}:{number})"
            continue
        if not text:
            bad[key] = f"empty transcript ({path}:{number})"
            continue
        texts[key] = text
    return texts, bad


def filter_set(data_dir: Path, dump_dir: Path, max_duration: float = 30.0) -> dict[str, str]:
    """Filter one set; returns {utt: reason} for the dropped utterances."""
    data_dir, dump_dir = Path(data_dir), Path(dump_dir)
    texts, dropped = read_text_file(data_dir / "text")
    dropped.update(read_kv_dict(str(dump_dir / "skipped")) if (dump_dir / "skipped").exists() else {})
    dumped = dump_dir / DUMPED_SCP
    if not dumped.exists():
        raise FileNotFoundError(f"{dumped} is missing: dump the features first (stage 3)")
    feats = read_kv_dict(str(dumped))
    langs = read_kv_dict(str(data_dir / "utt2lang")) if (data_dir / "utt2lang").exists() else {}
    durs = read_kv_dict(str(data_dir / "utt2dur")) if (data_dir / "utt2dur").exists() else {}
    kept = []
    for utt in sorted(feats):
        if utt in dropped:
            continue
        if utt not in texts:
            dropped[utt] = f"no transcript in {data_dir}/text"
        elif langs and utt not in langs:
            dropped[utt] = f"no language in {data_dir}/utt2lang"
        elif utt in durs and float(durs[utt]) > max_duration:
            dropped[utt] = f"longer than max_duration {max_duration} s ({durs[utt]} s)"
        else:
            kept.append(utt)
    for utt in texts:
        if utt not in feats and utt not in dropped:
            dropped[utt] = "no features (missing from wav.scp?)"
    atomic_write_text(str(dump_dir / "feats.scp"), format_kv((u, feats[u]) for u in kept))
    atomic_write_text(str(dump_dir / "text.raw"), format_kv((u, texts[u]) for u in kept))
    if langs:
        atomic_write_text(str(dump_dir / "utt2lang"), format_kv((u, langs[u]) for u in kept))
    atomic_write_text(str(dump_dir / "filtered"), format_kv(sorted(dropped.items())))
    reasons = Counter(reason.split(" (")[0].split(" /")[0] for reason in dropped.values())
    if dropped:
        logger.warning("%s: kept %d, dropped %d (%s); listed in %s", data_dir.name, len(kept), len(dropped),
                       ", ".join(f"{n} {r}" for r, n in reasons.items()), os.path.join(dump_dir, "filtered"))
    else:
        logger.info("%s: kept all %d utterances", data_dir.name, len(kept))
    return dropped

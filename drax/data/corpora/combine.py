"""Merge the prepared data dirs of other recipes into one recipe's sets (egs/multilingual)."""
from __future__ import annotations

import os
from pathlib import Path

from drax.data.corpora.common import CorpusError, write_set
from drax.data.kaldi_dir import read_data_dir


def prepare_combine(data_root: Path, langs: list[str], jobs: int = 2, sources: dict | None = None,
                    sets: dict | None = None, prefix_ids: bool = True) -> list[str]:
    """Write each set of `sets` ({set: ["<source>/<data dir>", ...]}) as the union of the listed
    data dirs, `sources` mapping a source name to a recipe's data folder (e.g. librispeech:
    ../librispeech/data). With `prefix_ids`, utterance and speaker ids get "<source>-" in front, so
    corpora cannot collide; any collision left is an error."""
    if not sources or not sets:
        raise CorpusError("combine: corpus_conf needs `sources` ({name: <recipe>/data}) and `sets` "
                          "({set: [<name>/<data dir>, ...]})")
    for name, members in sets.items():
        utts, origin = [], {}
        for member in members:
            source, _, set_name = member.partition("/")
            if source not in sources:
                raise CorpusError(f"combine: corpus_conf.sets.{name}: {member!r} names no source of "
                                  f"corpus_conf.sources ({', '.join(sources)})")
            data_dir = Path(sources[source]) / set_name
            if not (data_dir / "wav.scp").is_file():
                raise CorpusError(f"combine: {data_dir} not found (corpus_conf.sets.{name}: {member}); "
                                  f"prepare it first: cd {data_dir.parent.parent} && ./run.sh --stop_stage 1")
            for u in read_data_dir(str(data_dir)):
                if prefix_ids:
                    u.utt_id, u.speaker = f"{source}-{u.utt_id}", f"{source}-{u.speaker}"
                if not os.path.isabs(u.wav):  # recipes keep paths relative to their own folder
                    u.wav = str(data_dir.parent.parent.absolute() / u.wav)
                if u.utt_id in origin:
                    raise CorpusError(f"combine: utterance id {u.utt_id} is in both {origin[u.utt_id]} and {member} "
                                      "(set corpus_conf.prefix_ids: true, or list each data dir once)")
                origin[u.utt_id] = member
                utts.append(u)
        _check_speakers(utts, origin)
        write_set(data_root / name, utts, {}, langs, jobs)
    return list(sets)


def _check_speakers(utts, origin: dict[str, str]) -> None:
    """One speaker id in two sources would merge two people (and break Kaldi's speaker order)."""
    first: dict[str, str] = {}
    for u in utts:
        source = origin[u.utt_id].partition("/")[0]
        if first.setdefault(u.speaker, source) != source:
            raise CorpusError(f"combine: speaker id {u.speaker} is in both {first[u.speaker]} and {source} "
                              "(set corpus_conf.prefix_ids: true)")

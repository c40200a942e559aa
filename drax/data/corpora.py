"""Data preparation per corpus: one function each, turning a corpus into Kaldi data dirs.

Each function takes the recipe's `corpus_conf` and writes `<data_root>/<set>/` data dirs (with
`utt2lang`), returning the names of the sets it wrote.
"""
from __future__ import annotations

from pathlib import Path

from drax.data.kaldi_dir import read_data_dir, write_data_dir


def prepare_synthetic(data_root: Path, langs: list[str], jobs: int = 2, **conf) -> list[str]:
    """The offline synthetic multilingual corpus (espeak-ng), generated under <data_root>/synthetic."""
    from drax.data.synthetic import generate_corpus

    corpus_dir = data_root / "synthetic"
    generate_corpus(str(corpus_dir), langs=langs, jobs=jobs, **conf)
    sets = []
    for name in ("train", "dev", "test"):
        # the generator's dirs use paths relative to its own folder; recipes read data/<set>
        utts = read_data_dir(str(corpus_dir / name))
        for u in utts:
            if not Path(u.wav).is_absolute():
                u.wav = str((corpus_dir / u.wav).resolve())
        write_data_dir(str(data_root / name), utts)
        sets.append(name)
    return sets


CORPORA = {"synthetic": prepare_synthetic}


def prepare(corpus: str, data_root: Path, langs: list[str], jobs: int, conf: dict) -> list[str]:
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus '{corpus}'; valid choices: {', '.join(CORPORA)}")
    return CORPORA[corpus](Path(data_root), langs, jobs, **conf)

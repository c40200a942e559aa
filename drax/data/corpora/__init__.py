"""Data preparation per corpus (stage 1): one function each, turning a corpus into Kaldi data dirs.

Each function takes the data folder, the recipe's `langs` and `nj`, and the recipe's `corpus_conf`
as keyword arguments; it writes `<data_root>/<set>/` (wav.scp, text, utt2spk, spk2utt, utt2lang,
utt2dur, and `skipped`: what could not be used and why) and returns the names of the sets.

Real corpora are found through `corpus_conf.root` or, when that is empty, an environment variable
(LIBRISPEECH, MLS, COMMONVOICE, AISHELL, REAZONSPEECH); `corpus_conf.synthetic: true` (or a mapping
of sizes for drax.data.synthetic.generate.generate_corpus) lays out espeak-ng speech in the corpus's native
layout under <recipe>/downloads/synthetic/ and prepares that with the same code.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path

from drax.data.corpora.aishell import AISHELL, prepare_aishell
from drax.data.corpora.asterisk import prepare_asterisk
from drax.data.corpora.combine import prepare_combine
from drax.data.corpora.common import CorpusError
from drax.data.corpora.commonvoice import COMMONVOICE, prepare_commonvoice
from drax.data.corpora.librispeech import LIBRISPEECH, prepare_librispeech
from drax.data.corpora.mls import MLS, prepare_mls
from drax.data.corpora.reazonspeech import REAZONSPEECH, prepare_reazonspeech
from drax.data.kaldi_dir import read_data_dir, write_data_dir
from drax.options import check_type

__all__ = ["CORPORA", "CorpusError", "check_conf", "prepare", "stage_inputs"]


def prepare_synthetic(data_root: Path, langs: list[str], jobs: int = 2, **conf) -> list[str]:
    """The offline synthetic multilingual corpus (espeak-ng), generated under <data_root>/synthetic."""
    from drax.data.synthetic.generate import generate_corpus  # espeak-ng stand-ins only when asked for

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


CORPORA = {
    "synthetic": prepare_synthetic,
    "librispeech": prepare_librispeech,
    "mls": prepare_mls,
    "commonvoice": prepare_commonvoice,
    "aishell": prepare_aishell,
    "reazonspeech": prepare_reazonspeech,
    "combine": prepare_combine,
    "asterisk": prepare_asterisk,  # real recordings, a test set only (recipe key extra_corpora)
}
NATIVE = {c.name: c for c in (LIBRISPEECH, MLS, COMMONVOICE, AISHELL, REAZONSPEECH)}


def check_conf(corpus: str, conf: dict, what: str = "corpus_conf") -> None:
    """The corpus is known, and `conf`'s keys and simple value types (str, int, float, bool, ...) are
    those its preparation function takes: checked before any stage runs, not an hour into stage 1."""
    if corpus not in CORPORA:
        raise CorpusError(f"unknown corpus '{corpus}'; valid choices: {', '.join(CORPORA)}")
    if not isinstance(conf, dict):
        raise CorpusError(f"{what} for corpus {corpus} must be a mapping of keys (got {conf!r})")
    fn = CORPORA[corpus]
    if corpus == "synthetic":  # its keys are generate_corpus's
        from drax.data.synthetic.generate import generate_corpus as fn
    params = {k: p for k, p in inspect.signature(fn).parameters.items()
              if k not in ("data_root", "out_dir", "langs", "jobs", "force", "progress")}
    unknown = sorted(set(conf) - set(params))
    if unknown:
        raise CorpusError(f"unknown {what} key(s) {unknown} for corpus {corpus}; valid keys: {', '.join(params)}")
    for key, value in conf.items():
        try:
            check_type(what, key, params[key].annotation, value)
        except ValueError as e:
            raise CorpusError(f"{e} (corpus {corpus})") from None


def prepare(corpus: str, data_root: Path, langs: list[str], jobs: int, conf: dict) -> list[str]:
    check_conf(corpus, conf)
    return CORPORA[corpus](Path(data_root), list(langs), jobs, **conf)


def stage_inputs(corpus: str, conf: dict) -> list:
    """What stage 1 reads beyond its configuration, for its fingerprint: the corpus location from
    the environment, or the content of the data dirs that `combine` merges."""
    if corpus in NATIVE and not conf.get("root") and not conf.get("synthetic"):
        return [os.environ.get(NATIVE[corpus].env, "")]
    if corpus == "combine":
        sources = conf.get("sources") or {}
        members = [m.partition("/") for ms in (conf.get("sets") or {}).values() for m in ms]
        files = [Path(sources[src]) / name / f for src, _, name in members if src in sources
                 for f in ("wav.scp", "text", "utt2lang")]
        return [hashlib.sha1(f.read_bytes()).hexdigest()[:16] if f.exists() else "absent" for f in files]
    return []

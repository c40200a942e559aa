"""What every corpus's data preparation shares: finding the corpus, reading its transcript files,
writing one checked data dir per set, and the synthetic stand-in trees.

Nothing is dropped silently: a line that cannot be used (malformed, empty text, no audio,
unreadable audio) is listed as ``<id> <reason>`` in ``data/<set>/skipped`` and counted in the log.
"""
from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from drax.data.kaldi_dir import Utterance, format_kv, read_data_dir, write_data_dir
from drax.fileio import atomic_write_text

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


class CorpusError(RuntimeError):
    """A corpus cannot be prepared as configured; the message names the key or variable to fix."""


@dataclass(frozen=True)
class Native:
    """A corpus in its native layout: the environment variable that locates it and the layout
    (shown when it is not where the configuration says)."""

    name: str
    env: str
    layout: str

    def root(self, root: str) -> Path:
        """`corpus_conf.root`, or the environment variable when that is empty."""
        root = root or os.environ.get(self.env, "")
        if not root:
            raise self.error(f"corpus location not set (corpus_conf.root is empty and ${self.env} is unset)")
        # absolute, so that data dirs stay valid when another recipe (egs/multilingual) reads them
        return self.require(Path(root).expanduser().absolute())

    def require(self, path: Path) -> Path:
        if not path.exists():
            raise self.error(f"{path} not found")
        return path

    def error(self, problem: str) -> CorpusError:
        return CorpusError(
            f"{self.name}: {problem}.\nSet corpus_conf.root in conf/recipe.yaml (or export {self.env}) to the "
            f"folder laid out as\n{self.layout}\nor set corpus_conf.synthetic: true for a small synthetic stand-in.")


# ---- reading ---------------------------------------------------------------------------------------

def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of every non-blank line (blank lines carry nothing) of a text file, gzipped
    when its name ends in .gz; a line that is not UTF-8 is a CorpusError naming the file, the line and
    the fix."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise CorpusError(f"{path}:{number}: not UTF-8 ({e.reason} at byte {e.start}); re-encode the "
                                  "file, e.g. iconv -f latin1 -t utf-8") from None
            if line.strip():
                yield number, line


def read_transcripts(path: Path, id_pattern: re.Pattern, sep: str | None = None
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """The texts of a "<id><sep><text>" file by id, and {id: reason} for the unusable lines
    (id not matching `id_pattern`, empty text)."""
    texts, problems = {}, {}
    for number, line in read_lines(path):
        fields = line.split(sep, 1) if sep else line.split(maxsplit=1)
        utt, text = fields[0].strip(), fields[1].strip() if len(fields) > 1 else ""
        where = f"{path.name}:{number}"
        if not id_pattern.fullmatch(utt):
            problems[(utt.split() or [where])[0]] = f"malformed line ({where}): {line[:60]!r}"
        elif not text:
            problems[utt] = f"empty transcript ({where})"
        elif utt in texts:
            raise CorpusError(f"{path}:{number}: duplicate utterance id {utt}")
        else:
            texts[utt] = text
    return texts, problems


# ---- writing ---------------------------------------------------------------------------------------

def probe_audio(path: str) -> tuple[float | None, str | None]:
    """(duration in seconds, None), or (None, why the file cannot be used)."""
    if not os.path.isfile(path):
        return None, f"missing audio {path}"
    try:
        info = sf.info(path)
    except Exception as e:  # soundfile raises several types for corrupt files
        return None, f"unreadable audio {path}: {' '.join(str(e).split())}"
    if info.frames == 0:
        return None, f"empty audio {path}"
    return info.frames / info.samplerate, None


def untranscribed(audio: Iterable[Path], listed: set[str], transcripts: str) -> dict[str, str]:
    """{id: reason} for audio files whose id (file stem) no transcript line names: skipped, not dropped."""
    return {p.stem: f"audio without a transcript line ({transcripts})" for p in audio if p.stem not in listed}


def write_set(out_dir: Path, utts: list[Utterance], skipped: dict[str, str], langs: list[str],
              jobs: int = 2) -> str:
    """Measure the audio of `utts`, write the data dir (validated) and its `skipped` list; returns
    the set's name."""
    unknown = sorted({str(u.lang) for u in utts} - set(langs))
    if unknown:
        raise CorpusError(f"{out_dir.name}: utterances in language(s) {unknown}, but the recipe's langs are "
                          f"{langs}: add them to `langs` in conf/recipe.yaml")
    todo = [u for u in utts if u.duration is None]
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # soundfile releases the GIL while reading headers
        probes = list(pool.map(probe_audio, [u.wav for u in todo]))
    unusable = set()
    for u, (duration, problem) in zip(todo, probes):
        u.duration = duration
        if problem:
            skipped[u.utt_id] = problem
            unusable.add(u.utt_id)
    kept = [u for u in utts if u.utt_id not in unusable]
    if not kept:
        examples = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3]) or "no utterances found"
        raise CorpusError(f"{out_dir}: no usable utterance ({examples})")
    write_data_dir(str(out_dir), kept)
    atomic_write_text(str(out_dir / "skipped"), format_kv(sorted(skipped.items())))
    hours = sum(u.duration for u in kept) / 3600
    logger.info("%s: %d utterances, %d speakers, %.2f h", out_dir, len(kept), len({u.speaker for u in kept}), hours)
    if skipped:
        logger.warning("%s: skipped %d (listed with reasons in %s/skipped), e.g. %s", out_dir.name, len(skipped),
                       out_dir, "; ".join(f"{k}: {v}" for k, v in sorted(skipped.items())[:3]))
    return out_dir.name


# ---- synthetic stand-ins ---------------------------------------------------------------------------

#: `corpus_conf.synthetic: true`: utterances per language and split (a mapping overrides these).
SYNTHETIC_SIZES = {"n_train": 60, "n_dev": 20, "n_test": 20, "seed": 0}


def synthetic_corpus(data_root: Path, tree_name: str, langs: list[str], spec: bool | dict, jobs: int
                     ) -> tuple[Path, dict[str, list[Utterance]]]:
    """Speak a small corpus with espeak-ng (:func:`drax.data.synthetic.generate.generate_corpus`) under
    <recipe>/downloads/synthetic/espeak; returns an empty folder for the native tree (named
    `tree_name`, beside it) and the generated utterances per split."""
    from drax.data.synthetic.generate import generate_corpus  # espeak-ng stand-ins only when asked for

    downloads = data_root.absolute().parent / "downloads" / "synthetic"
    sizes = {**SYNTHETIC_SIZES, **(spec if isinstance(spec, dict) else {})}
    generate_corpus(str(downloads / "espeak"), langs=langs, jobs=jobs, **sizes)
    splits = {s: read_data_dir(str(downloads / "espeak" / s)) if (downloads / "espeak" / s).is_dir() else []
              for s in SPLITS}
    tree = downloads / tree_name
    if tree.exists():  # a tree of other sizes would leave stale files behind
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    return tree, splits


def numbered(utts: list[Utterance], start: int) -> dict[str, int]:
    """Numeric ids for the generator's speakers (native corpora number their speakers)."""
    return {s: start + i for i, s in enumerate(sorted({u.speaker for u in utts}))}


def save_audio(src: str, dst: Path) -> None:
    """Copy a generated FLAC to `dst`, re-encoded when dst's suffix names another format (.wav, .mp3)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.suffix == ".flac":
        shutil.copyfile(src, dst)
        return
    audio, rate = sf.read(src, dtype="float32")
    sf.write(dst, audio, rate)  # format from the suffix; MP3 needs libsndfile >= 1.1

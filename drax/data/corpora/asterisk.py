"""Asterisk core sounds: real studio recordings for a *test* set (never for training).

Debian's `asterisk-core-sounds-<lang>` (transcripts) and `asterisk-core-sounds-<lang>-g722` (audio)
hold the telephone prompts of the Asterisk PBX, each language read by one professional speaker,
16 kHz G.722, CC-BY-SA-3.0 (the packages' copyright files). Native layout, as the packages install:

  <root>/usr/share/doc/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt.gz   (lines "<id>: <text>")
  <root>/usr/share/asterisk/sounds/<voice>/<id>.g722                           (<id> may hold a folder: digits/1)

`fetch_asterisk` makes that tree from the .deb files (`apt-get download`, unpacked in Python).
`prepare_asterisk` decodes the G.722 audio to FLAC (PyAV) and writes `test_asterisk`, a fixed random
subset of `max_per_lang` prompts per language, and `dev_asterisk`, `dev_per_lang` of the other
prompts (a real-speech set to choose on; the test set is only reported). Prompts that are not plain speech
are skipped and listed: a bracketed note ("[beep]", "[quello]": what is spoken is not written) or a
key symbol (*, #: "star", "pound" or the key's name), and ids without audio.
"""
from __future__ import annotations

import io
import logging
import os
import random
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

from drax.data.audio import SAMPLE_RATE
from drax.data.corpora.common import CorpusError, Native, read_lines, write_set
from drax.data.kaldi_dir import Utterance
from drax.fileio import atomic_path

logger = logging.getLogger(__name__)

LANGS = ("en", "es", "fr", "it")
SET_NAME, DEV_SET_NAME = "test_asterisk", "dev_asterisk"
ASTERISK = Native("asterisk", "ASTERISK", """\
  $ASTERISK/usr/share/doc/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt.gz
  $ASTERISK/usr/share/asterisk/sounds/<voice>/<id>.g722
  (the Debian packages asterisk-core-sounds-<lang> and asterisk-core-sounds-<lang>-g722 unpacked there;
  with corpus root empty and $ASTERISK unset the recipe fetches them with apt-get download)""")
NOT_SPOKEN_AS_WRITTEN = re.compile(r"[\[\]*#]")


def packages(lang: str) -> list[str]:
    return [f"asterisk-core-sounds-{lang}", f"asterisk-core-sounds-{lang}-g722"]


def prepare_asterisk(data_root: Path, langs: list[str], jobs: int = 2, root: str = "",
                     max_per_lang: int | None = 100, dev_per_lang: int = 100, seed: int = 0) -> list[str]:
    """Write data/test_asterisk and data/dev_asterisk (none with dev_per_lang 0, or no prompt left)
    for the recipe's languages that Asterisk speaks (en, es, fr, it)."""
    wanted = [lang for lang in LANGS if lang in langs]
    if not wanted:
        raise CorpusError(f"asterisk: none of the recipe's langs {langs} is recorded ({', '.join(LANGS)})")
    if not root and not os.environ.get(ASTERISK.env):
        root = str(fetch_asterisk(data_root.absolute().parent / "downloads" / "asterisk", wanted))
    base = ASTERISK.root(root)
    flac_dir = data_root.absolute().parent / "downloads" / "asterisk" / "flac"
    sets = {SET_NAME: ([], {}), DEV_SET_NAME: ([], {})}
    for lang in wanted:
        texts, problems = read_prompts(ASTERISK.require(
            base / "usr/share/doc" / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"))
        voices = sorted(p for p in (base / "usr/share/asterisk/sounds").glob(f"{lang}_*") if p.is_dir())
        if len(voices) != 1:
            raise ASTERISK.error(f"expected one {lang}_* voice folder in {base / 'usr/share/asterisk/sounds'}, "
                                 f"found {[v.name for v in voices]}")
        voice = voices[0]
        sets[SET_NAME][1].update({utt_id(lang, k): v for k, v in problems.items()})
        test = sorted(texts)
        if max_per_lang is not None and len(test) > max_per_lang:
            test = sorted(random.Random(f"{seed}-{lang}").sample(test, max_per_lang))
        rest = sorted(set(texts) - set(test))
        dev = sorted(random.Random(f"{seed}-{lang}-dev").sample(rest, min(dev_per_lang, len(rest))))
        for name, prompts in ((SET_NAME, test), (DEV_SET_NAME, dev)):
            utts, skipped = sets[name]
            for prompt in prompts:
                src, utt = voice / f"{prompt}.g722", utt_id(lang, prompt)
                if not src.is_file():
                    skipped[utt] = f"missing audio {src}"
                    continue
                dst = flac_dir / lang / f"{prompt.replace('/', '-')}.flac"
                if not dst.is_file():
                    write_flac(decode_g722(src), dst)
                utts.append(Utterance(utt, f"asterisk_{voice.name}", str(dst), texts[prompt], lang))
    return [write_set(data_root / name, utts, skipped, langs, jobs) for name, (utts, skipped) in sets.items()
            if utts or name == SET_NAME]


def utt_id(lang: str, prompt: str) -> str:
    return f"{lang}_asterisk-{prompt.replace('/', '-')}"


def read_prompts(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """{id: text} of a core-sounds-<lang>.txt(.gz) file and {id: reason} for the prompts left out."""
    texts, problems = {}, {}
    for number, line in read_lines(path):
        if line.lstrip("\ufeff").startswith(";"):  # comment
            continue
        prompt, sep, text = line.partition(":")
        prompt, text = prompt.strip(), text.strip()
        if not sep or not prompt or " " in prompt:
            problems[f"line{number}"] = f"malformed line ({path.name}:{number}): {line[:60]!r}"
        elif not text:
            problems[prompt] = f"empty transcript ({path.name}:{number})"
        elif NOT_SPOKEN_AS_WRITTEN.search(text):
            problems[prompt] = f"not spoken as written (bracketed note or key symbol): {text[:60]!r}"
        else:
            texts[prompt] = text
    return texts, problems


def decode_g722(path: Path) -> np.ndarray:
    """16 kHz mono float32 samples of a raw G.722 file (PyAV's bundled FFmpeg decoder)."""
    import av  # only this corpus needs it

    try:
        with av.open(str(path), format="g722") as container:
            stream = container.streams.audio[0]
            if stream.rate != SAMPLE_RATE:
                raise CorpusError(f"{path}: G.722 at {stream.rate} Hz, expected {SAMPLE_RATE}")
            frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
    except av.error.FFmpegError as e:
        raise CorpusError(f"{path}: cannot decode G.722 ({e}); re-fetch the package") from None
    samples = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
    return (samples.astype(np.float32) / 32768.0) if samples.dtype == np.int16 else samples.astype(np.float32)


def write_flac(samples: np.ndarray, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        sf.write(tmp, samples, SAMPLE_RATE, format="FLAC")


def fetch_asterisk(dest: Path, langs: list[str]) -> Path:
    """dest/tree: the packages of `langs` unpacked (downloaded once into dest/debs with apt-get)."""
    debs, tree = dest / "debs", dest / "tree"
    debs.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        for name in packages(lang):
            if not list(debs.glob(f"{name}_*.deb")):
                if shutil.which("apt-get") is None:
                    raise ASTERISK.error(f"no apt-get to download {name}; put {name}_*.deb (packages.debian.org) "
                                         f"into {debs}, or unpack the packages yourself")
                run = subprocess.run(["apt-get", "download", name], cwd=debs, capture_output=True, text=True)
                if run.returncode:
                    raise ASTERISK.error(f"apt-get download {name} failed: {run.stderr.strip()[-300:]}")
            deb = sorted(debs.glob(f"{name}_*.deb"))[-1]
            stamp = tree / ".unpacked" / deb.name
            if not stamp.exists():
                unpack_deb(deb, tree)
                stamp.parent.mkdir(parents=True, exist_ok=True)
                stamp.touch()
    return tree


def unpack_deb(deb: Path, dest: Path) -> None:
    """Extract the data member of a Debian package (an `ar` archive holding data.tar.*) into dest."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise CorpusError(f"{deb}: not a Debian package (no ar header); delete it and fetch again")
    pos = 8
    while pos + 60 <= len(raw):
        name = raw[pos: pos + 16].decode("ascii").strip().rstrip("/")
        size = int(raw[pos + 48: pos + 58].decode("ascii").strip())
        body = raw[pos + 60: pos + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                tar.extractall(dest, filter="data")
            return
        pos += 60 + size + (size % 2)  # members are 2-byte aligned
    raise CorpusError(f"{deb}: no data.tar member; delete it and fetch again")

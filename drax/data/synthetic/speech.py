"""Speaking one utterance: its spoken form (:func:`to_spoken`), espeak-ng (:func:`synthesize`) or
another voice family (:func:`speak`); and speaking many into content-addressed audio files
(:func:`run_jobs`, files named by :func:`synth_key`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from drax.data import voices as voices_mod
from drax.data.audio import SAMPLE_RATE
from drax.data.synthetic.sources import MissingSourceError
from drax.data.synthetic.speakers import Speaker
from drax.fileio import atomic_path

SYNTH_VERSION = 1  # bump when the synthesis pipeline changes (invalidates reused audio)


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed in a way that is not a per-utterance skip."""


# ----------------------------------------------------------------------------------------------
# Spoken forms
# ----------------------------------------------------------------------------------------------

_PINYIN_TOKEN = re.compile(r"^[a-z]+[1-5]$")
_CJK_PAUSE_LONG = set("。！？；.!?;…")
_CJK_PAUSE_SHORT = set("，、：,:")
_CJK_QUOTES = set("“”「」『』\"'")
_JA_SPLIT_BEFORE = re.compile(r"(?<=[\u30a1-\u30fa\u30fc])(?=[アイウエオ][ーァィゥェォャュョ])")
_KATAKANA_OK = re.compile(r"^[\u30a1-\u30fa\u30fc]+$")


@contextlib.contextmanager
def _quiet():
    """Silence libraries that print at import time (pyopenjtalk's ONNX notice)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield


def _require(module: str, package: str):
    try:
        with _quiet():
            return __import__(module)
    except ImportError as e:
        raise MissingSourceError(
            f"speaking this language needs PyPI package {package} (pip install {package})") from e


def to_spoken(text: str, lang: str) -> str | None:
    """The string given to espeak-ng for ``text``, or None if it cannot be spoken reliably.

    zh: numbered pinyin syllables separated by spaces, pauses as ``,``/``.``; ja: katakana from
    pyopenjtalk; other languages: the text itself.
    """
    if lang == "zh":
        pypinyin = _require("pypinyin", "pypinyin")
        toks = pypinyin.lazy_pinyin(text, style=pypinyin.Style.TONE3,
                                    neutral_tone_with_five=True, errors="default")
        out: list[str] = []
        for tok in toks:
            tok = tok.strip()
            if not tok:
                continue
            if _PINYIN_TOKEN.match(tok):
                out.append(tok)
            elif all(c in _CJK_PAUSE_LONG | _CJK_PAUSE_SHORT | _CJK_QUOTES for c in tok):
                if any(c in _CJK_PAUSE_LONG for c in tok):
                    out.append(".")
                elif any(c in _CJK_PAUSE_SHORT for c in tok):
                    out.append(",")
            else:
                return None  # a character without reading
        if not any(_PINYIN_TOKEN.match(t) for t in out):
            return None
        return " ".join(out).replace(" ,", ",").replace(" .", ".")
    if lang == "ja":
        _require("pyopenjtalk", "pyopenjtalk-plus")
        import pyopenjtalk  # optional source, checked where used

        with _quiet():
            njd = pyopenjtalk.run_frontend(text)
        # Accent phrases (words chained by OpenJTalk) become space-separated "words" for espeak:
        # espeak's ja rules misread long unspaced katakana runs (e.g. "ノオーモジ").
        phrases: list[str] = []
        for node in njd:
            pron = node["pron"].replace("’", "")
            if node["pos"] == "記号":
                if node["string"] in "。！？!?.":
                    phrases.append("。")
                elif node["string"] in "、，,：:；;・":
                    phrases.append("、")
                continue  # quotes, brackets
            if not _KATAKANA_OK.match(pron):
                return None
            if node["chain_flag"] == 1 and phrases and phrases[-1] not in ("、", "。"):
                phrases[-1] += pron
            else:
                phrases.append(pron)
        out = ""
        for ph in phrases:
            out += ph if ph in ("、", "。") else ((" " if out and out[-1] not in "、。" else "") + ph)
        # espeak merges a vowel kana into the preceding mora as a long vowel (ノオ -> no:), and then
        # spells out a following ー or small kana ("ノオー", "クウィ"): start a new word there.
        out = _JA_SPLIT_BEFORE.sub(" ", out)
        if not re.search("[\u30a1-\u30fa]", out):
            return None
        return out.strip()
    return text


# ----------------------------------------------------------------------------------------------
# Synthesis
# ----------------------------------------------------------------------------------------------

def espeak_version() -> str:
    """``espeak-ng --version`` (raises :class:`SynthesisError` if espeak-ng is not installed)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SynthesisError("espeak-ng not found: apt-get install espeak-ng")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().split("  Data at")[0]


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """int16 samples and rate from espeak's WAV (its --stdout header has placeholder sizes)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError("espeak-ng did not produce WAV data")
    pos, rate = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"fmt ":
            channels = int.from_bytes(data[pos + 10:pos + 12], "little")
            rate = int.from_bytes(data[pos + 12:pos + 16], "little")
            bits = int.from_bytes(data[pos + 22:pos + 24], "little")
            if channels != 1 or bits != 16:
                raise SynthesisError(f"unexpected espeak output: {channels} ch, {bits} bit")
        elif cid == b"data":
            body = data[pos + 8:pos + 8 + min(size, len(data) - pos - 8)]
            body = body[: len(body) // 2 * 2]
            if rate is None:
                raise SynthesisError("WAV data chunk before fmt chunk")
            return np.frombuffer(body, dtype="<i2").astype(np.int16), rate
        pos += 8 + size + (size & 1)
    raise SynthesisError("no data chunk in espeak-ng output")


def synthesize(spoken: str, voice: str, pitch: int, speed: int, timeout: float = 120.0
               ) -> tuple[np.ndarray, str]:
    """Speak ``spoken`` with espeak-ng: (int16 samples at 16 kHz mono, espeak's phoneme string).

    The phonemes (``-x``) show language switches as ``(en)``...``(de)``: for zh/ja that means
    espeak fell back to spelling ("Chinese letter"), see :func:`_run_job`.
    """

    # -x --phonout=/dev/stderr: the phoneme transcription goes to stderr, the WAV to stdout
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-b", "1", "-x",
           "--phonout=/dev/stderr", "--stdout"]
    try:
        proc = subprocess.run(cmd, input=spoken.encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise SynthesisError("espeak-ng not found: apt-get install espeak-ng") from e
    phonemes = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0:
        raise SynthesisError(f"espeak-ng failed ({proc.returncode}) on {spoken!r}: {phonemes.strip()}")
    pcm, rate = _parse_wav(proc.stdout)
    if len(pcm) == 0:
        return pcm, phonemes
    return voices_mod.to_16k_int16(pcm.astype(np.float32) / 32768.0, rate), phonemes


_LANG_SWITCH = re.compile(r"\((?:en|[a-z]{2,3}(?:-[a-z]+)?)\)")


def synth_key(spoken: str, speaker: Speaker) -> str:
    """Content hash naming an audio file: same inputs, same file."""
    blob = json.dumps([SYNTH_VERSION, SAMPLE_RATE, spoken, speaker.voice, speaker.pitch,
                       speaker.speed], ensure_ascii=False)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


def speak(spoken: str, speaker: Speaker) -> tuple[np.ndarray, str]:
    """(int16 samples at 16 kHz, espeak's phonemes or "" for another voice) of one utterance."""
    if speaker.family == "espeak":
        return synthesize(spoken, speaker.voice, speaker.pitch, speaker.speed)
    return voices_mod.speak(speaker.family, spoken, speaker.variant, speaker.speed), ""


@dataclass(frozen=True)
class Job:
    """One utterance to speak into the FLAC file ``path`` (skipped past ``max_samples``)."""

    utt_id: str
    speaker: Speaker
    spoken: str
    path: Path
    max_samples: int


def _run_job(job: Job) -> tuple[str, str, int, bool]:
    """(utt_id, status, n_samples, lang_switch).

    status: "ok", "reused", "empty", "too_long", or "unreadable" (zh/ja input that espeak
    spelled out character by character, seen as a language switch in its phonemes).
    ``lang_switch`` tells whether espeak switched language for some word (Latin-script
    languages: a loanword read with English rules; kept). Reused files report False.
    """

    if job.path.exists():
        return job.utt_id, "reused", sf.info(job.path).frames, False
    audio, phonemes = speak(job.spoken, job.speaker)
    switch = bool(_LANG_SWITCH.search(phonemes))
    if switch and job.speaker.lang in ("zh", "ja"):
        return job.utt_id, "unreadable", len(audio), switch
    if len(audio) < SAMPLE_RATE // 10 or int(np.abs(audio.astype(np.int32)).max()) < 64:
        return job.utt_id, "empty", len(audio), switch
    if len(audio) > job.max_samples:
        return job.utt_id, "too_long", len(audio), switch
    job.path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(job.path) as tmp:
        sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return job.utt_id, "ok", len(audio), switch


def _worker_signals() -> None:
    """A pool worker dies on SIGTERM, the signal Pool.terminate ends it with. Forked from
    drax.bin.run_recipe it inherits a handler that makes SIGTERM an exit, and a worker waiting on the
    task queue's lock then runs exit code that can wait on the pool's locks forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def worker_pool(n_proc: int):
    """A pool of `n_proc` forked processes that its `with` block's end (terminate) always ends."""
    return multiprocessing.get_context("fork").Pool(n_proc, initializer=_worker_signals)


def run_jobs(jobs: Sequence[Job], n_proc: int, progress: bool
             ) -> dict[str, tuple[str, int, bool]]:
    """{utt_id: (status, n_samples, lang_switch)} of ``jobs`` (see :func:`_run_job`), run in
    ``n_proc`` forked processes."""
    results: dict[str, tuple[str, int, bool]] = {}
    bar = tqdm(total=len(jobs), desc="synthesising", unit="utt", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    try:
        if n_proc <= 1 or len(jobs) < 2:
            for job in jobs:
                u, st, n, sw = _run_job(job)
                results[u] = (st, n, sw)
                bar.update(1)
        else:
            with worker_pool(n_proc) as pool:
                for u, st, n, sw in pool.imap_unordered(_run_job, jobs, chunksize=16):
                    results[u] = (st, n, sw)
                    bar.update(1)
    finally:
        bar.close()
    return results

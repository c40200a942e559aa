"""Synthetic multilingual mini corpus: local text sources spoken by espeak-ng.

:func:`generate_corpus` draws distinct sentences per language (:mod:`drax.data.text_sources`),
splits them so that dev and test sentences never occur in train, speaks each with espeak-ng in
one of many synthetic "speakers", and writes Kaldi data dirs plus a text pool::

    out_dir/
      audio/<lang>/<speaker>/<hash>.flac   16 kHz mono 16-bit FLAC, content-addressed (files of
                                           earlier runs with other arguments stay; wav.scp
                                           lists the ones in use)
      train/ dev/ test/                    wav.scp text utt2spk spk2utt utt2lang utt2dur
      text_pool/<lang>.txt                 sentences not in dev/test (train included), one a line
      manifest.json                        written last: arguments, counts, hours, skipped ids
      generate.log                         (written by the CLI, drax/bin/make_synthetic.py)

Design choices
--------------
* **Split on text.** Each language's pool is deduplicated on
  :func:`~drax.data.text_sources.dedup_key` (case and punctuation folded) and shuffled with the
  seed; test takes the first ``n_test`` sentences, dev the next ``n_dev``, train the next
  ``n_train``. A sentence therefore appears in at most one split, even modulo case/punctuation.
  ``text_pool/<lang>.txt`` holds every pool sentence except dev/test ones.
* **Speakers.** A speaker is one fixed (voice variant, pitch, speed) combination of one language:
  13 espeak variants (m1..m8, f1..f5) x 3 pitches x 3 speeds = 117 per language. Speaker sets
  are **disjoint across splits** (dev and test get ``n_eval_speakers`` combinations each, train
  the rest), so dev/test measure unseen speakers. espeak has only 13 timbres, so an unseen
  speaker still shares its variant with some training speakers, but never its pitch/speed
  combination. Which speaker reads a sentence is a hash of (seed, language, split, sentence), so
  it does not change when the sizes change. ``voices`` hands a fraction of a language's training
  sentences to other voice families (:mod:`drax.data.voices`: hibari, piper, flite; English), each
  (voice, pace) one speaker; dev and test stay espeak-ng.
* **Spoken form.** zh is read from numbered pinyin (``pypinyin``, Style.TONE3) by the
  ``cmn-latn-pinyin`` voice, ja from katakana (OpenJTalk readings as in
  ``pyopenjtalk.g2p(kana=True)``, package ``pyopenjtalk-plus``, but with accent phrases separated
  by spaces, which espeak's ja rules need); ``text`` always holds the original script. Sentences whose spoken form
  cannot be made (characters without reading) are not used for speech (they stay in the pool).
* **Determinism and reuse.** Everything is a function of the arguments and the installed text
  sources; espeak-ng is run as a fresh process per utterance (the library keeps state between
  utterances, so in-process synthesis would depend on job order), its 22.05 kHz output is
  resampled to 16 kHz with soxr (HQ), peak-limited to 0.99 (no clipping) and written as 16-bit
  FLAC. Audio files are named by a hash
  of (spoken text, voice, pitch, speed, :data:`SYNTH_VERSION`), written to a temporary name and
  renamed, so a re-run reuses every finished file. ``manifest.json`` is deleted at the start of a
  run and written last: when it exists with the same arguments, :func:`generate_corpus` returns
  at once (pass ``force=True`` after installing other text sources).
* **Skips.** Utterances longer than ``max_duration`` seconds, with empty/silent synthesis, or
  (zh/ja) that espeak could not read (it falls back to spelling "Chinese/Japanese letter",
  visible as a language switch in its phonemes) are skipped; their ids are logged and listed in
  the manifest, so a split can end up slightly smaller than asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from tqdm import tqdm

from drax.data import text_sources
from drax.data import voices as voices_mod
from drax.data.audio import SAMPLE_RATE
from drax.data.kaldi_dir import Utterance, validate_data_dir, write_data_dir
from drax.data.text_sources import LANGS, dedup_key
from drax.fileio import atomic_path, atomic_write_text, remove_stale_temp_files

logger = logging.getLogger(__name__)

SYNTH_VERSION = 1  # bump when the synthesis pipeline changes (invalidates reused audio)
SPLITS = ("train", "dev", "test")

#: espeak-ng voice per language (pt: Brazilian, matching fortunes-br / manpages-pt-br / Django).
VOICES: dict[str, str] = {"en": "en-us", "de": "de", "es": "es", "fr": "fr-fr", "it": "it",
                          "pt": "pt-br", "zh": "cmn-latn-pinyin", "ja": "ja"}
VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
                             "f1", "f2", "f3", "f4", "f5")
PITCHES: tuple[int, ...] = (35, 50, 65)
SPEEDS: tuple[int, ...] = (145, 160, 175)

#: Default sizes (utterances per language): en 4000 + 7 x 1000 train, 100 dev + 100 test per
#: language = 12,600 utterances, ~12.8 h of audio, ~870 MB of FLAC; measured 3.6 min to generate
#: with 2 jobs on 2 cores (text pools ~20 s of it).
DEFAULT_N_TRAIN: dict[str, int] = {"en": 4000, "de": 1000, "es": 1000, "fr": 1000, "it": 1000,
                                   "pt": 1000, "zh": 1000, "ja": 1000}
DEFAULT_N_DEV = 100
DEFAULT_N_TEST = 100


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed in a way that is not a per-utterance skip."""


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker of one language. espeak-ng: voice variant, pitch (0-99) and speed
    (words/min); a family of :mod:`drax.data.voices`: its voice, pitch 0 (the voice's own)
    and speed in percent of the voice's own pace."""

    lang: str
    variant: str
    pitch: int
    speed: int
    family: str = "espeak"

    @property
    def id(self) -> str:
        if self.family != "espeak":
            return f"{self.lang}_{self.family}-{self.variant}_s{self.speed:03d}"
        return f"{self.lang}_{self.variant}_p{self.pitch:02d}_s{self.speed:03d}"

    @property
    def voice(self) -> str:
        if self.family != "espeak":
            return f"{self.family}:{self.variant}"
        return f"{VOICES[self.lang]}+{self.variant}"


def all_speakers(lang: str, family: str = "espeak") -> list[Speaker]:
    """Every (variant, pitch, speed) combination of ``lang`` (or every (voice, pace) of another
    family), in a fixed order."""
    if family != "espeak":
        fam = voices_mod.FAMILIES[family]
        return [Speaker(lang, v, 0, pace, family) for v in fam.voices for pace in fam.paces]
    return [Speaker(lang, v, p, s) for v in VARIANTS for p in PITCHES for s in SPEEDS]


def speaker_sets(lang: str, seed: int = 0, n_eval_speakers: int = 10) -> dict[str, list[Speaker]]:
    """Disjoint speaker sets per split: ``n_eval_speakers`` each for test and dev, the rest train."""
    spk = all_speakers(lang)
    if 2 * n_eval_speakers >= len(spk):
        raise ValueError(f"n_eval_speakers={n_eval_speakers} leaves no training speaker")
    random.Random(f"drax-speakers-{seed}-{lang}").shuffle(spk)
    test = sorted(spk[:n_eval_speakers], key=lambda s: s.id)
    dev = sorted(spk[n_eval_speakers:2 * n_eval_speakers], key=lambda s: s.id)
    train = sorted(spk[2 * n_eval_speakers:], key=lambda s: s.id)
    return {"train": train, "dev": dev, "test": test}


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
        raise text_sources.MissingSourceError(
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
class _Job:
    utt_id: str
    speaker: Speaker
    spoken: str
    path: str
    max_samples: int


def _run_job(job: _Job) -> tuple[str, str, int, bool]:
    """(utt_id, status, n_samples, lang_switch).

    status: "ok", "reused", "empty", "too_long", or "unreadable" (zh/ja input that espeak
    spelled out character by character, seen as a language switch in its phonemes).
    ``lang_switch`` tells whether espeak switched language for some word (Latin-script
    languages: a loanword read with English rules; kept). Reused files report False.
    """

    if os.path.exists(job.path):
        return job.utt_id, "reused", sf.info(job.path).frames, False
    audio, phonemes = speak(job.spoken, job.speaker)
    switch = bool(_LANG_SWITCH.search(phonemes))
    if switch and job.speaker.lang in ("zh", "ja"):
        return job.utt_id, "unreadable", len(audio), switch
    if len(audio) < SAMPLE_RATE // 10 or int(np.abs(audio.astype(np.int32)).max()) < 64:
        return job.utt_id, "empty", len(audio), switch
    if len(audio) > job.max_samples:
        return job.utt_id, "too_long", len(audio), switch
    os.makedirs(os.path.dirname(job.path), exist_ok=True)
    with atomic_path(job.path) as tmp:
        sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return job.utt_id, "ok", len(audio), switch


def _run_jobs(jobs: Sequence[_Job], n_proc: int, progress: bool
              ) -> dict[str, tuple[str, int, bool]]:

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
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(n_proc) as pool:
                for u, st, n, sw in pool.imap_unordered(_run_job, jobs, chunksize=16):
                    results[u] = (st, n, sw)
                    bar.update(1)
    finally:
        bar.close()
    return results


# ----------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------

def _per_lang(value: int | Mapping[str, int], langs: Sequence[str], name: str) -> dict[str, int]:
    """Sizes per language from an int or a mapping (entries of other known languages ignored)."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(LANGS))
        if unknown:
            raise ValueError(f"{name}: unknown languages {unknown}")
        missing = [lang for lang in langs if lang not in value]
        if missing:
            raise ValueError(f"{name}: no size for languages {missing}")
        out = {lang: int(value[lang]) for lang in langs}
    else:
        out = {lang: int(value) for lang in langs}
    if any(v < 0 for v in out.values()):
        raise ValueError(f"{name}: sizes must be >= 0")
    return out


def _hash(*parts: object) -> str:
    return hashlib.sha1("\t".join(map(str, parts)).encode("utf-8")).hexdigest()


def _select(lang: str, pool: list[str], sizes: dict[str, int], seed: int, random_frac: float
            ) -> tuple[dict[str, list[tuple[str, str]]], list[str], dict[str, int]]:
    """Split ``pool`` into test/dev/train (text, spoken) lists and the text pool."""
    need = {"test": sizes["test"], "dev": sizes["dev"]}
    n_rand = int(round(sizes["train"] * random_frac))
    need["train"] = sizes["train"] - n_rand
    chosen: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    order = ("test", "dev", "train")
    unspeakable = 0
    idx = 0
    rest: list[str] = []
    for split in order:
        while len(chosen[split]) < need[split] and idx < len(pool):
            text = pool[idx]
            idx += 1
            spoken = to_spoken(text, lang)
            if spoken is None:
                unspeakable += 1
                rest.append(text)
                continue
            chosen[split].append((text, spoken))
    rest.extend(pool[idx:])
    eval_keys = {dedup_key(t, lang) for s in ("dev", "test") for t, _ in chosen[s]}
    if n_rand:
        taken = {dedup_key(t, lang) for t, _ in chosen["train"]}
        for seq in text_sources.wordfreq_sequences(lang, 3 * n_rand, seed=seed):
            if len(chosen["train"]) >= sizes["train"]:
                break
            k = dedup_key(seq, lang)
            if k in eval_keys or k in taken:
                continue
            spoken = to_spoken(seq, lang)
            if spoken is None:
                continue
            taken.add(k)
            chosen["train"].append((seq, spoken))
    text_pool = [t for t, _ in chosen["train"]] + [t for t in rest if dedup_key(t, lang) not in eval_keys]
    stats = {"pool": len(pool), "unspeakable": unspeakable,
             **{f"short_{s}": sizes[s] - len(chosen[s]) for s in SPLITS}}
    for s in SPLITS:
        if len(chosen[s]) < sizes[s]:
            logger.warning("%s: only %d sentences for %s (asked %d): the pool has %d",
                           lang, len(chosen[s]), s, sizes[s], len(pool))
    return chosen, text_pool, stats


def _pick_family(mix: Mapping[str, float], digest: str) -> str:
    """The voice family of a training sentence: ``digest`` as a uniform draw in [0, 1) against the
    cumulative fractions of ``mix``; "espeak" past them."""
    u, edge = int(digest[:12], 16) / 16**12, 0.0
    for family, frac in mix.items():
        edge += frac
        if u < edge:
            return family
    return "espeak"


def generate_corpus(out_dir: str, langs: Sequence[str] = LANGS,
                    n_train: int | Mapping[str, int] = DEFAULT_N_TRAIN,
                    n_dev: int | Mapping[str, int] = DEFAULT_N_DEV,
                    n_test: int | Mapping[str, int] = DEFAULT_N_TEST,
                    seed: int = 0, jobs: int = 1, *,
                    text_pool_size: int | None = None,
                    sources: Sequence[str] | None = None,
                    random_frac: float = 0.0,
                    n_eval_speakers: int = 10,
                    max_duration: float = 30.0,
                    voices: Mapping[str, Mapping[str, float]] | None = None,
                    force: bool = False,
                    progress: bool = True) -> dict:
    """Generate the synthetic corpus under ``out_dir`` and return its manifest (also written to
    ``out_dir/manifest.json``).

    ``n_train``/``n_dev``/``n_test`` are utterances per language (an int for all languages, or a
    mapping language -> count). ``jobs`` processes run espeak-ng. ``text_pool_size`` caps the
    lines of ``text_pool/<lang>.txt`` (None: the whole pool minus dev/test). ``sources`` restricts
    the text sources (names of :data:`drax.data.text_sources.SOURCES`). ``random_frac`` replaces
    that fraction of each language's training sentences with random frequency-weighted word
    sequences (needs PyPI ``wordfreq``). Speaker sets: see :func:`speaker_sets`. ``voices``
    ({lang: {family: fraction}}, families of :data:`drax.data.voices.FAMILIES`) gives that fraction
    of a language's *training* sentences to a voice family (which sentence: a hash of the
    seed and the sentence), the rest to espeak-ng; dev and test stay espeak-ng with unseen speakers.

    Deterministic: the same arguments (and installed text sources) give byte-identical text files
    and audio. Idempotent: finished audio is reused; with ``manifest.json`` present for the same
    arguments the call returns at once unless ``force``.
    """
    t0 = time.time()
    langs = list(langs)
    for lang in langs:
        if lang not in LANGS:
            raise ValueError(f"unsupported language {lang!r}; expected some of {', '.join(LANGS)}")
    if len(set(langs)) != len(langs):
        raise ValueError(f"duplicate languages in {langs}")
    if not 0.0 <= random_frac <= 1.0:
        raise ValueError("random_frac must be in [0, 1]")
    sizes = {"train": _per_lang(n_train, langs, "n_train"), "dev": _per_lang(n_dev, langs, "n_dev"),
             "test": _per_lang(n_test, langs, "n_test")}
    mix = voices_mod.validate_mix(dict(voices or {}), langs)
    args = {"langs": langs, "n_train": sizes["train"], "n_dev": sizes["dev"],
            "n_test": sizes["test"], "seed": int(seed), "text_pool_size": text_pool_size,
            "sources": list(sources) if sources is not None else None,
            "random_frac": float(random_frac), "n_eval_speakers": int(n_eval_speakers),
            "max_duration": float(max_duration), "synth_version": SYNTH_VERSION,
            **({"voices": mix} if mix else {})}  # absent when espeak-ng speaks everything
    out_dir = os.path.abspath(out_dir)
    manifest_path = os.path.join(out_dir, "manifest.json")

    if not force and os.path.isfile(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            old = json.load(f)
        counts = old.get("counts", {})
        if old.get("args") == args and all(
                os.path.isfile(os.path.join(out_dir, s, "wav.scp"))
                for s in SPLITS if counts.get(s, {}).get("utts", 1)):
            logger.info("corpus in %s is complete for these arguments (manifest.json); nothing to do",
                        out_dir)
            return old
    espeak = espeak_version()
    families_used = sorted({family for lang_mix in mix.values() for family in lang_mix})
    packages = voices_mod.package_versions(families_used)
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(manifest_path):
        os.unlink(manifest_path)  # incomplete from here on
    logger.info("generating corpus in %s: %s (%s)", out_dir, json.dumps(args), espeak)

    utt_rows: dict[str, list[tuple[str, Speaker, str, str, str]]] = {s: [] for s in SPLITS}
    pools: dict[str, list[str]] = {}
    lang_stats: dict[str, dict] = {}
    for lang in langs:
        lsizes = {s: sizes[s][lang] for s in SPLITS}
        pool = text_sources.sentence_pool(lang, seed=seed, sources=sources)
        chosen, text_pool, st = _select(lang, pool, lsizes, seed, random_frac)
        st["sources"] = text_sources.last_pool_stats.get(lang, {}).get("sources", {})
        lang_stats[lang] = st
        pools[lang] = text_pool if text_pool_size is None else text_pool[:text_pool_size]
        spk_sets = speaker_sets(lang, seed, n_eval_speakers)
        family_speakers = {family: all_speakers(lang, family) for family in mix.get(lang, {})}
        seen_ids: dict[str, str] = {}
        for split in SPLITS:
            for text, spoken in chosen[split]:
                spks = spk_sets[split]
                if split == "train" and family_speakers:
                    family = _pick_family(mix[lang], _hash("family", seed, lang, text))
                    spks = family_speakers.get(family, spks)
                spk = spks[int(_hash("spk", seed, lang, split, text)[:8], 16) % len(spks)]
                utt_id = f"{spk.id}-{_hash('utt', lang, text)[:12]}"
                if utt_id in seen_ids:
                    raise RuntimeError(f"utterance id collision: {utt_id} "
                                       f"({seen_ids[utt_id]!r} / {text!r})")
                seen_ids[utt_id] = text
                path = os.path.join(out_dir, "audio", lang, spk.id, synth_key(spoken, spk) + ".flac")
                utt_rows[split].append((utt_id, spk, text, spoken, path))
        logger.info("%s: pool %d sentences; train %d, dev %d, test %d; text pool %d lines",
                    lang, len(pool), len(chosen["train"]), len(chosen["dev"]),
                    len(chosen["test"]), len(pools[lang]))

    remove_stale_temp_files(os.path.join(out_dir, "audio"))  # what an interrupted run left
    max_samples = int(max_duration * SAMPLE_RATE)
    job_list = [_Job(u, spk, spoken, path, max_samples)
                for split in SPLITS for (u, spk, _, spoken, path) in utt_rows[split]]
    t_synth = time.time()
    results = _run_jobs(job_list, max(1, int(jobs)), progress)
    t_synth = time.time() - t_synth
    n_new = sum(1 for st, _, _ in results.values() if st == "ok")
    n_reused = sum(1 for st, _, _ in results.values() if st == "reused")
    logger.info("synthesis: %d new, %d reused in %.1f s", n_new, n_reused, t_synth)

    skipped: dict[str, list[str]] = {"empty": [], "too_long": [], "unreadable": []}
    switches: dict[str, int] = {lang: 0 for lang in langs}
    counts: dict[str, dict[str, dict]] = {}
    for split in SPLITS:
        utts: list[Utterance] = []
        per_lang: dict[str, dict] = {lang: {"utts": 0, "hours": 0.0} for lang in langs}
        for utt_id, spk, text, spoken, path in utt_rows[split]:
            status, n, switch = results[utt_id]
            switches[spk.lang] += int(switch)
            if status in skipped:
                skipped[status].append(utt_id)
                logger.warning("skipped %s (%s, %.1f s): %s", utt_id, status, n / SAMPLE_RATE, text)
                continue
            dur = n / SAMPLE_RATE
            utts.append(Utterance(utt_id=utt_id, speaker=spk.id, wav=path, text=text,
                                  lang=spk.lang, duration=dur))
            per_lang[spk.lang]["utts"] += 1
            per_lang[spk.lang]["hours"] += dur / 3600
        split_dir = os.path.join(out_dir, split)
        if not utts:
            logger.warning("%s: no utterances; no data dir written", split)
            if os.path.isdir(split_dir):
                shutil.rmtree(split_dir)
            counts[split] = {"utts": 0, "speakers": 0, "hours": 0.0, "langs": per_lang}
            continue
        write_data_dir(split_dir, utts, validate=True, check_audio=True)
        summary = validate_data_dir(split_dir)
        for lang in langs:
            d = per_lang[lang]
            d["hours"] = round(d["hours"], 4)
            d["mean_dur"] = round(d["hours"] * 3600 / d["utts"], 3) if d["utts"] else 0.0
        counts[split] = {"utts": summary["num_utts"], "speakers": summary["num_speakers"],
                         "hours": round((summary["total_dur"] or 0.0) / 3600, 4),
                         "langs": per_lang}
        logger.info("%s: %d utts, %d speakers, %.2f h", split, summary["num_utts"],
                    summary["num_speakers"], counts[split]["hours"])
    for lang in langs:
        atomic_write_text(os.path.join(out_dir, "text_pool", f"{lang}.txt"),
                          "".join(s + "\n" for s in pools[lang]))
    for lang in LANGS:  # pools of languages dropped since an earlier run
        stale = os.path.join(out_dir, "text_pool", f"{lang}.txt")
        if lang not in langs and os.path.exists(stale):
            os.unlink(stale)
    by_family: dict[str, dict[str, int]] = {}  # training utterances per language and voice family
    for utt_id, spk, _, _, _ in utt_rows["train"]:
        if results[utt_id][0] not in skipped:
            fams = by_family.setdefault(spk.lang, {})
            fams[spk.family] = fams.get(spk.family, 0) + 1
    if any(skipped.values()):
        logger.warning("skipped %d empty, %d too long (> %.0f s) and %d unreadable utterances",
                       len(skipped["empty"]), len(skipped["too_long"]), max_duration,
                       len(skipped["unreadable"]))

    manifest = {
        "args": args,
        "espeak": espeak,
        **({"voice_packages": packages, "train_voice_families": by_family} if packages else {}),
        "counts": counts,
        "text": lang_stats,
        "text_pool_lines": {lang: len(pools[lang]) for lang in langs},
        "skipped": skipped,
        "lang_switches_new_audio": switches,
        "synthesis": {"new": n_new, "reused": n_reused, "seconds": round(t_synth, 1),
                      "jobs": int(jobs)},
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    logger.info("corpus ready in %s (%.1f s)", out_dir, time.time() - t0)
    return manifest

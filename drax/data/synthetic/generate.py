"""Generating the synthetic corpus: plan, synthesise, write (:func:`generate_corpus`).

:func:`generate_corpus` draws distinct sentences per language (:mod:`drax.data.synthetic.sources`),
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
  :func:`~drax.data.synthetic.normalise.dedup_key` (case and punctuation folded) and shuffled with the
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
  FLAC. Audio files are named by a hash of (spoken text, voice, pitch, speed,
  :data:`~drax.data.synthetic.speech.SYNTH_VERSION`), written to a temporary name and renamed, so
  a re-run reuses every finished file. ``manifest.json`` is deleted at the start of a
  run and written last: when it exists with the same arguments, :func:`generate_corpus` returns
  at once (pass ``force=True`` after installing other text sources).
* **Skips.** Utterances longer than ``max_duration`` seconds, with empty/silent synthesis, or
  (zh/ja) that espeak could not read (it falls back to spelling "Chinese/Japanese letter",
  visible as a language switch in its phonemes) are skipped; their ids are logged and listed in
  the manifest, so a split can end up slightly smaller than asked.
"""


from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from drax.data import voices as voices_mod
from drax.data.audio import SAMPLE_RATE
from drax.data.kaldi_dir import Utterance, validate_data_dir, write_data_dir
from drax.data.synthetic.normalise import LANGS, dedup_key
from drax.data.synthetic.sources import last_pool_stats, sentence_pool, wordfreq_sequences
from drax.data.synthetic.speakers import Speaker, all_speakers, speaker_sets
from drax.data.synthetic.speech import SYNTH_VERSION, Job, espeak_version, run_jobs, synth_key, to_spoken
from drax.fileio import atomic_write_text, remove_stale_temp_files

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")

#: Default sizes (utterances per language): en 4000 + 7 x 1000 train, 100 dev + 100 test per
#: language = 12,600 utterances, ~12.8 h of audio, ~870 MB of FLAC; measured 3.6 min to generate
#: with 2 jobs on 2 cores (text pools ~20 s of it).
DEFAULT_N_TRAIN: dict[str, int] = {"en": 4000, "de": 1000, "es": 1000, "fr": 1000, "it": 1000,
                                   "pt": 1000, "zh": 1000, "ja": 1000}
DEFAULT_N_DEV = 100
DEFAULT_N_TEST = 100


# ----------------------------------------------------------------------------------------------
# Arguments
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


def _arguments(langs: list[str], n_train: int | Mapping[str, int], n_dev: int | Mapping[str, int],
               n_test: int | Mapping[str, int], seed: int, text_pool_size: int | None,
               sources: Sequence[str] | None, random_frac: float, n_eval_speakers: int, max_duration: float,
               voices: Mapping[str, Mapping[str, float]] | None
               ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]], dict]:
    """The checked arguments of :func:`generate_corpus`: sizes per split and language, the voice
    mix, and the arguments as the manifest records them (a run with equal ones is finished)."""
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
    return sizes, mix, args


def _finished(out: Path, args: dict) -> dict | None:
    """The manifest of an earlier run with the same ``args`` whose data dirs are all there, else None."""
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return None
    old = json.loads(manifest_path.read_text(encoding="utf-8"))
    counts = old.get("counts", {})
    if old.get("args") == args and all((out / s / "wav.scp").is_file()
                                       for s in SPLITS if counts.get(s, {}).get("utts", 1)):
        return old
    return None


# ----------------------------------------------------------------------------------------------
# Plan: which sentence goes to which split, speaker and audio file
# ----------------------------------------------------------------------------------------------

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
        for seq in wordfreq_sequences(lang, 3 * n_rand, seed=seed):
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


def _hash(*parts: object) -> str:
    """SHA-1 of the tab-joined parts (hex): the plan's draws, stable across runs and sizes."""
    return hashlib.sha1("\t".join(map(str, parts)).encode("utf-8")).hexdigest()


def _pick_family(mix: Mapping[str, float], digest: str) -> str:
    """The voice family of a training sentence: ``digest`` as a uniform draw in [0, 1) against the
    cumulative fractions of ``mix``; "espeak" past them."""
    u, edge = int(digest[:12], 16) / 16**12, 0.0
    for family, frac in mix.items():
        edge += frac
        if u < edge:
            return family
    return "espeak"


class _Utt(NamedTuple):
    """A planned utterance: ``spoken`` (what the voice reads) is spoken by ``speaker`` into ``path``."""

    utt_id: str
    speaker: Speaker
    text: str
    spoken: str
    path: Path


def _plan(out: Path, langs: list[str], sizes: dict[str, dict[str, int]], seed: int,
          sources: Sequence[str] | None, random_frac: float, text_pool_size: int | None,
          n_eval_speakers: int, mix: dict[str, dict[str, float]]
          ) -> tuple[dict[str, list[_Utt]], dict[str, list[str]], dict[str, dict]]:
    """Which sentences each split gets, who speaks each and into which file (a function of the
    arguments and the installed text sources): the utterances per split, the text pool lines and
    the text statistics per language."""
    utts: dict[str, list[_Utt]] = {s: [] for s in SPLITS}
    pools: dict[str, list[str]] = {}
    lang_stats: dict[str, dict] = {}
    for lang in langs:
        lsizes = {s: sizes[s][lang] for s in SPLITS}
        pool = sentence_pool(lang, seed=seed, sources=sources)
        chosen, text_pool, st = _select(lang, pool, lsizes, seed, random_frac)
        st["sources"] = last_pool_stats.get(lang, {}).get("sources", {})
        lang_stats[lang] = st
        pools[lang] = text_pool if text_pool_size is None else text_pool[:text_pool_size]
        for split, planned in _assign_speakers(out, lang, chosen, seed, n_eval_speakers, mix.get(lang, {})).items():
            utts[split].extend(planned)
        logger.info("%s: pool %d sentences; train %d, dev %d, test %d; text pool %d lines",
                    lang, len(pool), len(chosen["train"]), len(chosen["dev"]),
                    len(chosen["test"]), len(pools[lang]))
    return utts, pools, lang_stats


def _assign_speakers(out: Path, lang: str, chosen: dict[str, list[tuple[str, str]]], seed: int,
                     n_eval_speakers: int, lang_mix: dict[str, float]) -> dict[str, list[_Utt]]:
    """The utterances of one language's chosen (text, spoken) pairs per split: the speaker is a
    hash of (seed, language, split, sentence), so it does not change when the sizes change."""
    spk_sets = speaker_sets(lang, seed, n_eval_speakers)
    family_speakers = {family: all_speakers(lang, family) for family in lang_mix}
    seen_ids: dict[str, str] = {}
    utts: dict[str, list[_Utt]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        for text, spoken in chosen[split]:
            spks = spk_sets[split]
            if split == "train" and family_speakers:
                family = _pick_family(lang_mix, _hash("family", seed, lang, text))
                spks = family_speakers.get(family, spks)
            spk = spks[int(_hash("spk", seed, lang, split, text)[:8], 16) % len(spks)]
            utt_id = f"{spk.id}-{_hash('utt', lang, text)[:12]}"
            if utt_id in seen_ids:
                raise RuntimeError(f"utterance id collision: {utt_id} "
                                   f"({seen_ids[utt_id]!r} / {text!r})")
            seen_ids[utt_id] = text
            path = out / "audio" / lang / spk.id / f"{synth_key(spoken, spk)}.flac"
            utts[split].append(_Utt(utt_id, spk, text, spoken, path))
    return utts


# ----------------------------------------------------------------------------------------------
# Synthesise
# ----------------------------------------------------------------------------------------------

def _synthesise(out: Path, utts: dict[str, list[_Utt]], max_duration: float, jobs: int, progress: bool
                ) -> tuple[dict[str, tuple[str, int, bool]], dict]:
    """Speak every planned utterance whose audio file is not there yet: the result per utterance
    (see :func:`~drax.data.synthetic.speech.run_jobs`) and the manifest's synthesis entry."""
    remove_stale_temp_files(out / "audio")  # what an interrupted run left
    max_samples = int(max_duration * SAMPLE_RATE)
    job_list = [Job(u.utt_id, u.speaker, u.spoken, u.path, max_samples) for split in SPLITS for u in utts[split]]
    t_synth = time.time()
    results = run_jobs(job_list, max(1, int(jobs)), progress)
    t_synth = time.time() - t_synth
    n_new = sum(1 for st, _, _ in results.values() if st == "ok")
    n_reused = sum(1 for st, _, _ in results.values() if st == "reused")
    logger.info("synthesis: %d new, %d reused in %.1f s", n_new, n_reused, t_synth)
    return results, {"new": n_new, "reused": n_reused, "seconds": round(t_synth, 1), "jobs": int(jobs)}


# ----------------------------------------------------------------------------------------------
# Write
# ----------------------------------------------------------------------------------------------

_SKIPS = ("empty", "too_long", "unreadable")  # the statuses of run_jobs that leave an utterance out


def _write_data_dirs(out: Path, langs: list[str], utts: dict[str, list[_Utt]],
                     results: dict[str, tuple[str, int, bool]]
                     ) -> tuple[dict[str, dict], dict[str, list[str]], dict[str, int]]:
    """A Kaldi data dir per split of the utterances that were spoken: the manifest's counts per
    split, the skipped ids per reason, and the language switches per language."""
    skipped: dict[str, list[str]] = {reason: [] for reason in _SKIPS}
    switches: dict[str, int] = {lang: 0 for lang in langs}
    counts: dict[str, dict] = {}
    for split in SPLITS:
        kept: list[Utterance] = []
        for u in utts[split]:
            status, n, switch = results[u.utt_id]
            switches[u.speaker.lang] += int(switch)
            if status in skipped:
                skipped[status].append(u.utt_id)
                logger.warning("skipped %s (%s, %.1f s): %s", u.utt_id, status, n / SAMPLE_RATE, u.text)
                continue
            kept.append(Utterance(utt_id=u.utt_id, speaker=u.speaker.id, wav=str(u.path), text=u.text,
                                  lang=u.speaker.lang, duration=n / SAMPLE_RATE))
        counts[split] = _write_split(out / split, langs, kept)
    return counts, skipped, switches


def _write_split(split_dir: Path, langs: list[str], utts: list[Utterance]) -> dict:
    """Write (and check) one split's data dir, or remove an old one when no utterance is left; the
    split's counts for the manifest."""
    per_lang: dict[str, dict] = {lang: {"utts": 0, "hours": 0.0} for lang in langs}
    for u in utts:
        per_lang[u.lang]["utts"] += 1
        per_lang[u.lang]["hours"] += u.duration / 3600
    if not utts:
        logger.warning("%s: no utterances; no data dir written", split_dir.name)
        if split_dir.is_dir():
            shutil.rmtree(split_dir)
        return {"utts": 0, "speakers": 0, "hours": 0.0, "langs": per_lang}
    write_data_dir(str(split_dir), utts, validate=True, check_audio=True)
    summary = validate_data_dir(str(split_dir))
    for lang in langs:
        d = per_lang[lang]
        d["hours"] = round(d["hours"], 4)
        d["mean_dur"] = round(d["hours"] * 3600 / d["utts"], 3) if d["utts"] else 0.0
    count = {"utts": summary["num_utts"], "speakers": summary["num_speakers"],
             "hours": round((summary["total_dur"] or 0.0) / 3600, 4), "langs": per_lang}
    logger.info("%s: %d utts, %d speakers, %.2f h", split_dir.name, summary["num_utts"],
                summary["num_speakers"], count["hours"])
    return count


def _write_text_pools(out: Path, langs: list[str], pools: dict[str, list[str]]) -> None:
    """``text_pool/<lang>.txt`` per language, one sentence a line; those of other languages removed."""
    for lang in langs:
        atomic_write_text(out / "text_pool" / f"{lang}.txt", "".join(s + "\n" for s in pools[lang]))
    for lang in LANGS:  # pools of languages dropped since an earlier run
        stale = out / "text_pool" / f"{lang}.txt"
        if lang not in langs and stale.exists():
            stale.unlink()


def _train_families(train: list[_Utt], results: dict[str, tuple[str, int, bool]]) -> dict[str, dict[str, int]]:
    """Training utterances per language and voice family (skipped ones left out)."""
    by_family: dict[str, dict[str, int]] = {}
    for u in train:
        if results[u.utt_id][0] not in _SKIPS:
            fams = by_family.setdefault(u.speaker.lang, {})
            fams[u.speaker.family] = fams.get(u.speaker.family, 0) + 1
    return by_family


# ----------------------------------------------------------------------------------------------
# The corpus
# ----------------------------------------------------------------------------------------------

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
    the text sources (names of :data:`drax.data.synthetic.sources.SOURCES`). ``random_frac``
    replaces that fraction of each language's training sentences with random frequency-weighted
    word sequences (needs PyPI ``wordfreq``). Speaker sets: see
    :func:`~drax.data.synthetic.speakers.speaker_sets`. ``voices`` ({lang: {family: fraction}},
    families of :data:`drax.data.voices.FAMILIES`) gives that fraction of a language's *training*
    sentences to a voice family (which sentence: a hash of the seed and the sentence), the rest to
    espeak-ng; dev and test stay espeak-ng with unseen speakers.

    Deterministic: the same arguments (and installed text sources) give byte-identical text files
    and audio. Idempotent: finished audio is reused; with ``manifest.json`` present for the same
    arguments the call returns at once unless ``force``.
    """
    t0 = time.time()
    langs = list(langs)
    sizes, mix, args = _arguments(langs, n_train, n_dev, n_test, seed, text_pool_size, sources, random_frac,
                                  n_eval_speakers, max_duration, voices)
    out = Path(os.path.abspath(out_dir))
    manifest_path = out / "manifest.json"
    if not force and (old := _finished(out, args)) is not None:
        logger.info("corpus in %s is complete for these arguments (manifest.json); nothing to do", out)
        return old
    espeak = espeak_version()
    families_used = sorted({family for lang_mix in mix.values() for family in lang_mix})
    packages = voices_mod.package_versions(families_used)
    out.mkdir(parents=True, exist_ok=True)
    if manifest_path.exists():
        manifest_path.unlink()  # incomplete from here on
    logger.info("generating corpus in %s: %s (%s)", out, json.dumps(args), espeak)

    utts, pools, lang_stats = _plan(out, langs, sizes, seed, sources, random_frac, text_pool_size,
                                    n_eval_speakers, mix)
    results, synthesis = _synthesise(out, utts, max_duration, jobs, progress)
    counts, skipped, switches = _write_data_dirs(out, langs, utts, results)
    _write_text_pools(out, langs, pools)
    if any(skipped.values()):
        logger.warning("skipped %d empty, %d too long (> %.0f s) and %d unreadable utterances",
                       len(skipped["empty"]), len(skipped["too_long"]), max_duration,
                       len(skipped["unreadable"]))

    manifest = {
        "args": args,
        "espeak": espeak,
        **({"voice_packages": packages, "train_voice_families": _train_families(utts["train"], results)}
           if packages else {}),
        "counts": counts,
        "text": lang_stats,
        "text_pool_lines": {lang: len(pools[lang]) for lang in langs},
        "skipped": skipped,
        "lang_switches_new_audio": switches,
        "synthesis": synthesis,
        "seconds": round(time.time() - t0, 1),
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    logger.info("corpus ready in %s (%.1f s)", out, time.time() - t0)
    return manifest

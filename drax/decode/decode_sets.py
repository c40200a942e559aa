"""Decode a dumped test set with Drax, its AR yardstick, the ESPnet baselines or Whisper's own
decoder, and score the result.

Each decode directory gets `text` (utt hypothesis, one line for every utterance that could be
decoded), `missing` (utterances of the set without a hypothesis, with the reason), `timing.json`,
and after scoring `scores.json`, `alignments.txt` and `result.md`.

A decode runs in shards (shard=(i, n)): the set's length-sorted batches are dealt round-robin, batch
k is decoded with seed + k, and `merge_shards` writes the shards' outputs as one decode: the same
files as one shard (the timing aside). The models' modules (ESPnet's task alone takes seconds to
import) load inside the decode functions, so merging and scoring start at once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import kaldiio
import numpy as np
from tqdm import tqdm

from drax.data.kaldi_dir import format_kv, read_kv_dict
from drax.decode.options import BaselineDecodingOptions, DecodingOptions
from drax.decode.scoring import markdown_table, score
from drax.fileio import atomic_write_text

logger = logging.getLogger(__name__)

def _set_info(set_dir: Path):
    feats = read_kv_dict(str(set_dir / "feats.scp"))
    langs = read_kv_dict(str(set_dir / "utt2lang"))
    shapes = {u: int(v.split(",")[0]) for u, v in read_kv_dict(str(set_dir / "feats_shape")).items()}
    return feats, langs, shapes


def _write_outputs(out_dir: Path, hyps: dict, missing: dict, timing: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    # one line per hypothesis: Whisper's units include line breaks, which an untrained model can emit
    atomic_write_text(str(out_dir / "text"), format_kv((u, " ".join(h.split())) for u, h in sorted(hyps.items())))
    atomic_write_text(str(out_dir / "missing"), format_kv(sorted(missing.items())))
    atomic_write_text(str(out_dir / "timing.json"), json.dumps(timing, indent=1) + "\n")


def load_features(entry: str, dim: int | None) -> np.ndarray:
    """The feature matrix (T, D) of a feats.scp entry; ValueError naming what is wrong with it."""
    try:
        mat = kaldiio.load_mat(entry)
    except Exception as e:  # kaldiio raises several types for a damaged ark
        raise ValueError(f"unreadable features: {e}") from None
    if mat.ndim != 2 or mat.shape[0] == 0:
        raise ValueError(f"empty features (shape {mat.shape})")
    if dim is not None and mat.shape[1] != dim:
        raise ValueError(f"features of dimension {mat.shape[1]}, the model reads {dim}: dumped with other "
                         "`features`/`whisper` settings than the model was trained on (re-run stage 3)")
    if not np.isfinite(mat).all():
        raise ValueError("NaN or infinite features")
    return mat


def feature_batches(set_dir: Path, batch_size: int, dim: int | None, missing: dict, desc: str,
                    shard: tuple[int, int] = (0, 1)):
    """(batch index, utts, feature matrices, languages) of dump/<set>, shortest first, `batch_size` at
    a time, the batches k with k % n == i of shard (i, n); an utterance whose features cannot be used
    goes to `missing` with the reason, the rest go on."""
    feats, utt2lang, shapes = _set_info(set_dir)
    order = sorted(feats, key=lambda u: (shapes[u], u))
    index, count = shard
    starts = list(range(0, len(order), batch_size))[index::count]
    label = f"{desc} {set_dir.name}" + (f" shard {index + 1}/{count}" if count > 1 else "")
    for i in tqdm(starts, desc=label, unit="batch"):
        batch, arrays = [], []
        for utt in order[i: i + batch_size]:
            try:
                arrays.append(load_features(feats[utt], dim))
                batch.append(utt)
            except ValueError as e:
                missing[utt] = str(e)
        if batch:
            yield i // batch_size, batch, arrays, [utt2lang[u] for u in batch]


def decode_set(decode_batch, set_dir: Path, out_dir: Path, batch_size: int, dim: int | None, desc: str,
               shard: tuple[int, int], info: dict) -> dict:
    """The loop every decoder here shares: the batches of dump/<set> in `shard` through
    `decode_batch(k, utts, arrays, langs) -> texts`, then `text`, `missing` and `timing.json` written
    to out_dir (`info` joins the timing after the loop, so a decoder may count into it)."""
    hyps, missing = {}, {}
    start = time.perf_counter()
    for k, batch, arrays, langs in feature_batches(set_dir, batch_size, dim, missing, desc, shard):
        hyps.update(zip(batch, decode_batch(k, batch, arrays, langs)))
    _write_outputs(out_dir, hyps, missing,
                   {"decode_seconds": time.perf_counter() - start, "utterances": len(hyps), **info})
    return hyps


def decode_drax(asr_dir: Path, set_dir: Path, units_dir: Path, out_dir: Path, options: DecodingOptions,
                whisper_dir: str | None = None, shard: tuple[int, int] = (0, 1), device: str = "cpu") -> dict:
    """Decode dump/<set> (features as dumped) with the trained Drax model.

    whisper_dir: the recipe's Whisper, the default `rescorer` of `scoring: ar`. With several
    candidates, all of them (with scores, and the pick) go to candidates.jsonl.
    """
    from drax.decode.speech2text import Speech2Text

    s2t = Speech2Text(asr_dir / "config.yaml", asr_dir / options.model_file, options, units_dir, device=device,
                      rescorer=whisper_dir)
    info = {"batches": 0, "sampler_steps": 0, "tokens": 0, "calls": 0, **asdict(options)}  # counted below
    candidates = []

    def decode_batch(k, utts, arrays, langs):
        s2t.reseed(options.seed + k)
        decodes = s2t.batch(arrays, langs)
        info["batches"] += 1
        info["sampler_steps"] += decodes[0].steps
        for utt, decoded in zip(utts, decodes):
            info["tokens"] += len(decoded.best.token_ids) + 1  # the end token counted once
            info["calls"] += decoded.calls
            if len(decoded.candidates) > 1:
                candidates.append({"utt": utt, "texts": [h.text for h in decoded.candidates],
                                   "scores": [h.scores for h in decoded.candidates],
                                   "pick": decoded.picks[decoded.scoring]})
        return [d.best.text for d in decodes]

    hyps = decode_set(decode_batch, set_dir, out_dir, options.batch_size, getattr(s2t.args, "input_size", None),
                      "drax", shard, info)
    if candidates:
        atomic_write_text(str(out_dir / "candidates.jsonl"), "".join(json.dumps(c, ensure_ascii=False) + "\n"
                                                                    for c in sorted(candidates, key=lambda c: c["utt"])))
    return hyps


def decoded_utterances(shard_dir: Path) -> list[str]:
    """The utterances a decode wrote a hypothesis for or listed as missing (`check_shard_outputs`'
    view of a shard)."""
    if not (shard_dir / "timing.json").is_file():
        raise FileNotFoundError(f"{shard_dir / 'timing.json'} does not exist")
    return [*read_kv_dict(str(shard_dir / "text")), *read_kv_dict(str(shard_dir / "missing"))]


def merge_shards(shard_dirs: list[Path], out_dir: Path) -> None:
    """The shards' decodes as one: text, missing and candidates.jsonl by utterance; timing.json with
    the shards' summed decode seconds and utterance counts."""
    hyps, missing, candidates, timings = {}, {}, [], []
    for d in shard_dirs:
        hyps.update(read_kv_dict(str(d / "text")))
        missing.update(read_kv_dict(str(d / "missing")))
        timings.append(json.loads((d / "timing.json").read_text()))
        if (d / "candidates.jsonl").exists():
            candidates += (d / "candidates.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    timing = {**timings[0], **{k: sum(t[k] for t in timings) for k in ("decode_seconds", "utterances", "batches",
                                                                        "sampler_steps", "tokens", "calls")
                               if k in timings[0]},
              "shards": len(shard_dirs)}
    _write_outputs(out_dir, hyps, missing, timing)
    if candidates:
        atomic_write_text(str(out_dir / "candidates.jsonl"),
                          "".join(sorted(candidates, key=lambda line: json.loads(line)["utt"])))


def decode_drax_ar(asr_dir: Path, set_dir: Path, units_dir: Path, out_dir: Path, options: DecodingOptions,
                   shard: tuple[int, int] = (0, 1), device: str = "cpu") -> dict:
    """Decode dump/<set> with the `model: drax_ar` yardstick: greedy with a key/value cache, prompt given.

    It reads the recipe's Drax decode config: `batch_size`, `model_file`, `output_length` (here the
    longest sequence; default: the trained model_conf.max_length) and `max_token_rate` apply; Drax's sampling keys
    (NFE, temperature, candidates, scoring, ...) have no counterpart in greedy decoding.
    """
    from drax.decode.speech2text import ARSpeech2Text

    s2t = ARSpeech2Text(asr_dir / "config.yaml", asr_dir / options.model_file, units_dir, device=device,
                        max_length=options.output_length, max_token_rate=options.max_token_rate)
    info = {"tokens": 0, "calls": 0,  # counted below
            "system": "AR yardstick", "method": "greedy (KV cache)",
            "batch_size": options.batch_size, "model_file": options.model_file,
            "output_length": options.output_length or s2t.model.max_length, "max_token_rate": options.max_token_rate}

    def decode_batch(k, utts, arrays, langs):
        ids = s2t.token_ids(arrays, langs)
        info["tokens"] += sum(len(i) + 1 for i in ids)  # and its end token; one decoder call each
        info["calls"] = info["tokens"]
        return [s2t.text(i) for i in ids]

    return decode_set(decode_batch, set_dir, out_dir, options.batch_size, getattr(s2t.args, "input_size", None),
                      "drax_ar", shard, info)


def decode_baseline(asr_dir: Path, set_dir: Path, units_dir: Path, out_dir: Path,
                    options: BaselineDecodingOptions, shard: tuple[int, int] = (0, 1)) -> dict:
    """Decode dump/<set> with a `model: espnet` baseline: `method` greedy | beam (attention decoder) | ctc."""
    from drax.decode.baselines import ESPnetBaseline

    model = ESPnetBaseline(asr_dir / "config.yaml", asr_dir / options.model_file, units_dir)

    def decode_batch(k, utts, arrays, langs):  # one utterance at a time
        enc = model.encode(arrays[0])
        return [model.text(model.decode(enc, langs[0], options.method, options.max_new_tokens, options.beam_size))]

    return decode_set(decode_batch, set_dir, out_dir, 1, getattr(model.args, "input_size", None), options.method,
                      shard, asdict(options))


def decode_whisper(whisper_dir: str, data_dir: Path, set_dir: Path, out_dir: Path, batch_size: int = 8,
                   langs: list[str] | None = None, reuse: bool = False, device: str = "cpu") -> dict:
    """Zero-shot greedy transcription with the pretrained Whisper's own decoder (30 s padded input).

    langs: decode only these languages (Whisper's 30 s windows make it slow on a CPU); scoring then
    covers exactly the decoded languages. reuse: keep an earlier result of the same model, utterances
    and languages instead of decoding again.
    """
    utts = "\n".join(sorted(read_kv_dict(str(set_dir / "feats.scp"))))
    request = {"whisper": str(whisper_dir), "requested_langs": sorted(langs or []),
               "utterances_sha1": hashlib.sha1(utts.encode()).hexdigest()}
    done = out_dir / "timing.json"
    if reuse and done.exists() and json.loads(done.read_text()).get("request") == request:
        logger.info("%s: Whisper zero-shot already decoded for these utterances, reused", out_dir)
        return read_kv_dict(str(out_dir / "text"))
    from drax.data.audio import load_audio
    from drax.pretrained.whisper import load_whisper, transcribe

    model, processor = load_whisper(whisper_dir)
    model.to(device).eval()
    wavs = read_kv_dict(str(Path(data_dir) / "wav.scp"))
    feats, utt2lang, shapes = _set_info(set_dir)
    hyps, missing = {}, {}
    start = time.perf_counter()
    for lang in sorted(set(utt2lang.values()) & set(langs or utt2lang.values())):
        utts = sorted((u for u in feats if utt2lang[u] == lang), key=lambda u: (shapes[u], u))
        for i in tqdm(range(0, len(utts), batch_size), desc=f"whisper {set_dir.name} {lang}", unit="batch"):
            batch, audio = [], []
            for utt in utts[i: i + batch_size]:
                try:
                    audio.append(load_audio(wavs[utt])[0])
                    batch.append(utt)
                except ValueError as e:
                    missing[utt] = str(e)
            if not batch:
                continue
            for utt, text in zip(batch, transcribe(model, processor, audio, language=lang)):
                hyps[utt] = text
    timing = {"decode_seconds": time.perf_counter() - start, "utterances": len(hyps), "decoder": "whisper greedy",
              "langs": sorted(set(utt2lang[u] for u in hyps)), "request": request}
    _write_outputs(out_dir, hyps, missing, timing)
    return hyps


def score_dir(decode_dir: Path, set_dir: Path) -> None:
    """Score decode_dir/text against dump/<set>/text.raw, per language."""

    langs = read_kv_dict(str(set_dir / "utt2lang"))
    timing = json.loads((decode_dir / "timing.json").read_text())
    decoded = set(timing.get("langs") or langs.values())
    refs = {u: t for u, t in read_kv_dict(str(set_dir / "text.raw")).items() if langs[u] in decoded}
    hyps = read_kv_dict(str(decode_dir / "text"))
    scores, alignments = score(refs, hyps, langs)
    atomic_write_text(str(decode_dir / "alignments.txt"), alignments)
    atomic_write_text(str(decode_dir / "scores.json"), json.dumps(
        [{**s.__dict__, "wer": s.wer, "cer": s.cer} for s in scores], indent=1) + "\n")
    atomic_write_text(str(decode_dir / "result.md"), markdown_table(str(decode_dir), scores))

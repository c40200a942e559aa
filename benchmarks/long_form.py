"""Benchmark: long-form transcription (drax/transcribe) of a recording made of real prompts.

`--prompts` English recordings of test_asterisk (a seeded draw) joined by pauses of 0.6-1.5 s make one
recording of several minutes. Measured on one machine, side by side:

- segments: where each voice activity detector (silero, energy) cut it into the transcriber's
  default windows (each stretch of speech its own), against the joins: the share of segment edges
  within 0.5 s of a prompt's edge, the largest distance, and the prompts whose start and end each
  lie within 0.5 s of a segment edge (the others listed: a prompt may hold no speech);
- WER of the long-form transcript (every window decoded together, in batches) against the prompts
  transcribed as recordings of their own (the same model, the same options), cut into windows as
  long recordings are and whole;
- seconds of the long-form transcription in batches of `--batch_size` against the same windows
  decoded one after another (batch 1), alternating, the median of `--repeats`;
- faster-whisper's batched pipeline (Whisper-base in int8, its own Silero VAD, batch `--batch_size`)
  on the same file, as the reference users know, when `--faster_whisper` names a CTranslate2
  conversion of the recipe's Whisper.

    cd egs/mini
    ../../tools/venv/bin/pip install faster-whisper==1.2.1
    ../../tools/venv/bin/ct2-transformers-converter --model downloads/whisper-base --quantization int8 \\
        --output_dir exp/whisper-base-ct2 --copy_files tokenizer.json preprocessor_config.json
    ../../tools/venv/bin/python ../../benchmarks/long_form.py exp/asr_train_drax --faster_whisper exp/whisper-base-ct2
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf
import torch

import drax
from drax.data.audio import SAMPLE_RATE, load_audio
from drax.data.kaldi_dir import read_kv_dict
from drax.decode.scoring import normalize
from drax.fileio import atomic_write_text
from drax.studies.report import md_table
from drax.transcribe.windows import VADS, WINDOW_PAD, speech_windows


def long_recording(data_dir: Path, n: int, seed: int, out: Path) -> tuple[list[str], list[tuple[float, float]]]:
    """out: n English utterances of data_dir joined by pauses; their texts and (start, end) seconds."""
    wavs, texts = read_kv_dict(str(data_dir / "wav.scp")), read_kv_dict(str(data_dir / "text"))
    durations = read_kv_dict(str(data_dir / "utt2dur"))
    rng = random.Random(seed)  # the English prompts the test set scores (at most 30 s)
    utts = rng.sample(sorted(u for u in wavs if u.startswith("en_") and float(durations[u]) <= 30), n)
    parts, spans, t = [], [], 0.0
    for utt in utts:
        audio = load_audio(wavs[utt])[0]
        pause = np.zeros(int(rng.uniform(0.6, 1.5) * SAMPLE_RATE), dtype=np.float32)
        parts += [audio, pause]
        spans.append((t, t + audio.size / SAMPLE_RATE))
        t += (audio.size + pause.size) / SAMPLE_RATE
    sf.write(out, np.concatenate(parts), SAMPLE_RATE)
    return [texts[u] for u in utts], spans


def prompts_missed(windows, spans, refs: list[str], within: float = 0.5) -> list[str]:
    """The texts of the prompts whose start or end lies farther than `within` seconds from every segment
    edge of its kind."""
    starts, ends = [a / SAMPLE_RATE for a, _ in windows], [b / SAMPLE_RATE for _, b in windows]
    return [ref for (s, e), ref in zip(spans, refs)
            if min(abs(s - a) for a in starts) > within or min(abs(e - b) for b in ends) > within]


def edge_distances(windows, spans) -> list[float]:
    """For each window edge, the seconds to the nearest prompt edge of its kind (start or end)."""
    starts, ends = [s for s, _ in spans], [e for _, e in spans]
    out = []
    for a, b in windows:
        out.append(min(abs(a / SAMPLE_RATE - s) for s in starts))
        out.append(min(abs(b / SAMPLE_RATE - e) for e in ends))
    return out


def wer(refs: list[str], hyp: str) -> float:
    return 100 * jiwer.wer(normalize(" ".join(refs), "en"), normalize(hyp, "en"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("asr_dir", type=Path, help="a recipe's experiment directory")
    parser.add_argument("--data_dir", type=Path, default=Path("data/test_asterisk"))
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pads", type=float, nargs="*", default=[0.3, 0.6], help="window_pad values (seconds) "
                        "of the per-region windows")
    parser.add_argument("--model_file", default=None, help="checkpoint in asr_dir (default: the decode options')")
    parser.add_argument("--faster_whisper", type=Path, default=None, help="a CTranslate2 Whisper directory")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("tables/long_form"))
    parser.add_argument("--recording", type=Path, default=Path("exp/long_form.flac"), help="where the joined "
                        "recording is written")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.recording
    path.parent.mkdir(parents=True, exist_ok=True)
    refs, spans = long_recording(args.data_dir, args.prompts, args.seed, path)
    audio = load_audio(str(path), max_seconds=None)[0]
    seconds = audio.size / SAMPLE_RATE
    results = {"audio_seconds": seconds, "prompts": args.prompts}

    model = drax.load(args.asr_dir, **({"model_file": args.model_file} if args.model_file else {}))
    rows = []
    for vad in VADS:  # the transcriber's windows, at most the model's longest training utterance
        windows = speech_windows(audio, vad, model.max_window, merge_seconds=0, pad_seconds=WINDOW_PAD)
        edges = [(w.speech_start, w.speech_end) for w in windows]
        dist, missed = edge_distances(edges, spans), prompts_missed(edges, spans, refs)
        results[f"windows_{vad}"] = [w._asdict() for w in windows]
        results[f"prompts_missed_{vad}"] = missed
        rows.append([vad, str(len(windows)), f"{100 * np.mean(np.array(dist) <= 0.5):.0f} %", f"{max(dist):.2f}",
                     f"{len(spans) - len(missed)} of {len(spans)}", "; ".join(f"\"{t}\"" for t in missed) or "-"])
    window_table = md_table(["detector", "segments", "edges within 0.5 s of a join", "largest distance (s)",
                             "prompts with both edges within 0.5 s", "the other prompts"], rows)
    prompts = []
    for i, (start, end) in enumerate(spans):  # each prompt a recording of its own
        prompts.append(audio[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)])
    alone = [model.transcribe(p, sample_rate=SAMPLE_RATE, language="en", batch_size=args.batch_size).text
             for p in prompts]
    whole = [model.transcribe(p, sample_rate=SAMPLE_RATE, language="en", max_window=30.0).text for p in prompts]
    ways = {"batched": (args.batch_size, None, 0.0), "one after another": (1, None, 0.0),
            "batched, each speech region its own window": (args.batch_size, 0.0, 0.0),
            **{f"batched, each speech region its own window, {pad:g} s of the pauses around it": (
                args.batch_size, 0.0, pad) for pad in args.pads},
            f"one after another, each speech region its own window, {WINDOW_PAD:g} s of the pauses around it (the "
            "transcriber's default windows)": (1, 0.0, WINDOW_PAD)}
    times, texts = {name: [] for name in ways}, {}
    for _ in range(args.repeats):
        for name, (size, merge, pad) in ways.items():
            start = time.perf_counter()
            texts[name] = model.transcribe(str(path), language="en", batch_size=size, merge_window=merge,
                                           window_pad=pad).text
            times[name].append(time.perf_counter() - start)
    rows = [[f"prompts one by one, each cut at pauses into windows of at most {model.max_window:g} s (the "
             "longest training utterance)", f"{wer(refs, ' '.join(alone)):.1f}", "-", "-"],
            ["prompts one by one, each whole (up to 30 s)", f"{wer(refs, ' '.join(whole)):.1f}", "-", "-"]]
    for name, values in times.items():
        median = statistics.median(values)
        batch = f" (batch {ways[name][0]})" if ways[name][0] > 1 else ""
        rows.append([f"Drax long-form, windows {name}{batch}", f"{wer(refs, texts[name]):.1f}", f"{median:.1f}",
                     f"{seconds / median:.1f}"])
    results["drax"] = {"wer_alone": wer(refs, " ".join(alone)), "wer_whole": wer(refs, " ".join(whole)),
                       "wer_long": {name: wer(refs, text) for name, text in texts.items()}, "seconds": times}
    if args.faster_whisper:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        pipe = BatchedInferencePipeline(WhisperModel(str(args.faster_whisper), device="cpu", compute_type="int8",
                                                     cpu_threads=args.threads))
        spent = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            segments, _ = pipe.transcribe(str(path), language="en", batch_size=args.batch_size)
            text = " ".join(s.text for s in segments)  # the generator decodes as it is read
            spent.append(time.perf_counter() - start)
        median = statistics.median(spent)
        rows.append([f"faster-whisper base int8, batched (batch {args.batch_size})", f"{wer(refs, text):.1f}",
                     f"{median:.1f}", f"{seconds / median:.1f}"])
        results["faster_whisper"] = {"wer": wer(refs, text), "seconds": spent}
    speed_table = md_table(["system", "WER (%)", "seconds (median)", "RTFx"], rows)
    cpu = platform.processor() or platform.machine()
    command = "../../tools/venv/bin/python ../../benchmarks/long_form.py " + " ".join(sys.argv[1:])
    report = (f"# Long-form transcription: {args.prompts} English utterances of {args.data_dir} ({seconds:.0f} s)\n\n"
              f"Written by\n\n```\n{command}\n```\n\non {cpu}, {args.threads} threads; the recording: `{path}`, "
              "the utterances joined by pauses of 0.6-1.5 s.\n\n"
              f"## Segments against the joins\n\nThe transcriber's default windows (each stretch of speech its own, "
              f"reading up to {WINDOW_PAD:g} s of the pauses around it); a segment is timed by its speech.\n\n"
              f"{window_table}\n\n## Transcripts and time\n\n{speed_table}\n")
    atomic_write_text(args.out / "long_form.md", report)
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=1) + "\n")
    print(report)


if __name__ == "__main__":
    main()

"""Benchmark: how natural each voice family sounds to a recogniser, and what it costs to make.

The same English dev sentences are spoken by every voice family of the synthetic corpus (espeak-ng:
the dev set's own audio, unseen espeak speakers; every voice of the families of
drax/data/voices.py at its own pace) and transcribed by Whisper-base zero-shot (greedy, its own decoder, 30 s windows).
A voice Whisper reads well is closer to the speech Whisper was trained on, i.e. to people. Also
measured, side by side in one process on one thread: seconds of audio made per second of synthesis.

    cd egs/mini && ../../tools/venv/bin/python ../../benchmarks/voice_naturalness.py \
        --whisper downloads/whisper-base --data data/dev --out tables/voices

Writes <out>/voices.md (table) and <out>/voices.png (the same numbers as bars).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from drax.data import voices
from drax.data.audio import SAMPLE_RATE, load_audio
from drax.data.kaldi_dir import read_kv_dict
from drax.data.synthetic.speakers import Speaker
from drax.data.synthetic.speech import speak
from drax.decode.scoring import score
from drax.fileio import atomic_save_figure, atomic_write_text
from drax.pretrained.whisper import load_whisper, transcribe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whisper", required=True, help="Whisper dir (the recipe's downloads/whisper-base)")
    parser.add_argument("--data", required=True, help="the synthetic corpus's dev data dir (wav.scp, text, utt2lang)")
    parser.add_argument("--utts", type=int, default=30, help="English dev sentences")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)  # synthesis speeds on one thread, as a corpus worker runs
    langs, texts, wavs = (read_kv_dict(f"{args.data}/{name}") for name in ("utt2lang", "text", "wav.scp"))
    utts = sorted(u for u in texts if langs[u] == "en")[: args.utts]
    if not utts:
        sys.exit(f"error: no English utterances in {args.data}/utt2lang")

    # espeak-ng: the dev audio itself (10 unseen speakers); its speed timed with one mid speaker
    systems = {"espeak-ng (dev speakers)": Speaker("en", "m3", 50, 160)}
    systems.update({f"{name} {voice}": Speaker("en", voice, 0, 100, name)
                    for name, fam in voices.FAMILIES.items() for voice in fam.voices})
    audio, speed = {}, {}
    for label, speaker in systems.items():
        made, seconds = [], 0.0
        speak(texts[utts[0]], speaker)  # model load outside the timing
        for u in utts:
            start = time.perf_counter()  # wall time: espeak-ng runs as a child process
            samples = speak(texts[u], speaker)[0]
            seconds += time.perf_counter() - start
            made.append(samples.astype(np.float32) / 32768.0)
        speed[label] = sum(len(a) for a in made) / SAMPLE_RATE / seconds
        audio[label] = [load_audio(wavs[u])[0] for u in utts] if speaker.family == "espeak" else made
        print(f"{label}: {len(made)} utterances, {speed[label]:.1f}x real time", file=sys.stderr)

    torch.set_num_threads(os.cpu_count() or 1)
    model, processor = load_whisper(args.whisper)
    model.eval()
    rows = []
    for label, made in audio.items():
        hyps = []
        for i in range(0, len(made), args.batch):
            hyps += transcribe(model, processor, made[i: i + args.batch], language="en")
        (result,), _ = score({u: texts[u] for u in utts}, dict(zip(utts, hyps)), {u: "en" for u in utts})
        seconds = [len(a) / SAMPLE_RATE for a in made]
        rows.append((label, result.cer, result.wer, statistics.mean(seconds), speed[label]))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Voice families: Whisper-base zero-shot on the same sentences", "",
        f"Written on {date.today()} ({os.cpu_count()} CPU cores) by `benchmarks/voice_naturalness.py --utts "
        f"{args.utts}` from `{args.data}`: {len(utts)} English dev sentences, each spoken by every family; "
        "Whisper-base greedy with its own decoder (30 s windows), the project's scorer (Whisper's English "
        "normaliser). Synthesis speed: seconds of audio per wall second on one thread, model load excluded "
        "(espeak-ng timed with one mid speaker, m3 at pitch 50 and 160 words/min).",
        "", "| voice | Whisper-base CER (%) | WER (%) | mean duration (s) | synthesis (x real time) |",
        "|---|---|---|---|---|",
    ]
    for label, cer, wer, dur, rtf in rows:
        lines.append(f"| {label} | {cer:.1f} | {wer:.1f} | {dur:.2f} | {rtf:.0f} |")
    atomic_write_text(str(out / "voices.md"), "\n".join(lines) + "\n")

    import matplotlib  # only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # only for the figure

    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.35 * len(rows)))
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
    ax.set(xlabel="Whisper-base zero-shot CER (%)", title=f"{len(utts)} English dev sentences per voice")
    ax.invert_yaxis()
    fig.tight_layout()
    atomic_save_figure(fig, out / "voices.png")
    print(out / "voices.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

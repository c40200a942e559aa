"""Benchmark: what stage 2's augmentation costs per utterance, effect by effect, side by side in one run.

Each effect of drax/data/augment.py alone (its probability 1, the others 0) and the default chain
(`AugmentConfig()`) run on the same training utterances, taking turns for `--rounds` rounds. Prints
the milliseconds per utterance of each (mean over utterances, median over rounds), stage 2's FLAC
read and write included (row "none": only those), and what the default `augment_conf` (a share
`prob` of the training set) adds to a recipe of `--train-utts` utterances.

    cd egs/mini && ../../tools/venv/bin/python ../../benchmarks/augment_cost.py --data data/train
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import time

import soundfile as sf

from drax.data.audio import SAMPLE_RATE, load_audio
from drax.data.augment import EFFECTS, AugmentConfig, augment, rng_for
from drax.data.kaldi_dir import read_data_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a Kaldi data dir (the recipe's data/train)")
    parser.add_argument("--utts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-utts", type=int, default=None, help="default: the data dir's size")
    args = parser.parse_args()
    utts = read_data_dir(args.data)
    picked = utts[:: max(1, len(utts) // args.utts)][: args.utts]
    wavs = {u.utt_id: u.wav for u in picked}
    babble = [load_audio(u.wav)[0] for u in picked[:20]]
    off = {name: 0.0 for name in EFFECTS}
    configs = {"none": dataclasses.replace(AugmentConfig(), prob=1.0, **off)}
    configs.update({name: dataclasses.replace(AugmentConfig(), prob=1.0, **{**off, name: 1.0}) for name in EFFECTS})
    configs["default chain"] = AugmentConfig()
    ms = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, conf in configs.items():
            per_utt = []
            for utt, wav in wavs.items():
                start = time.perf_counter()
                y, _ = augment(load_audio(wav)[0], conf, rng_for(utt, conf.seed), babble)
                sf.write(io.BytesIO(), y, SAMPLE_RATE, format="FLAC")  # stage 2 writes each result
                per_utt.append(time.perf_counter() - start)
            ms[name].append(1000 * statistics.mean(per_utt))
    seconds = statistics.mean(u.duration or 0.0 for u in picked)
    print(f"{len(wavs)} utterances of {args.data} (mean {seconds:.2f} s), {args.rounds} rounds, one process")
    print("| effect | ms per utterance |\n|---|---|")
    for name in configs:
        print(f"| {name} | {statistics.median(ms[name]):.1f} |")
    n = args.train_utts or len(utts)
    default = AugmentConfig()
    total = n * default.prob * statistics.median(ms["default chain"]) / 1000
    print(f"default augment_conf (prob {default.prob}) on {n} training utterances: ~{total:.0f} s in stage 2")


if __name__ == "__main__":
    main()

"""Benchmark: train on dumped frozen-encoder states vs. on log-mel with the frozen encoder in the model.

Side by side in one run, the default recipe model, same batch shapes (utterances of `--seconds`),
median of `--steps` timed training steps (forward + backward + AdamW) after 2 warm-up steps each.

    tools/venv/bin/python benchmarks/feature_kind.py --whisper egs/mini/downloads/whisper-base
"""
from __future__ import annotations

import argparse

import torch

from common import DEFAULT_CONFIG, build_model, load_config, synthetic_batch, time_steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whisper", required=True)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.6)
    parser.add_argument("--vocab", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    vocab, text, text_lengths, frames = synthetic_batch(args.batch, args.seconds, args.vocab)
    logmel = torch.randn(args.batch, frames, 80)
    states = torch.randn(args.batch, (frames + 1) // 2, 512)
    conf = load_config(DEFAULT_CONFIG)

    model = build_model(conf, "whisper_frozen", {"model": args.whisper}, 80, vocab)
    t_logmel = time_steps(model, logmel, torch.full((args.batch,), frames), text, text_lengths, args.steps, conf)
    model = build_model(conf, "precomputed", {}, 512, vocab)
    t_states = time_steps(model, states, torch.full((args.batch,), states.shape[1]), text, text_lengths, args.steps, conf)
    print(f"batch {args.batch} x {args.seconds} s, median of {args.steps} steps on {torch.get_num_threads()} threads")
    print(f"log-mel + frozen encoder in the model: {t_logmel:.3f} s/step")
    print(f"dumped encoder states:                 {t_states:.3f} s/step")
    print(f"ratio: {t_logmel / t_states:.2f}x")


if __name__ == "__main__":
    main()

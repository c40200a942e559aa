"""Benchmark: training-step time of several training configs, side by side in one run.

Each config (a recipe `train_*.yaml`) is built as stage 7 builds it, `freeze_param` and dropout
included, on dumped-state inputs of the recipe's shapes; the configs take turns for `--rounds`
rounds so that a machine slowing down or speeding up affects all alike. Prints the median step
time of each and its ratio to the first.

    git show 1aee32d:egs/mini/conf/train_drax.yaml > /tmp/train_drax_old.yaml
    tools/venv/bin/python benchmarks/train_step.py /tmp/train_drax_old.yaml egs/mini/conf/train_drax.yaml

The default's bf16 matrix products (decoder_conf.autocast) against float32:

    sed 's/autocast: bfloat16/autocast: null/' egs/mini/conf/train_drax.yaml > /tmp/train_drax_fp32.yaml
    tools/venv/bin/python benchmarks/train_step.py /tmp/train_drax_fp32.yaml egs/mini/conf/train_drax.yaml
"""
from __future__ import annotations

import argparse
import statistics

import torch

from drax.nets import precision

from common import build_model, load_config, synthetic_batch, time_steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--batch", type=int, default=None, help="default: each config's batch_size")
    parser.add_argument("--seconds", type=float, default=3.6)
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    runs = []
    for path in args.configs:
        conf = load_config(path)
        batch = args.batch or conf["batch_size"]
        vocab, text, text_lengths, frames = synthetic_batch(batch, args.seconds, args.vocab)
        states = torch.randn(batch, (frames + 1) // 2, 512)
        model = build_model(conf, "precomputed", {}, 512, vocab)
        runs.append((path, batch, model, (states, torch.full((batch,), states.shape[1]), text, text_lengths), [],
                     conf))
    for _ in range(args.rounds):
        for _, _, model, inputs, medians, conf in runs:
            medians.append(time_steps(model, *inputs, args.steps, conf))

    print(f"{args.seconds} s utterances, {args.rounds} rounds x {args.steps} steps, {torch.get_num_threads()} threads")
    print(f"native CPU bf16: {precision.native_cpu_bf16()} (without it, bfloat16 runs float32: drax/nets/precision.py)")
    first = statistics.median(runs[0][4])
    for path, batch, _, _, medians, _ in runs:
        step = statistics.median(medians)
        print(f"{step:6.3f} s/step  ({first / step:.2f}x the first)  batch {batch}  {path}")


if __name__ == "__main__":
    main()

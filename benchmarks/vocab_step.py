"""Benchmark: training-step time of a train config at several output-unit list sizes (recipe key
`units_conf.max_units`), and what the two vocabulary-sized products outside the readout cost.

A larger unit list splits fewer words into pieces (shorter transcripts, each unit one of the
pretrained decoder's own tokens), but three products grow with it: the readout, p_mid's head and
the straight-through Gumbel-softmax term `soft_delta @ embedding` (paper Sec. 3.2) that routes the
loss into p_mid. Drax computes the last two only where they matter: p_mid's head on the canvas's
positions (not all L), the straight-through term on the positions drawn from p_mid (`soft_rows`).
`--dense` adds, per size, the same step with both on every position (what they cost before), so
the saving is measured side by side. Sizes (and the dense variants) take turns for `--rounds` rounds.
`--profile N` then lists, per size, the N operators with the most own CPU time over three steps
(torch.profiler): where a larger list's time goes.

    tools/venv/bin/python benchmarks/vocab_step.py --sizes 4000:19 16000:15 --dense
    tools/venv/bin/python benchmarks/vocab_step.py --sizes 4000:19 33000:15 --rounds 1 --profile 15

SIZE:TOKENS gives the transcript length in units at that size (the mini corpus's training mean is
19.2 at 4,000 units, 15.8 at 12,000, 15.3 at 16,000: stage 5's unit lists over its text pool).
"""
from __future__ import annotations

import argparse
import statistics

import torch

from common import DEFAULT_CONFIG, build_model, load_config, synthetic_batch, time_steps


def size_arg(value: str) -> tuple[int, int]:
    size, tokens = value.split(":")
    return int(size), int(tokens)


def make_dense(model) -> None:
    """Both products on every position: p_mid's head on all L, the straight-through term on all rows."""
    decoder_forward, pmid_forward = model.decoder.forward, model.pmid.forward
    model.decoder.forward = lambda *args, soft_rows=None, **kwargs: decoder_forward(*args, **kwargs)
    model.pmid.forward = lambda enc, lens, length=None: pmid_forward(enc, lens)[:, :length]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--sizes", type=size_arg, nargs="+", default=[(4000, 19), (16000, 15)],
                        help="SIZE:TOKENS, units in the list and units per transcript")
    parser.add_argument("--dense", action="store_true", help="also time each size with the dense products")
    parser.add_argument("--seconds", type=float, default=3.6)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="list each run's N operators with the most own CPU time")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    conf = load_config(args.config)

    runs = []
    for size, tokens in args.sizes:
        for dense in (False, True) if args.dense else (False,):
            vocab, text, text_lengths, frames = synthetic_batch(conf["batch_size"], args.seconds, size, tokens)
            states = torch.randn(conf["batch_size"], (frames + 1) // 2, 512)
            model = build_model(conf, "precomputed", {}, 512, vocab)
            if dense:
                if model.pmid is None:
                    raise SystemExit(f"{args.config}: no p_mid (model_conf.path without an audio middle)")
                make_dense(model)
            label = f"{size:6d} units, {tokens} per transcript{', dense' if dense else ''}"
            inputs = (states, torch.full((len(states),), states.shape[1]), text, text_lengths)
            runs.append((label, model, inputs, []))
    for _ in range(args.rounds):
        for _, model, inputs, medians in runs:
            medians.append(time_steps(model, *inputs, args.steps, conf))

    print(f"{args.config}: batch {conf['batch_size']}, {args.seconds} s utterances, {args.rounds} rounds x "
          f"{args.steps} steps, {torch.get_num_threads()} threads")
    first = statistics.median(runs[0][3])
    for label, _, _, medians in runs:
        step = statistics.median(medians)
        print(f"{step:6.3f} s/step  ({step / first:.2f}x the first)  {label}")
    for label, model, inputs, _ in runs if args.profile else ():
        with torch.profiler.profile() as prof:
            time_steps(model, *inputs, 1, conf)  # 2 warm-up steps and 1 timed: 3 steps
        print(f"\n{label}: own CPU time over 3 steps\n"
              + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))


if __name__ == "__main__":
    main()

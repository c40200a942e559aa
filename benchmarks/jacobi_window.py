"""Benchmark: jacobi steps of a trained causal Drax re-predicting the whole canvas or a window of it.

A jacobi step of a causal decoder settles the first position that can still change and re-predicts
every position after it (decode option `jacobi_window: null`); with `jacobi_window: w` it re-predicts
only w positions from there, the rest kept, and reaches the same fixed point (greedy decoding) unless
`nfe` cuts it short (drax/flow/sampler.py). The windows take turns on the same batches of a dumped
set (shortest first, as stage 8 decodes), so a machine slowing down affects all alike. Prints, per
window, the median seconds per batch and its ratio to the whole canvas, the decoder calls per batch,
the hypotheses equal to the whole canvas's, and the CER against the set's references.

    cd egs/mini
    ../../tools/venv/bin/python ../../benchmarks/jacobi_window.py exp/asr_train_drax dump/whisper_states/dev
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from drax.data.kaldi_dir import read_kv_dict
from drax.decode.decode_sets import feature_batches
from drax.decode.options import DecodingOptions
from drax.decode.scoring import score
from drax.decode.speech2text import Speech2Text


def window(value: str) -> int | None:
    return None if value.lower() in ("none", "null") else int(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("asr_dir", type=Path, help="a trained causal Drax: config.yaml and the model file")
    parser.add_argument("set_dir", type=Path, help="a dumped set: feats.scp, utt2lang, speech_shape, text.raw")
    parser.add_argument("--model_file", default="valid.loss.best.pth")
    parser.add_argument("--units_dir", type=Path, default=Path("dump/units"), help="the recipe's output units")
    parser.add_argument("--windows", type=window, nargs="+", default=[None, 1, 2, 4], help="none: the whole canvas")
    parser.add_argument("--batches", type=int, default=15, help="every k-th batch of the set, this many")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    options = DecodingOptions(nfe=args.nfe, temperature=0.0, jump_order="jacobi")
    s2t = Speech2Text(args.asr_dir / "config.yaml", args.asr_dir / args.model_file, options, args.units_dir)
    if s2t.model.decoder.attention_block != 1:
        raise SystemExit(f"{args.asr_dir}: the decoder is not causal (decoder_conf.attention_block: 1)")
    batches = list(feature_batches(args.set_dir, args.batch_size, None, {}, "read"))
    every = max(1, len(batches) // args.batches)
    batches = batches[::every][: args.batches]
    windows = [None, *[w for w in args.windows if w is not None]]  # the whole canvas: the reference
    seconds, steps = {w: [] for w in windows}, {w: [] for w in windows}
    hyps = {w: {} for w in windows}
    for _, utts, arrays, langs in batches:
        for w in windows:
            s2t.options = dataclasses.replace(options, jacobi_window=w)
            s2t.reseed(0)
            start = time.perf_counter()
            decoded = s2t.batch(arrays, langs)
            seconds[w].append(time.perf_counter() - start)
            steps[w].append(decoded[0].steps)
            hyps[w].update((u, d.best) for u, d in zip(utts, decoded))

    refs = read_kv_dict(str(args.set_dir / "text.raw"))
    langs = read_kv_dict(str(args.set_dir / "utt2lang"))
    base = statistics.median(seconds[None])
    print(f"{args.asr_dir} ({args.model_file}) on {args.set_dir}: {len(batches)} batches of {args.batch_size}, "
          f"{len(hyps[None])} utterances, at most {args.nfe} jacobi steps, {args.threads} threads")
    for w in windows:
        median = statistics.median(seconds[w])
        same = sum(hyps[w][u].token_ids == hyps[None][u].token_ids for u in hyps[None])
        scores, _ = score({u: refs[u] for u in hyps[w]}, {u: h.text for u, h in hyps[w].items()}, langs)
        cer = statistics.mean(s.cer for s in scores)
        print(f"window {'whole canvas' if w is None else w:>12}: {median:6.3f} s/batch ({base / median:.2f}x), "
              f"{statistics.mean(steps[w]):.1f} decoder calls per batch, same hypotheses {same} of "
              f"{len(hyps[None])}, CER {cer:.1f} % (mean over languages)")


if __name__ == "__main__":
    main()

"""Benchmark: the jacobi sampler of a trained causal Drax with and without the prefix cache, side by side.

With causal self-attention (`decoder_conf.attention_block: 1`) generate's jacobi steps evaluate the
decoder only from the first position that changed (drax/nets/dit.py PrefixCache); without it every
step evaluates the whole canvas up to the furthest end token. The two take turns on the same
batches of a dumped set (shortest first, as stage 8 decodes), so a machine slowing down affects both
alike. Prints the median seconds per batch of each, their ratio, the decoder calls per batch and
how many hypotheses are the same.

    cd egs/mini
    ../../tools/venv/bin/python ../../benchmarks/jacobi_cache.py exp/asr_train_drax dump/whisper_states/test
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import drax.asr.model as drax_model
from drax.decode.decode_sets import feature_batches
from drax.decode.options import DecodingOptions
from drax.decode.speech2text import Speech2Text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("asr_dir", type=Path, help="a trained Drax: config.yaml and the model file")
    parser.add_argument("set_dir", type=Path, help="a dumped set: feats.scp, utt2lang, speech_shape")
    parser.add_argument("--model_file", default="valid.loss.best.pth")
    parser.add_argument("--units_dir", type=Path, default=Path("dump/units"), help="the recipe's output units")
    parser.add_argument("--batches", type=int, default=12, help="every k-th batch of the set, this many")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    options = DecodingOptions(nfe=args.nfe, temperature=0.0, jump_order="jacobi")
    s2t = Speech2Text(args.asr_dir / "config.yaml", args.asr_dir / args.model_file, options, args.units_dir)
    if s2t.model.decoder.attention_block != 1:
        raise SystemExit(f"{args.asr_dir}: the decoder is not causal (decoder_conf.attention_block: 1)")
    batches = [(arrays, langs) for _, _, arrays, langs in feature_batches(args.set_dir, args.batch_size, None, {},
                                                                          "read")]
    every = max(1, len(batches) // args.batches)
    batches = batches[::every][: args.batches]
    cache = drax_model.PrefixCache
    plain = lambda decoder, audio: lambda x, t: decoder(x, t, audio)  # noqa: E731  every step on the whole canvas
    seconds = {"prefix cache": [], "whole canvas": []}
    texts = {name: [] for name in seconds}
    steps = []
    for arrays, langs in batches:
        for name, posterior in (("prefix cache", cache), ("whole canvas", plain)):
            drax_model.PrefixCache = posterior
            s2t.reseed(0)
            start = time.perf_counter()
            decoded = s2t.batch(arrays, langs)
            seconds[name].append(time.perf_counter() - start)
            texts[name] += [d.best.token_ids for d in decoded]
        steps.append(decoded[0].steps)
    drax_model.PrefixCache = cache

    same = sum(a == b for a, b in zip(texts["prefix cache"], texts["whole canvas"]))
    base = statistics.median(seconds["whole canvas"])
    print(f"{args.asr_dir} on {args.set_dir}: {len(batches)} batches of {args.batch_size}, at most {args.nfe} "
          f"jacobi steps ({statistics.mean(steps):.1f} decoder calls per batch), {args.threads} threads")
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"{median:6.3f} s/batch  ({base / median:.2f}x the whole canvas)  {name}")
    print(f"same hypotheses: {same} of {len(texts['whole canvas'])}")


if __name__ == "__main__":
    main()

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

import statistics
import time

import drax.asr.model as drax_model

from common import jacobi_arguments, jacobi_setup


def main():
    args = jacobi_arguments(__doc__).parse_args()
    s2t, batches = jacobi_setup(args)
    cache = drax_model.PrefixCache
    plain = lambda decoder, audio: lambda x, t: decoder(x, t, audio)  # noqa: E731  every step on the whole canvas
    seconds = {"prefix cache": [], "whole canvas": []}
    texts = {name: [] for name in seconds}
    steps = []
    for _, arrays, langs in batches:
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

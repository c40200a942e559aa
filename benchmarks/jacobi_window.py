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

import dataclasses
import statistics
import time

from drax.data.kaldi_dir import read_kv_dict
from drax.decode.scoring import score

from common import jacobi_arguments, jacobi_setup


def window(value: str) -> int | None:
    return None if value.lower() in ("none", "null") else int(value)


def main():
    parser = jacobi_arguments(__doc__)
    parser.add_argument("--windows", type=window, nargs="+", default=[None, 1, 2, 4], help="none: the whole canvas")
    args = parser.parse_args()
    s2t, batches = jacobi_setup(args)
    options = s2t.options
    windows = [None, *[w for w in args.windows if w is not None]]  # the whole canvas: the reference
    seconds, steps = {w: [] for w in windows}, {w: [] for w in windows}
    hyps = {w: {} for w in windows}
    for utts, arrays, langs in batches:
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

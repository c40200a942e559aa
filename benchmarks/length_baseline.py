"""Benchmark: how well the output length can be told from the audio alone, without a network.

The fitted canvas (`model_conf.canvas_margin`) needs each utterance's text-token count at inference;
its LengthPredictor learns it from the encoder states. This sets the bar: a per-language tokens-per-
frame rate fitted on the training set, times the utterance's frame count, scored on the dev set as
the mean absolute error in tokens (the predictor's `loss_len` in the training log is the same measure).

    cd egs/mini && ../../tools/venv/bin/python ../../benchmarks/length_baseline.py dump/whisper_states
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from drax.data.kaldi_dir import read_kv_dict


def counts(set_dir: Path, prompt_length: int) -> dict[str, tuple[str, int, int]]:
    """utt -> (lang, encoder frames, text tokens without the prompt) from stage 6's shape files."""
    langs = read_kv_dict(str(set_dir / "utt2lang"))
    frames = {u: int(v.split(",")[0]) for u, v in read_kv_dict(str(set_dir / "speech_shape")).items()}
    tokens = {u: int(v.split(",")[0]) - prompt_length for u, v in read_kv_dict(str(set_dir / "text_shape")).items()}
    return {u: (langs[u], frames[u], tokens[u]) for u in tokens}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dump", type=Path, help="the recipe's dump/<features> folder (stage 6 done)")
    parser.add_argument("--train", default="train")
    parser.add_argument("--dev", default="dev")
    parser.add_argument("--prompt_length", type=int, default=4)
    args = parser.parse_args()
    frames, tokens = defaultdict(int), defaultdict(int)
    for lang, f, n in counts(args.dump / args.train, args.prompt_length).values():
        frames[lang] += f
        tokens[lang] += n
    rate = {lang: tokens[lang] / frames[lang] for lang in frames}
    errors = defaultdict(list)
    for lang, f, n in counts(args.dump / args.dev, args.prompt_length).values():
        errors[lang].append(abs(round(rate[lang] * f) - n))
    every = [e for errs in errors.values() for e in errs]
    for lang in sorted(errors):
        print(f"{lang}: {rate[lang] * 50:.2f} tokens/s at 50 frames/s, dev MAE {sum(errors[lang]) / len(errors[lang]):.2f}")
    print(f"all: dev MAE {sum(every) / len(every):.2f} tokens over {len(every)} utterances")


if __name__ == "__main__":
    main()

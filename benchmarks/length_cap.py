"""Benchmark: a transcript's length capped by its audio's duration, on trained Drax models.

A model that fails to write its end token on audio unlike its training data (real speech, a one-word
prompt) repeats itself to the end of the canvas. The training set bounds how many tokens a second of
audio holds: the q-quantile of (transcript tokens / encoder frames) over the training utterances. Each
hypothesis is cut after ceil(rate * frames) + 2 tokens. For a causal decoder (the default's jacobi
steps) the kept prefix is what the decode option `max_token_rate` writes (the recipe key `length_cap`
fits it at q = 0.95): one decode serves every q. Prints CER per system and quantile (none: uncut),
mean and per language.

    cd egs/mini
    ../../tools/venv/bin/python ../../benchmarks/length_cap.py dump/whisper_states/dev_asterisk \\
        default=exp/asr_train_drax:dump/whisper_states/train \\
        units16k=exp_units16k/asr_train_drax:dump_units16k/whisper_states/train
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from decode_speed import cer_summary, own_units

from drax.asr.model import transcript_cap
from drax.data.kaldi_dir import read_kv_dict
from drax.data.tokenize import fit_token_rate
from drax.decode.decode_sets import feature_batches
from drax.decode.options import load_decode_options
from drax.decode.scoring import score
from drax.decode.speech2text import Speech2Text


def system(spec: str) -> tuple[str, Path, Path]:
    """name=asr_dir:train_set_dir (the dumped training set whose shapes give the rate)."""
    name, _, rest = spec.partition("=")
    asr_dir, _, train_dir = rest.partition(":")
    return name, Path(asr_dir), Path(train_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set_dir", type=Path, help="a dumped set: feats.scp, utt2lang, speech_shape, text.raw")
    parser.add_argument("systems", type=system, nargs="+", help="name=asr_dir:train_set_dir")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.95, 0.99])
    parser.add_argument("--decode_config", type=Path, default=Path("conf/decode_drax.yaml"))
    parser.add_argument("--model_file", default="valid.loss.best.pth")
    parser.add_argument("--units_dir", type=Path, default=Path("dump/units"), help="unless transcribe.yaml names one")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    refs, langs = read_kv_dict(str(args.set_dir / "text.raw")), read_kv_dict(str(args.set_dir / "utt2lang"))
    print(f"{args.set_dir}: CER (%) with each hypothesis cut at the q-quantile of the training set's tokens per "
          "frame (drax.asr.model.transcript_cap)")
    print("| system | q | CER (%) | CER per language (%) |")
    print("|---|---|---|---|")
    for name, asr_dir, train_dir in args.systems:
        config = asr_dir / "config.yaml"
        s2t = Speech2Text(config, asr_dir / args.model_file, load_decode_options(args.decode_config, config),
                          own_units(asr_dir) or args.units_dir)
        ids, frames = {}, {}
        for _, utts, arrays, batch_langs in feature_batches(args.set_dir, s2t.options.batch_size, None, {}, name):
            s2t.reseed(0)
            for utt, array, decoded in zip(utts, arrays, s2t.batch(arrays, batch_langs)):
                ids[utt], frames[utt] = decoded.best.token_ids, array.shape[0]
        for q in [None, *args.quantiles]:
            rate = None if q is None else fit_token_rate(train_dir, q)
            hyps = {u: s2t.detokenize(s2t.converter.ids2tokens(
                t if rate is None else t[: int(transcript_cap(torch.tensor(frames[u]), rate))])) for u, t in ids.items()}
            scores, _ = score({u: refs[u] for u in hyps}, hyps, langs)
            cer, per_lang = cer_summary(scores)
            print(f"| {name} | {'none' if q is None else f'{q:g}'} | {cer:.1f} | {per_lang} |", flush=True)


if __name__ == "__main__":
    main()

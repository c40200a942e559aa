"""Benchmark: weight-space interpolation between a fine-tuned decoder and Whisper's (WiSE-FT).

WiSE-FT (arXiv 2109.01903) decodes with theta = a * theta_finetuned + (1 - a) * theta_step0: a = 1 is
the trained model, a = 0 the model at step 0. Step 0 is rebuilt from the training config
(`decoder_conf.init_from_whisper`); a parameter whose initial value does not depend on the seed
(Whisper's weights, zero- or one-initialised gates and norms) is interpolated, one drawn at random at
initialisation keeps its trained value (its step-0 draw is not recoverable). Each `a` decodes the given
dumped sets with the recipe's decode config (Drax) or greedily (the AR yardstick), transcripts capped
as stage 8 caps them (the rate in the experiment's transcribe.yaml unless `--max_token_rate`); prints the CER
per set, mean over languages and per language. Costs only decodes: a choice to make on dev sets.

    cd egs/mini
    ../../tools/venv/bin/python ../../benchmarks/wise_ft.py exp/asr_train_drax \\
        dump/whisper_states/dev_asterisk dump/whisper_states/dev --alphas 1.0 0.8 0.6
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
import yaml
from decode_speed import cer_summary, own_units

from drax.data.kaldi_dir import read_kv_dict
from drax.decode.decode_sets import feature_batches
from drax.decode.options import load_decode_options
from drax.decode.scoring import score
from drax.decode.speech2text import ARSpeech2Text, Speech2Text, load_model
from drax.transcribe import MANIFEST


def step0_state(config: Path) -> tuple[dict, set[str]]:
    """The model's parameters at step 0, and the names of those that do not depend on the seed."""
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        states.append(load_model(config, None)[0].state_dict())
    fixed = {k for k, v in states[0].items() if v.is_floating_point() and torch.equal(v, states[1][k])}
    return states[0], fixed


def mixed(trained: dict, step0: dict, fixed: set[str], alpha: float) -> dict:
    return {k: alpha * v + (1 - alpha) * step0[k] if k in fixed else v for k, v in trained.items()}


def decode_set(decoder, set_dir: Path, batch_size: int) -> dict[str, str]:
    hyps = {}
    for _, utts, arrays, langs in feature_batches(set_dir, batch_size, None, {}, "decode"):
        if isinstance(decoder, ARSpeech2Text):
            hyps.update(zip(utts, decoder.batch(arrays, langs)))
        else:
            decoder.reseed(0)
            hyps.update(zip(utts, [d.best.text for d in decoder.batch(arrays, langs)]))
    return hyps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("asr_dir", type=Path, help="a recipe's experiment directory (Drax or the AR yardstick)")
    parser.add_argument("sets", type=Path, nargs="+", help="dumped sets: feats.scp, utt2lang, text.raw")
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.8, 0.6])
    parser.add_argument("--model_file", default="valid.loss.best.pth")
    parser.add_argument("--decode_config", type=Path, default=Path("conf/decode_drax.yaml"))
    parser.add_argument("--units_dir", type=Path, default=Path("dump/units"), help="unless asr_dir's "
                        "transcribe.yaml names its own")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_token_rate", type=float, help="transcripts capped by their audio (decode option; "
                        "default: the experiment's transcribe.yaml)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = args.asr_dir / "config.yaml"
    units_dir = own_units(args.asr_dir) or args.units_dir
    if args.max_token_rate is None and (args.asr_dir / MANIFEST).is_file():
        args.max_token_rate = (yaml.safe_load((args.asr_dir / MANIFEST).read_text()).get("decode") or {}).get(
            "max_token_rate")
    if yaml.safe_load(config.read_text()).get("model") == "drax_ar":
        decoder = ARSpeech2Text(config, args.asr_dir / args.model_file, units_dir, max_token_rate=args.max_token_rate)
    else:
        options = load_decode_options(args.decode_config, config)
        if args.max_token_rate is not None:
            options = dataclasses.replace(options, max_token_rate=args.max_token_rate)
        decoder = Speech2Text(config, args.asr_dir / args.model_file, options, units_dir)
    trained = {k: v.clone() for k, v in decoder.model.state_dict().items()}
    step0, fixed = step0_state(config)
    interpolated = sum(trained[k].numel() for k in fixed) / sum(v.numel() for v in trained.values())
    print(f"{args.asr_dir} ({args.model_file}): {100 * interpolated:.1f} % of the parameters interpolated; "
          f"max_token_rate {args.max_token_rate}")
    print("| a | set | CER (%) | CER per language (%) |")
    print("|---|---|---|---|")
    for alpha in args.alphas:
        decoder.model.load_state_dict(mixed(trained, step0, fixed, alpha))
        for set_dir in args.sets:
            hyps = decode_set(decoder, set_dir, args.batch_size)
            refs, langs = read_kv_dict(str(set_dir / "text.raw")), read_kv_dict(str(set_dir / "utt2lang"))
            scores, _ = score({u: refs[u] for u in hyps}, hyps, langs)
            cer, per_lang = cer_summary(scores)
            print(f"| {alpha:g} | {set_dir.name} | {cer:.1f} | {per_lang} |", flush=True)


if __name__ == "__main__":
    main()

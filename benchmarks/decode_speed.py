"""Benchmark: decoder time, decoder calls and CER of trained systems side by side on a dumped set.

Each system is an experiment directory with decode options (Drax: any DecodingOptions keys; the AR
yardstick, `model: drax_ar`: greedy with its key/value cache). The systems take turns on the same
batches of the set (shortest first, as stage 8 decodes), so a machine slowing down affects all alike;
the encoder states are the dumped ones, so the seconds are the decoder's alone. Prints per system the
median seconds per batch and its ratio to the first system's, the tokens per decoder call (each
utterance's tokens, its end token once, over the calls that decoded it), and the CER (mean over
languages) against the set's references.

    cd egs/mini
    ../../tools/venv/bin/python ../../benchmarks/decode_speed.py dump/whisper_states/test \\
        ar=exp/asr_train_drax_ar default=exp/asr_train_drax \\
        block=exp/asr_block_study_block4:jump_order=block,threshold=0.9 --batch_size 1 --batches 100
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch
import yaml

from drax.data.kaldi_dir import read_kv_dict
from drax.decode.decode_sets import feature_batches
from drax.decode.options import load_decode_options
from drax.decode.scoring import score
from drax.decode.speech2text import ARSpeech2Text, Speech2Text
from drax.transcribe import MANIFEST


def system(spec: str) -> tuple[str, Path, dict]:
    """name=asr_dir[:key=value,key=value]: the options on top of the recipe's decode config (model_file:
    the system's own checkpoint, e.g. 3epoch.pth; units_dir: its output units, by default those its
    transcribe.yaml names, else --units_dir)."""
    name, _, rest = spec.partition("=")
    path, _, options = rest.partition(":")
    overrides = {}
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    return name, Path(path), overrides


def own_units(asr_dir: Path) -> Path | None:
    """The units dir an experiment's transcribe.yaml names (stage 7 writes it for a Drax model)."""
    manifest = asr_dir / MANIFEST
    if not manifest.is_file():
        return None
    return asr_dir / yaml.safe_load(manifest.read_text())["units_dir"]


def cer_summary(scores) -> tuple[float, str]:
    """Mean CER over the languages of `score`'s results, and the per-language figures in one line."""
    return statistics.mean(s.cer for s in scores), " · ".join(f"{s.lang} {s.cer:.1f}" for s in scores)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set_dir", type=Path, help="a dumped set: feats.scp, utt2lang, speech_shape, text.raw")
    parser.add_argument("systems", type=system, nargs="+", help="name=asr_dir[:key=value,...]")
    parser.add_argument("--decode_config", type=Path, default=Path("conf/decode_drax.yaml"))
    parser.add_argument("--model_file", default="valid.loss.best.pth", help="of every system without its own")
    parser.add_argument("--units_dir", type=Path, default=Path("dump/units"), help="the recipe's output units")
    parser.add_argument("--batches", type=int, default=20, help="every k-th batch of the set, this many")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    decoders = {}
    for name, asr_dir, overrides in args.systems:
        model = (yaml.safe_load((asr_dir / "config.yaml").read_text()) or {}).get("model")
        options = dict(overrides)
        model_file = asr_dir / options.pop("model_file", args.model_file)
        units_dir = Path(options.pop("units_dir", None) or own_units(asr_dir) or args.units_dir)
        if model == "drax_ar":
            decoders[name] = ARSpeech2Text(asr_dir / "config.yaml", model_file, units_dir)
        else:
            base = load_decode_options(args.decode_config, asr_dir / "config.yaml")
            options = dataclasses.replace(base, batch_size=args.batch_size, **options)
            decoders[name] = Speech2Text(asr_dir / "config.yaml", model_file, options, units_dir)
    batches = [(utts, arrays, langs) for _, utts, arrays, langs in
               feature_batches(args.set_dir, args.batch_size, None, {}, "read")]
    every = max(1, len(batches) // args.batches)
    batches = batches[::every][: args.batches]

    seconds = {n: [] for n in decoders}
    tokens, calls = dict.fromkeys(decoders, 0), dict.fromkeys(decoders, 0)
    hyps = {n: {} for n in decoders}
    for utts, arrays, langs in batches:
        for name, dec in decoders.items():
            start = time.perf_counter()
            if isinstance(dec, ARSpeech2Text):
                ids = dec.token_ids(arrays, langs)
                seconds[name].append(time.perf_counter() - start)
                texts = [dec.text(row) for row in ids]
                tokens[name] += sum(len(row) + 1 for row in ids)
                calls[name] += sum(len(row) + 1 for row in ids)  # one call per token, the end token's included
            else:
                dec.reseed(0)
                decoded = dec.batch(arrays, langs)
                seconds[name].append(time.perf_counter() - start)
                texts = [d.best.text for d in decoded]
                tokens[name] += sum(len(d.best.token_ids) + 1 for d in decoded)
                calls[name] += sum(d.calls for d in decoded)
            hyps[name].update(zip(utts, texts))

    refs = read_kv_dict(str(args.set_dir / "text.raw"))
    langs = read_kv_dict(str(args.set_dir / "utt2lang"))
    first = next(iter(decoders))
    base = statistics.median(seconds[first])
    print(f"{args.set_dir}: {len(batches)} batches of {args.batch_size} ({len(hyps[first])} utterances), "
          f"{args.threads} threads, {args.model_file}")
    print("| system | s / batch (median) | x the first | tokens / call | CER (%) | CER per language (%) |")
    print("|---|---|---|---|---|---|")
    for name, _, overrides in args.systems:
        median = statistics.median(seconds[name])
        scores, _ = score({u: refs[u] for u in hyps[name]}, hyps[name], langs)
        cer, per_lang = cer_summary(scores)
        print(f"| {name} {overrides or ''} | {median:.4f} | {median / base:.2f} | {tokens[name] / calls[name]:.2f} "
              f"| {cer:.1f} | {per_lang} |")


if __name__ == "__main__":
    main()

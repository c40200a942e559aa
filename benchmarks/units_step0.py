"""Benchmark: what the output-unit list costs Whisper's own decoder before any training.

The AR yardstick's model (`model: drax_ar`) is built at step 0 — its decoder is Whisper's, initialised
through `decoder_conf.init_from_whisper` — once per unit list, and decodes a dumped set greedily. A
compact list (recipe key `units_conf.max_units`) makes the decoder spell every word outside it with
listed pieces it never wrote that way in pretraining: the substitutions and deletions this costs at
step 0 show how large a list keeps what Whisper's decoder knew (issue: real speech). Sizes: a number
(the most frequent Whisper tokens of the recipe's unit texts, as stage 5 builds them), `seen` (every
token of those texts) or `full` (Whisper's whole vocabulary, `units_conf: {full_vocabulary: true}`).
Prints CER with its substitutions / deletions / insertions per language, and the list's size.

    cd egs/mini
    ../../tools/venv/bin/python ../../benchmarks/units_step0.py dump/whisper_states/dev_asterisk \\
        exp/asr_train_drax_ar/config.yaml --sizes 4000 8000 16000 seen full --langs en
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import yaml

from drax.data.kaldi_dir import read_kv_dict
from drax.data.tokenize import build_units, unit_texts
from drax.decode.decode_sets import feature_batches
from drax.decode.scoring import score
from drax.decode.speech2text import ARSpeech2Text
from drax.studies.report import fmt


def step0_decoder(config: dict, size: str, texts: list[str], langs: list[str], whisper_dir: str, out: Path):
    """An ARSpeech2Text over units of `size` built in `out`, its decoder Whisper's (no checkpoint)."""
    conf = {"full_vocabulary": True} if size == "full" else {} if size == "seen" else {"max_units": int(size)}
    build_units("whisper", conf, out, texts, langs, whisper_dir=whisper_dir)
    tokens = (out / "tokens.txt").read_text(encoding="utf-8").splitlines()
    conf_path = out / "config.yaml"
    conf_path.write_text(yaml.safe_dump({**config, "token_list": tokens, "decoder_conf": {
        **config["decoder_conf"], "init_from_whisper": whisper_dir}}), encoding="utf-8")
    return ARSpeech2Text(conf_path, None, out), len(tokens)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set_dir", type=Path, help="a dumped set: feats.scp, utt2lang, speech_shape, text.raw")
    parser.add_argument("config", type=Path, help="an AR yardstick's config.yaml (model: drax_ar)")
    parser.add_argument("--sizes", nargs="+", default=["4000", "16000", "seen", "full"])
    parser.add_argument("--langs", nargs="+", default=None, help="only these languages of the set")
    parser.add_argument("--whisper", default="downloads/whisper-base", help="the recipe's Whisper directory")
    parser.add_argument("--recipe_dir", type=Path, default=Path("."))
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    if config.get("model") != "drax_ar":
        parser.error(f"{args.config}: not an AR yardstick's config (model: {config.get('model')})")
    texts = unit_texts(args.recipe_dir / "dump/whisper_states/train", args.recipe_dir / "data")
    refs = read_kv_dict(str(args.set_dir / "text.raw"))
    utt2lang = read_kv_dict(str(args.set_dir / "utt2lang"))
    keep = set(args.langs or utt2lang.values())
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            decoder, n_tokens = step0_decoder(config, size, texts, sorted(set(utt2lang.values())),
                                              args.whisper, Path(tmp))
            hyps = {}
            for _, utts, arrays, langs in feature_batches(args.set_dir, args.batch_size, None, {}, f"units {size}"):
                chosen = [i for i, lang in enumerate(langs) if lang in keep]
                if chosen:
                    texts_out = decoder.batch([arrays[i] for i in chosen], [langs[i] for i in chosen])
                    hyps.update(zip([utts[i] for i in chosen], texts_out))
        scores, _ = score({u: refs[u] for u in hyps}, hyps, utt2lang)
        rows += [(size, n_tokens, s) for s in scores]
    print(f"{args.set_dir}: Whisper's decoder at step 0 (no checkpoint), greedy, per unit list")
    print("| units | token list | lang | utts | WER (%) | CER (%) | sub / del / ins (CER points) |")
    print("|---|---|---|---|---|---|---|")
    for size, n_tokens, s in rows:
        points = " / ".join(f"{100 * n / s.chars:.1f}" for n in (s.char_substitutions, s.char_deletions,
                                                                   s.char_insertions))
        print(f"| {size} | {n_tokens} | {s.lang} | {s.n_utts} | {fmt(s.wer)} | {fmt(s.cer)} | {points} |")


if __name__ == "__main__":
    main()

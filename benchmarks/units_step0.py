"""Benchmark: what the output-unit list costs Whisper's own decoder before any training.

The AR yardstick's model (`model: drax_ar`) is built at step 0 — its decoder is Whisper's, initialised
through `decoder_conf.init_from_whisper` — once per unit list, and decodes a dumped set greedily. A
compact list (recipe key `units_conf.max_units`) makes the decoder spell every word outside it with
listed pieces it never wrote that way in pretraining: the substitutions and deletions this costs at
step 0 show how large a list keeps what Whisper's decoder knew (issue: real speech). Sizes: a number
(the most frequent Whisper tokens of the recipe's unit texts, as stage 5 builds them), `seen` (every
token of those texts) or `full` (Whisper's whole vocabulary, `units_conf: {full_vocabulary: true}`).
`--trailing_silence` re-dumps the set's audio (`data/<set>`) with that many seconds of silence
appended before the encoder (recipe key `encoder_trailing_silence`; 0: the set as dumped), states
Whisper's decoder can end on. Prints CER with its substitutions / deletions / insertions per language,
unit list and silence, and the list's size.

    cd egs/mini
    ../../tools/venv/bin/python ../../benchmarks/units_step0.py dump/whisper_states/dev_asterisk \\
        exp/asr_train_drax_ar/config.yaml --sizes 4000 8000 16000 seen full --langs en
    ../../tools/venv/bin/python ../../benchmarks/units_step0.py dump/whisper_states/dev_asterisk \\
        exp/asr_train_drax_ar/config.yaml --sizes 4000 16000 --langs en --trailing_silence 0 0.5 1 2 3
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from drax.data.features import dump_features
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


def dumped_with_silence(set_dir: Path, data_dir: Path, whisper: str, autocast: str | None, silence: float,
                        out: Path) -> Path:
    """`set_dir` itself (silence 0), or its audio dumped again into `out` with `silence` seconds appended
    before the encoder: a dumped set's layout (feats.scp, feats_shape, utt2lang) of `set_dir`'s utterances."""
    if not silence:
        return set_dir
    dump_features(data_dir, out, whisper=whisper, autocast=autocast, trailing_silence=silence)
    kept = read_kv_dict(str(set_dir / "feats.scp"))
    dumped = read_kv_dict(str(out / "dumped.scp"))
    (out / "feats.scp").write_text("".join(f"{u} {dumped[u]}\n" for u in sorted(kept) if u in dumped))
    for name in ("utt2lang", "text.raw"):
        shutil.copy(set_dir / name, out / name)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("set_dir", type=Path, help="a dumped set: feats.scp, utt2lang, speech_shape, text.raw")
    parser.add_argument("config", type=Path, help="an AR yardstick's config.yaml (model: drax_ar)")
    parser.add_argument("--sizes", nargs="+", default=["4000", "16000", "seen", "full"])
    parser.add_argument("--langs", nargs="+", default=None, help="only these languages of the set")
    parser.add_argument("--trailing_silence", type=float, nargs="+", default=[0.0],
                        help="seconds of silence appended before the encoder (0: the set as dumped)")
    parser.add_argument("--encoder_autocast", default="bfloat16", help="as the recipe's key (the mini recipe's: "
                        "bfloat16; none: float32)")
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
    autocast = None if args.encoder_autocast == "none" else args.encoder_autocast
    with tempfile.TemporaryDirectory() as dumps:
        for silence in args.trailing_silence:
            set_dir = dumped_with_silence(args.set_dir, args.recipe_dir / "data" / args.set_dir.name, args.whisper,
                                          autocast, silence, Path(dumps) / f"silence{silence:g}")
            for size in args.sizes:
                with tempfile.TemporaryDirectory() as tmp:
                    decoder, n_tokens = step0_decoder(config, size, texts, sorted(set(utt2lang.values())),
                                                      args.whisper, Path(tmp))
                    hyps = {}
                    for _, utts, arrays, langs in feature_batches(set_dir, args.batch_size, None, {},
                                                                  f"units {size} silence {silence:g}"):
                        chosen = [i for i, lang in enumerate(langs) if lang in keep]
                        if chosen:
                            texts_out = decoder.batch([arrays[i] for i in chosen], [langs[i] for i in chosen])
                            hyps.update(zip([utts[i] for i in chosen], texts_out))
                scores, _ = score({u: refs[u] for u in hyps}, hyps, utt2lang)
                rows += [(size, silence, n_tokens, s) for s in scores]
    print(f"{args.set_dir}: Whisper's decoder at step 0 (no checkpoint), greedy, per unit list and trailing silence")
    print("| units | silence (s) | token list | lang | utts | WER (%) | CER (%) | sub / del / ins (CER points) |")
    print("|---|---|---|---|---|---|---|---|")
    for size, silence, n_tokens, s in rows:
        points = " / ".join(f"{100 * n / s.chars:.1f}" for n in (s.char_substitutions, s.char_deletions,
                                                                   s.char_insertions))
        print(f"| {size} | {silence:g} | {n_tokens} | {s.lang} | {s.n_utts} | {fmt(s.wer)} | {fmt(s.cer)} | {points} |")


if __name__ == "__main__":
    main()

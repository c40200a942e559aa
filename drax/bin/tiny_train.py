"""A tiny Drax training through ESPnet's trainer, end to end, in about a minute on a CPU.

Synthetic "audio" features spell out each transcript (every token has a random prototype vector,
repeated for a few noisy frames); a one-block ESPnet transformer encoder and a small DiT decoder
learn to read them. The run goes through the real pipeline: Kaldi ark features (kaldiio), an
ESPnet config, `python -m drax.bin.train`, checkpoint loading and Speech2Text decoding.

    python -m drax.bin.tiny_train --out exp/tiny
"""
from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

import kaldiio
import numpy as np
import yaml

from drax.asr.checkpoint import reporter_stats
from drax.bin.train import main as train_main
from drax.decode.options import DecodingOptions
from drax.decode.speech2text import Speech2Text
from drax.text.units import PROMPT_TEMPLATE, SPECIALS_HEAD, prompt_names, prompt_tokens

LETTERS = list("abcdefghij")
LANGS = ["en", "de"]
TOKENS = [*SPECIALS_HEAD, *LETTERS, *prompt_tokens(LANGS), "<sos/eos>"]
FEAT_DIM = 16
FRAMES_PER_TOKEN = 3


def make_data(out: Path, n_utts: int = 8, seed: int = 0) -> list[tuple[str, str, list[str]]]:
    """Write feats.ark/scp, text and tokens.txt under out/data; returns (utt, lang, words)."""
    rng = np.random.default_rng(seed)
    protos = {tok: rng.normal(size=FEAT_DIM).astype(np.float32) for tok in LETTERS}
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    utts, feats = [], {}
    pyrng = random.Random(seed)
    for i in range(n_utts):
        words = [pyrng.choice(LETTERS) for _ in range(pyrng.randint(3, 7))]
        lang = LANGS[i % len(LANGS)]
        utt = f"spk{i % 2}-utt{i:03d}"
        frames = [protos[w] + 0.1 * rng.normal(size=FEAT_DIM).astype(np.float32)
                  for w in words for _ in range(FRAMES_PER_TOKEN)]
        feats[utt] = np.stack(frames)
        utts.append((utt, lang, words))
    kaldiio.save_ark(str(data / "feats.ark"), feats, scp=str(data / "feats.scp"))
    with open(data / "text", "w", encoding="utf-8") as f:
        for utt, lang, words in utts:
            f.write(f"{utt} {' '.join(prompt_names(lang) + words)}\n")
    (data / "tokens.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    return utts


def config(max_epoch: int) -> dict:
    return {
        "normalize": None,
        "encoder": "transformer",
        "encoder_conf": {"output_size": 64, "attention_heads": 4, "linear_units": 128, "num_blocks": 1,
                         "input_layer": "linear", "dropout_rate": 0.0, "positional_dropout_rate": 0.0,
                         "attention_dropout_rate": 0.0},
        "decoder": "dit",
        "decoder_conf": {"hidden_size": 64, "num_blocks": 2, "num_heads": 4, "time_embed_dim": 64},
        "model": "drax",
        "model_conf": {"path": "audio_mid", "output_length": 12, "prompt_template": PROMPT_TEMPLATE,
                       "audio_dropout": 0.0, "lang_replace_prob": 0.0,
                       "pmid_conf": {"hidden_size": 64, "num_heads": 4}},
        "optim": "adam",
        "optim_conf": {"lr": 0.003},
        "batch_type": "unsorted",
        "batch_size": 8,
        "max_epoch": max_epoch,
        "num_iters_per_epoch": 100,
        "num_workers": 0,
        "seed": 0,
        "best_model_criterion": [["valid", "loss", "min"]],
        "keep_nbest_models": 1,
        "log_interval": 25,
        "num_att_plot": 0,
    }


def train_args(out: Path, conf: Path) -> list[str]:
    data = out / "data"
    pairs = [f"{data}/feats.scp,speech,kaldi_ark", f"{data}/text,text,text"]
    args = ["--config", str(conf), "--output_dir", str(out / "asr"), "--ngpu", "0",
            "--token_type", "word", "--token_list", str(data / "tokens.txt"), "--input_size", str(FEAT_DIM),
            "--train_shape_file", f"{data}/feats.scp", "--valid_shape_file", f"{data}/feats.scp",
            "--use_tensorboard", "false", "--resume", "true"]
    for p in pairs:
        args += ["--train_data_path_and_name_and_type", p, "--valid_data_path_and_name_and_type", p]
    return args


def read_losses(log_dir: Path) -> list[float]:
    """Per-epoch training loss from ESPnet's trainer state (checkpoint reporter)."""

    stats = reporter_stats(log_dir / "checkpoint.pth")
    return [stats[e]["train"]["loss"] for e in sorted(stats)]


def run(out: Path, max_epoch: int = 8, n_utts: int = 8, nfe: int = 8) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    utts = make_data(out, n_utts)
    conf = out / "train.yaml"
    conf.write_text(yaml.safe_dump(config(max_epoch)), encoding="utf-8")
    train_main(train_args(out, conf))
    losses = read_losses(out / "asr")

    s2t = Speech2Text(out / "asr" / "config.yaml", out / "asr" / "valid.loss.best.pth", DecodingOptions(nfe=nfe))
    feats = dict(kaldiio.load_scp(str(out / "data" / "feats.scp")))
    hyps = s2t.batch([feats[u] for u, _, _ in utts], [lang for _, lang, _ in utts])
    decoded = {u: h.best.text for (u, _, _), h in zip(utts, hyps)}
    refs = {u: " ".join(w) for u, _, w in utts}
    result = {
        "loss_first_epoch": losses[0], "loss_last_epoch": losses[-1],
        "exact_match": sum(decoded[u] == refs[u] for u in refs) / len(refs),
        "hyps": decoded, "refs": refs,
    }
    (out / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("exp/tiny"))
    parser.add_argument("--max_epoch", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    r = run(args.out, args.max_epoch)
    print(f"train loss: first epoch {r['loss_first_epoch']:.3f} -> last epoch {r['loss_last_epoch']:.3f}; "
          f"exact transcripts after decoding: {r['exact_match']:.0%} (details: {args.out}/result.json)")


if __name__ == "__main__":
    main()

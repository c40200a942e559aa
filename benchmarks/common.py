"""Shared pieces of the training-step benchmarks: a model built from a recipe training config, a
synthetic batch of the recipe's shapes, and the median time of a training step."""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import drax.asr.registry  # noqa: F401  (registers model: drax, decoder: dit, encoder: precomputed)
from drax.options import read_config
from drax.text.units import EOT, SPECIALS_HEAD, prompt_names, prompt_tokens

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "egs/mini/conf/train_drax.yaml"


def load_config(path: Path, length: int = 48) -> dict:
    """A recipe training config with the output length stage 6 fits (48 here). The decoder starts from
    random weights: a step costs the same whatever the initial values, and the synthetic vocabulary
    has no Whisper tokens to initialise from."""
    conf = read_config(path)
    if conf["model"] == "drax":  # the AR yardstick (model: drax_ar) has no canvas
        conf["model_conf"]["output_length"] = length
    conf["decoder_conf"]["init_from_whisper"] = None
    return conf


def build_model(conf: dict, encoder: str, encoder_conf: dict, input_size: int, vocab: list[str]):
    """ESPnet's ASRTask.build_model on `conf`, with `freeze_param` applied as ESPnet's trainer does."""
    from espnet2.tasks.asr import ASRTask

    args = argparse.Namespace(
        token_list=vocab, input_size=input_size, frontend=None, frontend_conf={}, specaug=None, specaug_conf={},
        normalize=None, normalize_conf={}, preencoder=None, preencoder_conf={}, encoder=encoder,
        encoder_conf=encoder_conf, postencoder=None, postencoder_conf={}, decoder=conf["decoder"],
        decoder_conf=conf["decoder_conf"], ctc_conf={}, model=conf["model"], model_conf=conf["model_conf"], init=None)
    model = ASRTask.build_model(args)
    for prefix in conf.get("freeze_param", []):
        for name, param in model.named_parameters():
            if name == prefix or name.startswith(prefix + "."):
                param.requires_grad = False
    return model


def synthetic_batch(batch: int, seconds: float, vocab_size: int, tokens: int = 16):
    """Random English transcripts of `tokens` units after the prompt, a vocabulary, and frame counts."""
    vocab = SPECIALS_HEAD + [f"u{i}" for i in range(vocab_size)] + prompt_tokens(["en"]) + [EOT]
    prompt = [vocab.index(t) for t in prompt_names("en")]
    text = torch.cat([torch.tensor(prompt).expand(batch, -1), torch.randint(2, vocab_size, (batch, tokens))], 1)
    return vocab, text, torch.full((batch,), text.shape[1]), int(seconds * 100)


def time_steps(model, speech, lengths, text, text_lengths, steps: int, conf: dict | None = None) -> float:
    """Median seconds of a training step after 2 warm-up steps: forward, backward, the gradient clipping
    and the optimiser of the config `conf` (`optim: adamw` with its `optim_conf`, built as ESPnet's
    trainer builds it, and `grad_clip`), or plain AdamW at lr 1e-4 without `conf`."""
    model.train()
    conf = conf or {"optim": "adamw", "optim_conf": {"lr": 1e-4}}
    if conf.get("optim", "adamw") != "adamw":
        raise ValueError(f"benchmarks time optim: adamw only (got {conf['optim']!r})")
    opt = torch.optim.AdamW(model.parameters(), **conf.get("optim_conf", {}))
    params = [p for p in model.parameters() if p.requires_grad]
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss, _, _ = model(speech, lengths, text, text_lengths)
        opt.zero_grad()
        loss.backward()
        if conf.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(params, conf["grad_clip"])
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def jacobi_arguments(description: str) -> argparse.ArgumentParser:
    """The jacobi benchmarks' shared arguments: a trained causal Drax, a dumped set, the batches."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("asr_dir", type=Path, help="a trained causal Drax: config.yaml and the model file")
    parser.add_argument("set_dir", type=Path, help="a dumped set: feats.scp, utt2lang, speech_shape (text.raw)")
    parser.add_argument("--model_file", default="valid.loss.best.pth")
    parser.add_argument("--units_dir", type=Path, default=Path("dump/units"), help="the recipe's output units")
    parser.add_argument("--batches", type=int, default=12, help="every k-th batch of the set, this many")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--nfe", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def jacobi_setup(args):
    """(Speech2Text of the causal model decoding greedily with jacobi steps, [(utts, arrays, langs)]:
    every k-th batch of the set, shortest first as stage 8 decodes)."""
    from drax.decode.decode_sets import feature_batches
    from drax.decode.options import DecodingOptions
    from drax.decode.speech2text import Speech2Text

    torch.set_num_threads(args.threads)
    options = DecodingOptions(nfe=args.nfe, temperature=0.0, jump_order="jacobi")
    s2t = Speech2Text(args.asr_dir / "config.yaml", args.asr_dir / args.model_file, options, args.units_dir)
    if s2t.model.decoder.attention_block != 1:
        raise SystemExit(f"{args.asr_dir}: the decoder is not causal (decoder_conf.attention_block: 1)")
    batches = [(utts, arrays, langs) for _, utts, arrays, langs in
               feature_batches(args.set_dir, args.batch_size, None, {}, "read")]
    every = max(1, len(batches) // args.batches)
    return s2t, batches[::every][: args.batches]

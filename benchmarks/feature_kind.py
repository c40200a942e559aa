"""Benchmark: train on dumped frozen-encoder states vs. on log-mel with the frozen encoder in the model.

Side by side in one run, same model, same batch shapes (utterances of `--seconds`), median of
`--steps` timed training steps (forward + backward + AdamW) after 2 warm-up steps each.

    tools/venv/bin/python benchmarks/feature_kind.py --whisper egs/mini/downloads/whisper-base
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml

import drax.asr.registry  # noqa: F401
from drax.text.units import PROMPT_TEMPLATE, prompt_tokens

REPO = Path(__file__).resolve().parents[1]


def build(encoder: str, encoder_conf: dict, input_size: int, vocab: list[str], length: int):
    import argparse as ap

    from espnet2.tasks.asr import ASRTask

    conf = yaml.safe_load((REPO / "egs/mini/conf/train_drax.yaml").read_text())
    conf["model_conf"]["output_length"] = length
    args = ap.Namespace(token_list=vocab, input_size=input_size, frontend=None, frontend_conf={}, specaug=None,
                        specaug_conf={}, normalize=None, normalize_conf={}, preencoder=None, preencoder_conf={},
                        encoder=encoder, encoder_conf=encoder_conf, postencoder=None, postencoder_conf={},
                        decoder="dit", decoder_conf=conf["decoder_conf"], ctc_conf={}, model="drax",
                        model_conf=conf["model_conf"], init=None)
    return ASRTask.build_model(args)


def time_steps(model, speech, lengths, text, text_lengths, steps: int) -> float:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss, _, _ = model(speech, lengths, text, text_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whisper", required=True)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.6)
    parser.add_argument("--vocab", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    vocab = ["<blank>", "<unk>"] + [f"u{i}" for i in range(args.vocab)] + prompt_tokens(["en"]) + ["<|endoftext|>"]
    prompt = [vocab.index(t.format(lang="en")) for t in PROMPT_TEMPLATE]
    text = torch.cat([torch.tensor(prompt).expand(args.batch, -1), torch.randint(2, args.vocab, (args.batch, 16))], 1)
    text_lengths = torch.full((args.batch,), text.shape[1])
    frames = int(args.seconds * 100)
    logmel = torch.randn(args.batch, frames, 80)
    states = torch.randn(args.batch, (frames + 1) // 2, 512)

    model = build("whisper_frozen", {"model": args.whisper}, 80, vocab, 48)
    t_logmel = time_steps(model, logmel, torch.full((args.batch,), frames), text, text_lengths, args.steps)
    model = build("precomputed", {}, 512, vocab, 48)
    t_states = time_steps(model, states, torch.full((args.batch,), states.shape[1]), text, text_lengths, args.steps)
    print(f"batch {args.batch} x {args.seconds} s, median of {args.steps} steps on {torch.get_num_threads()} threads")
    print(f"log-mel + frozen encoder in the model: {t_logmel:.3f} s/step")
    print(f"dumped encoder states:                 {t_states:.3f} s/step")
    print(f"ratio: {t_logmel / t_states:.2f}x")


if __name__ == "__main__":
    main()

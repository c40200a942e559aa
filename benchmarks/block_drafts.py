"""Benchmark: how often a block-parallel Drax's first guess of a block agrees with greedy decoding.

For every position s of each utterance's greedy transcript (the model decoded one token per call),
the block [s, s + n) is set to the path's noise at t = 0 after the clean greedy prefix and predicted
in one forward (DiTDecoder.forward with the block active). Position s is the AR token itself; the
agreement at s + 1 .. s + n - 1 with the greedy tokens is what a decoder that drafts a block and then
verifies it causally (accepting the longest agreeing prefix) would accept per call. Prints the
agreement per offset, the mean accepted run (tokens per call of such a decoder: 1 + the run), and how
many guesses the threshold rule would commit (probability >= threshold) and how many of those agree.

    cd egs/mini
    ../../tools/venv/bin/python ../../benchmarks/block_drafts.py exp/asr_block_study_block4 dump/whisper_states/dev \\
        --model_file 3epoch.pth
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from drax.decode.decode_sets import feature_batches
from drax.decode.options import DecodingOptions
from drax.decode.speech2text import Speech2Text, pad_batch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("asr_dir", type=Path, help="a block-parallel Drax (model_conf.active_block)")
    parser.add_argument("set_dir", type=Path, help="a dumped set")
    parser.add_argument("--model_file", default="valid.loss.best.pth")
    parser.add_argument("--units_dir", type=Path, default=Path("dump/units"))
    parser.add_argument("--utterances", type=int, default=80, help="every k-th utterance of the set, this many")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    greedy = DecodingOptions(jump_order="block", block_size=1, temperature=0.0)
    s2t = Speech2Text(args.asr_dir / "config.yaml", args.asr_dir / args.model_file, greedy, args.units_dir)
    model, n = s2t.model, s2t.model.active_block
    utts = [(arrays[0], langs[0]) for _, _, arrays, langs in feature_batches(args.set_dir, 1, None, {}, "read")]
    utts = utts[:: max(1, len(utts) // args.utterances)][: args.utterances]
    agree = torch.zeros(n)
    counts = torch.zeros(n)
    runs, sure, sure_right = [], 0, 0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for feats, lang in utts:
            enc, enc_lens = model.encode(*pad_batch([feats], "cpu"))
            prompt = torch.tensor([model.prompt_ids(lang)])
            out = model.generate_encoded(enc, enc_lens, greedy, prompt=prompt)
            seq = out.tokens[0, 0]
            end = int((seq == model.eot_id).int().argmax()) if (seq == model.eot_id).any() else seq.shape[0] - 1
            p = model.prompt_length
            starts = torch.arange(p, end + 1)
            width = min(model.output_length, end + 1 + n)
            rows = seq[:width].repeat(len(starts), 1)
            pos = torch.arange(width)[None]
            active = (pos >= starts[:, None]) & (pos < starts[:, None] + n)
            t = torch.zeros(len(starts))
            pmid = model.pmid(enc, enc_lens, width).expand(len(starts), -1, -1) if model.pmid is not None else None
            noise = model.path.sample_noise(rows.shape, t, pmid, generator)
            rows = torch.where(active, noise, rows)
            audio = model.decoder.encode_audio(enc, enc_lens).repeat_interleave(len(starts))
            probs = model.decoder(rows, t, audio, active=active).softmax(-1)
            conf, guess = probs.max(-1)
            target = seq[:width].expand(len(starts), -1)
            for i, s in enumerate(starts.tolist()):
                run, going = 0, True
                for k in range(1, n):
                    j = s + k
                    if j > end:
                        break
                    right = bool(guess[i, j] == target[i, j])
                    agree[k] += right
                    counts[k] += 1
                    going = going and right
                    run += going
                    if conf[i, j] >= args.threshold:
                        sure += 1
                        sure_right += right
                runs.append(run)
    print(f"{args.asr_dir} ({args.model_file}), block {n}, {len(utts)} utterances of {args.set_dir}, "
          f"{len(runs)} block starts")
    print("agreement with greedy at offset " + ", ".join(f"+{k}: {agree[k] / counts[k]:.2f}" for k in range(1, n)
                                                        if counts[k]))
    print(f"mean accepted run {sum(runs) / len(runs):.2f}: a draft-and-verify decoder's tokens per call "
          f"{1 + sum(runs) / len(runs):.2f}")
    print(f"guesses at p >= {args.threshold}: {sure} of {int(counts.sum())}, {sure_right} of them agree")


if __name__ == "__main__":
    main()

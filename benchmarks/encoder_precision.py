"""Benchmark: the frozen Whisper encoder of stage 3 in float32 vs. bf16 autocast (recipe key
`encoder_autocast`), side by side in one run on the recipe's own utterances.

Prints the median seconds per batch of each precision over `--rounds` alternating rounds, their
ratio, and how far the bf16 states are from the float32 ones (relative L2 error, cosine similarity
per frame), so that a user can check what bf16 costs and buys on their CPU before switching.

    tools/venv/bin/python benchmarks/encoder_precision.py --whisper egs/mini/downloads/whisper-base \
        --data egs/mini/data/train
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from drax.data.audio import load_audio
from drax.data.kaldi_dir import read_kv_dict
from drax.nets import precision
from drax.nets.whisper import FrozenWhisperEncoder, log_mel, mel_filters


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whisper", required=True)
    parser.add_argument("--data", required=True, help="a Kaldi data dir (wav.scp)")
    parser.add_argument("--utts", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4, help="stage 3's batch size")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    wavs = read_kv_dict(f"{args.data}/wav.scp")
    filters = mel_filters(80)
    mels = sorted((log_mel(torch.from_numpy(load_audio(wavs[u])[0]), filters) for u in sorted(wavs)[: args.utts]),
                  key=lambda m: -m.shape[0])
    batches = [mels[i: i + args.batch] for i in range(0, len(mels), args.batch)]
    encoders = {"float32": FrozenWhisperEncoder(80, args.whisper).eval(),
                "bfloat16": FrozenWhisperEncoder(80, args.whisper, autocast="bfloat16").eval()}
    seconds = {name: [] for name in encoders}
    states = {}
    for _ in range(args.rounds):
        for name, encoder in encoders.items():
            out = []
            start = time.perf_counter()
            for batch in batches:
                lens = torch.tensor([m.shape[0] for m in batch])
                with torch.no_grad():
                    s, olens, _ = encoder(torch.nn.utils.rnn.pad_sequence(batch, batch_first=True), lens)
                out += [s[i, : olens[i]] for i in range(len(batch))]
            seconds[name].append((time.perf_counter() - start) / len(batches))
            states[name] = out
    fp32, bf16 = (statistics.median(seconds[k]) for k in ("float32", "bfloat16"))
    print(f"{len(mels)} utterances in batches of {args.batch}, {args.rounds} rounds, {torch.get_num_threads()} threads")
    print(f"native CPU bf16: {precision.native_cpu_bf16()} (without it, bfloat16 runs float32: drax/nets/precision.py)")
    print(f"float32  {fp32:.3f} s/batch\nbfloat16 {bf16:.3f} s/batch  ({fp32 / bf16:.2f}x faster)")
    rel = [float((b - a).norm() / a.norm()) for a, b in zip(states["float32"], states["bfloat16"])]
    cos = [float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())
           for a, b in zip(states["float32"], states["bfloat16"])]
    print(f"bf16 states: relative L2 error median {statistics.median(rel):.4f} (max {max(rel):.4f}), "
          f"cosine per frame median {statistics.median(cos):.5f} (min {min(cos):.5f})")


if __name__ == "__main__":
    main()

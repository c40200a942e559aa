"""Benchmark: what a decoder call costs per position it computes, on this machine's BLAS.

A batch-1 decoder call computes one position (AR greedy with a key/value cache) or several (a block
of the block decoder and the positions committed since the last call, a jacobi window). The call's
matrix products then have that many rows. This prints the median time of the default decoder's shapes
(Whisper-base: d = 512, the MLP's 2,048, the adaLN modulation's 9 x 512 from the 256-wide time
embedding) at 1, 2, 4, 8 and 16 rows, and each time over the 1-row time: where more rows cost
little more, a call that decodes several tokens is nearly free; where a second row costs several
times the first (a BLAS taking its matrix-matrix path), a parallel decoder must commit that many
more tokens per call to break even with AR greedy at batch 1.

Products alone keep their weights in the CPU's caches; a whole decoder call streams every block's
weights from memory. With `--model`, it also times the trained decoder's own call (`DiTDecoder.step`,
batch 1) over n new positions after a cached prefix of `--prefix` positions, on the dumped states of
one utterance: what a draft-and-verify decoder pays to check n - 1 drafted tokens.

    tools/venv/bin/python benchmarks/decoder_rows.py --threads 2
    cd egs/mini && ../../tools/venv/bin/python ../../benchmarks/decoder_rows.py --threads 2 \\
        --model exp/asr_train_drax --states dump/whisper_states/dev
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

SHAPES = {"attention (512 x 512)": (512, 512), "MLP in (512 x 2,048)": (512, 2048),
          "MLP out (2,048 x 512)": (2048, 512), "adaLN modulation (256 x 4,608)": (256, 4608)}
ROWS = (1, 2, 4, 8, 16)


def median_ms(layer: torch.nn.Linear, x: torch.Tensor, repeats: int) -> float:
    for _ in range(20):
        layer(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer(x)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def decoder_call_ms(asr_dir: Path, states_dir: Path, prefix: int, repeats: int) -> list[float]:
    """Median ms of the trained decoder's batch-1 call over n = ROWS new positions after `prefix` cached ones."""
    import kaldiio

    from drax.data.kaldi_dir import read_kv_dict
    from drax.decode.speech2text import load_model

    model, _ = load_model(asr_dir / "config.yaml", asr_dir / "valid.loss.best.pth")
    decoder = model.decoder
    entry = next(iter(read_kv_dict(str(states_dir / "feats.scp")).values()))
    enc = torch.from_numpy(kaldiio.load_mat(entry).copy())[None]
    audio = decoder.encode_audio(enc, torch.tensor([enc.shape[1]]))
    tokens = torch.randint(len(model.token_list) // 2, len(model.token_list) - 100, (1, prefix + max(ROWS)))
    t = torch.ones(1)
    _, cache = decoder.step(tokens[:, :prefix], t, audio)
    out = []
    for rows in ROWS:
        new = tokens[:, prefix: prefix + rows]
        for _ in range(10):
            decoder.step(new, t, audio, cache)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            decoder.step(new, t, audio, cache)
            times.append(time.perf_counter() - start)
        out.append(1e3 * statistics.median(times))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--model", type=Path, help="an experiment dir of a Drax or AR-yardstick model")
    parser.add_argument("--states", type=Path, help="a dumped set whose first utterance's states the calls read")
    parser.add_argument("--prefix", type=int, default=20, help="cached positions before the new ones")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, BLAS: "
          f"{'MKL' if torch.backends.mkl.is_available() else 'other'}; median ms per product "
          "(and x the 1-row time)")
    print("| product | " + " | ".join(f"{r} row{'s' if r > 1 else ''}" for r in ROWS) + " |")
    print("|---|" + "---|" * len(ROWS))
    with torch.no_grad():
        for name, (d_in, d_out) in SHAPES.items():
            layer = torch.nn.Linear(d_in, d_out)
            ms = [median_ms(layer, torch.randn(1, rows, d_in), args.repeats) for rows in ROWS]
            print(f"| {name} | " + " | ".join(f"{m:.3f} ({m / ms[0]:.1f}x)" for m in ms) + " |")
        if args.model:
            ms = decoder_call_ms(args.model, args.states, args.prefix, max(20, args.repeats // 10))
            print(f"| the decoder's call ({args.model}, {args.prefix} cached positions) | "
                  + " | ".join(f"{m:.3f} ({m / ms[0]:.1f}x)" for m in ms) + " |")


if __name__ == "__main__":
    main()

"""Benchmark: what a decoder call costs per position it computes, on this machine's BLAS.

A batch-1 decoder call computes one position (AR greedy with a key/value cache) or several (a block
of the block decoder and the positions committed since the last call, a jacobi window). The call's
matrix products then have that many rows. This prints the median time of the default decoder's shapes
(Whisper-base: d = 512, the MLP's 2,048, the adaLN modulation's 9 x 512 from the 256-wide time
embedding) at 1, 2, 4, 8 and 16 rows, and each time over the 1-row time: where more rows cost
little more, a call that decodes several tokens is nearly free; where a second row costs several
times the first (a BLAS taking its matrix-matrix path), a parallel decoder must commit that many
more tokens per call to break even with AR greedy at batch 1.

    tools/venv/bin/python benchmarks/decoder_rows.py --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=300)
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


if __name__ == "__main__":
    main()

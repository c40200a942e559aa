"""What every study's report shares: number formatting, markdown tables, the seeded per-language
subset it decodes, and the timer it measures with (figures: drax.fileio.atomic_save_figure)."""
from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping


def fmt(value: float | None) -> str:
    """A table cell: one decimal, "-" for a missing value."""
    return "-" if value is None else f"{value:.1f}"


def md_table(header: list[str], rows: Iterable[list]) -> str:
    """A markdown table; numbers go through `fmt`, a "|" inside a text cell is escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cell = lambda c: c.replace("|", "\\|") if isinstance(c, str) else fmt(c)  # noqa: E731
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def per_language_subset(utts: Iterable[str], langs: Mapping[str, str], per_lang: int, seed: int) -> list[str]:
    """Up to `per_lang` utterances of each language, drawn with `seed`; languages in sorted order,
    each language's draw sorted (the same subset for every system and run)."""
    utts = sorted(utts)
    rng = random.Random(seed)
    subset = []
    for lang in sorted({langs[u] for u in utts}):
        members = [u for u in utts if langs[u] == lang]
        subset += sorted(rng.sample(members, min(per_lang, len(members))))
    return subset


class Timer:
    """`with Timer() as t: ...` then `t.seconds`: the block's wall-clock time."""

    seconds = 0.0

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start

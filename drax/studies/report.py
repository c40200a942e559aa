"""What every study's report shares: number formatting, markdown tables, figures, the seeded
per-language subset it decodes, and the timer it measures with."""
from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from drax.data.kaldi_dir import read_kv_dict
from drax.fileio import atomic_save_figure, atomic_write_text


def fmt(value: float | None) -> str:
    """A table cell: one decimal, "-" for a missing value."""
    return "-" if value is None else f"{value:.1f}"


def md_table(header: list[str], rows: Iterable[list]) -> str:
    """A markdown table; numbers go through `fmt`, a "|" inside a text cell is escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cell = lambda c: c.replace("|", "\\|") if isinstance(c, str) else fmt(c)  # noqa: E731
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def figure(width: float = 6.5, height: float = 4.2, ncols: int = 1):
    """(fig, axes) of a new matplotlib figure, drawn off-screen."""
    import matplotlib  # slow to import; only for figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # slow to import; only for figures

    return plt.subplots(1, ncols, figsize=(width, height))


def save_figure(fig, path: Path) -> None:
    """Lay out, write (temp file, then rename) and close a figure."""
    fig.tight_layout()
    atomic_save_figure(fig, path)


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


class SetReport:
    """What the decoding tables (stage 11) and the comparison (stage 13) share: a dumped set's features,
    references and languages, the seeded per-language subset they decode, and the markdown sections of
    the report, each also written to out_dir/<name>.md as it is made."""

    def __init__(self, set_dir: Path, out_dir: Path, utts_per_lang: int, seed: int):
        self.feats = read_kv_dict(str(set_dir / "feats.scp"))
        self.refs = read_kv_dict(str(set_dir / "text.raw"))
        self.langs = read_kv_dict(str(set_dir / "utt2lang"))
        self.subset = per_language_subset([u for u in self.feats if u in self.refs], self.langs, utts_per_lang, seed)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.sections: list[str] = []

    def add(self, name: str, title: str, note: str, body: str) -> None:
        text = f"## {title}\n\n{note}\n\n{body}" if note else f"## {title}\n\n{body}"
        atomic_write_text(str(self.out_dir / f"{name}.md"), text)
        self.sections.append(text)

"""RESULTS.md: one table per test set (systems x languages), the data summary and stage times."""
from __future__ import annotations

import json
import platform
from datetime import date
from pathlib import Path

from drax.data.kaldi_dir import atomic_write_text, read_kv_dict


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    metric = row["wer"] if row["wer"] is not None else row["cer"]
    return "-" if metric is None else f"{metric:.1f}"


def _cer(row: dict | None) -> str:
    return "-" if row is None or row["cer"] is None else f"{row['cer']:.1f}"


def write_results(r, path: Path) -> None:
    lines = ["# RESULTS", "",
             f"Recipe run on {date.today()} ({platform.machine()}, {__import__('os').cpu_count()} CPU cores), "
             f"train config `{r.c.train_config}`, decode config `{r.c.decode_config}`.", "",
             "WER (%) for space-delimited languages (Whisper normalisers), CER (%) for zh/ja; "
             "the CER row gives CER for every language.", ""]
    for name in r.c.test_sets:
        systems = [(f"Drax ({Path(r.c.decode_config).stem})", r.decode_dir(name))]
        if r.c.whisper_baseline:
            systems.append((f"Whisper {Path(r.c.whisper).name} zero-shot (greedy)", r.exp / "whisper_zero_shot" / name))
        rows = {}
        for label, d in systems:
            if (d / "scores.json").exists():
                rows[label] = {row["lang"]: row for row in json.loads((d / "scores.json").read_text())}
        langs = sorted({lang for per in rows.values() for lang in per})
        n_utts = {lang: next(per[lang]["n_utts"] for per in rows.values() if lang in per) for lang in langs}
        lines += [f"## {name}", "", "| system | metric | " + " | ".join(langs) + " |",
                  "|---|---|" + "---|" * len(langs),
                  "| utterances | | " + " | ".join(str(n_utts[lang]) for lang in langs) + " |"]
        for label, per in rows.items():
            lines.append(f"| {label} | WER/CER | " + " | ".join(_cell(per.get(lang)) for lang in langs) + " |")
            lines.append(f"| {label} | CER | " + " | ".join(_cer(per.get(lang)) for lang in langs) + " |")
        timing = [(label, json.loads((d / "timing.json").read_text())) for label, d in systems
                  if (d / "timing.json").exists()]
        for label, t in timing:
            lines.append(f"\n{label}: {t['utterances']} utterances decoded in {t['decode_seconds']:.1f} s.")
        filtered = r.dump / name / "filtered"
        if filtered.exists() and filtered.read_text().strip():
            lines.append(f"\n{len(read_kv_dict(str(filtered)))} utterance(s) not scored (listed in `{filtered}`).")
        lines.append("")
    times_file = r.exp / "stage_times.json"
    if times_file.exists():
        times = json.loads(times_file.read_text())
        lines += ["## Stage times (seconds, last run of each stage)", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in times.items()]
        lines += [f"| total | {sum(times.values()):.1f} |", ""]
    atomic_write_text(str(path), "\n".join(lines) + "\n")

"""RESULTS.md: with several test sets first one table of all of them (a row per set and language);
per test set, one table of every experiment of the recipe (and Whisper zero-shot) by language and,
once stage 13 has run, its Tables 1 and 3 (baselines side by side, speculative decoding); then the
stage times of the data stages and of each experiment."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import date
from pathlib import Path

import espnet
import torch

from drax.data.kaldi_dir import read_kv_dict
from drax.fileio import atomic_write_text
from drax.studies.report import fmt


def _systems(r, name: str) -> list[tuple[str, Path]]:
    """(label, decode dir) of every decoded experiment for test set `name`."""
    systems = []
    for decode in sorted(r.exp.glob(f"asr_*/decode_*/{name}")):
        exp_tag = decode.parents[1].name[len("asr_"):]
        if re.search(r"\.prev\d*$", exp_tag):  # a run set aside when its inputs changed (.prev, .prev1, ...)
            continue
        timing = json.loads((decode / "timing.json").read_text()) if (decode / "timing.json").exists() else {}
        # the `model: espnet` baselines record their method; the AR yardstick its system and method
        method = timing.get("method")
        kind = f"{timing.get('system', 'ESPnet')} {method}" if method else "Drax"
        systems.append((f"{kind} {exp_tag} ({decode.parent.name})", decode))
    zero_shot = r.exp / "whisper_zero_shot" / name
    if zero_shot.exists():
        systems.append((f"Whisper {Path(r.c.whisper).name} zero-shot (greedy)", zero_shot))
    return [(label, d) for label, d in systems if (d / "scores.json").exists()]


def _table(systems) -> list[str]:
    rows = {label: {row["lang"]: row for row in json.loads((d / "scores.json").read_text())} for label, d in systems}
    langs = sorted({lang for per in rows.values() for lang in per})
    n_utts = {lang: max(per[lang]["n_utts"] for per in rows.values() if lang in per) for lang in langs}
    lines = ["| system | metric | " + " | ".join(langs) + " |", "|---|---|" + "---|" * len(langs),
             "| utterances | | " + " | ".join(str(n_utts[lang]) for lang in langs) + " |"]
    for label, per in rows.items():
        cells = [per.get(lang) for lang in langs]
        main = [None if c is None else c["wer"] if c["wer"] is not None else c["cer"] for c in cells]
        lines.append(f"| {label} | WER/CER | " + " | ".join(fmt(v) for v in main) + " |")
        lines.append(f"| {label} | CER | " + " | ".join(fmt(None if c is None else c["cer"]) for c in cells) + " |")
    return lines


def _summary(r) -> list[str]:
    """One table over all test sets: a row per (set, language), a column per system (WER/CER)."""
    per_set = {name: {label: {row["lang"]: row for row in json.loads((d / "scores.json").read_text())}
                      for label, d in _systems(r, name)} for name in r.c.test_sets}
    labels = list(dict.fromkeys(label for systems in per_set.values() for label in systems))
    lines = ["| test set | lang | utterances | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
    for name, systems in per_set.items():
        for lang in sorted({lang for rows in systems.values() for lang in rows}):
            cells = [systems.get(label, {}).get(lang) for label in labels]
            n_utts = max(c["n_utts"] for c in cells if c)
            main = [None if c is None else c["wer"] if c["wer"] is not None else c["cer"] for c in cells]
            lines.append(f"| {name} | {lang} | {n_utts} | " + " | ".join(fmt(v) for v in main) + " |")
    return lines


def _comparison(r, name: str) -> list[str]:
    """Stage 13's Tables 1 and 3 for one test set, headings one level down; nothing before it has run."""
    compare_dir, lines = r.exp / "compare" / name, []
    for table_name in ("table1", "table3"):
        table = compare_dir / f"{table_name}.md"
        if table.exists():
            lines += [("#" + line) if line.startswith("## ") else line for line in table.read_text().splitlines()]
            lines.append("")
    if lines:
        full = (compare_dir / "compare.md").relative_to(r.root)
        lines += [f"- stage 13's full output (speed study, plots, its command and config): `{full}`", ""]
    return lines


def environment(root: Path) -> list[str]:
    """ESPnet's RESULTS header: when, where and with what the results were made."""

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True)
    revision = commit.stdout.strip() + (" (with local changes)" if dirty.stdout.strip() else "") or "unknown"
    return ["## Environments", "",
            f"- date: `{date.today()}`",
            f"- python: `{platform.python_version()}`, machine: `{platform.machine()}`, {os.cpu_count()} CPU cores",
            f"- torch: `{torch.__version__}`, espnet: `{espnet.__version__}`",
            f"- git commit: `{revision}`", ""]


def number(stage_key: str) -> int:
    """The stage number of a stage_times.json key such as "8_decode.train_drax.decode_drax"."""
    return int(stage_key.split("_", 1)[0])


def write_results(r, path: Path, stages: list) -> None:
    """RESULTS.md of the recipe's experiments (stage 10 writes exp/RESULTS.md; a recipe's committed
    RESULTS.md is a reference run copied from there); `stages`: the recipe's (drax.recipe.stages.STAGES),
    for its stage times."""
    lines = ["# RESULTS", "", *environment(r.root),
             "WER/CER: WER (%) for space-delimited languages (Whisper normalisers), CER (%) for zh/ja. "
             "CER: character error rate (%) for every language.", ""]
    if len(r.c.test_sets) > 1:
        lines += ["## All test sets (WER/CER)", ""] + _summary(r) + [""]
    for name in r.c.test_sets:
        systems = _systems(r, name)
        lines += [f"## {name}", ""] + _table(systems) + [""]
        for label, d in systems:
            t = json.loads((d / "timing.json").read_text())
            steps = f", {t['sampler_steps'] / t['batches']:.1f} decoder calls per batch" if t.get("batches") else ""
            if t.get("calls"):
                steps += f", {t['tokens'] / t['calls']:.2f} tokens per call"
            lines.append(f"- {label}: {t['utterances']} utterances decoded in {t['decode_seconds']:.1f} s{steps}")
        filtered = r.dump / name / "filtered"
        if filtered.exists() and filtered.read_text().strip():
            lines.append(f"- {len(read_kv_dict(str(filtered)))} utterance(s) not scored (listed in `{filtered}`)")
        lines.append("")
        lines += _comparison(r, name)
    decode_stages = {s.number for s in stages if s.scope == "decode"}
    last_default = max(s.number for s in stages if not s.on_request)
    times_file = r.exp / "stage_times.json"
    if times_file.exists():
        times = json.loads(times_file.read_text())
        shared = {k: v for k, v in times.items() if "." not in k}
        # the decodings this file reports, "<experiment>.<decode dir>" (a study's variants only train)
        runs = sorted({k.split(".", 1)[1] for k in times if k.startswith("8_decode.")})
        lines += ["## Stage times (seconds, last run of each stage)", "",
                  "| stage | " + " | ".join(f"{r.replace('.', ' (', 1)})" if "." in r else r for r in runs or ["seconds"])
                  + " |", "|---|" + "---|" * max(1, len(runs))]
        for k, v in shared.items():
            lines.append(f"| {k} | " + " | ".join([str(v)] * max(1, len(runs))) + " |")

        def of(stage: str, run: str):  # stages 8-10 belong to the decoding, the others to the experiment
            return times.get(f"{stage}.{run if number(stage) in decode_stages else run.split('.')[0]}")

        stage_names = sorted({k.split(".", 1)[0] for k in times if "." in k}, key=number)
        for stage in stage_names:
            lines.append(f"| {stage} | " + " | ".join(str(of(stage, run) or "-") for run in runs) + " |")
        # the recipe's own run: the stages that run unless others are asked for
        own = [stage for stage in stage_names if number(stage) <= last_default]
        totals = [sum(shared.values()) + sum(of(stage, run) or 0.0 for stage in own) for run in runs]
        total = " | ".join(f"{v:.1f}" for v in totals or [sum(shared.values())])
        lines += [f"| total, stages 1-{last_default} | {total} |",
                  ""]
    atomic_write_text(str(path), "\n".join(lines) + "\n")

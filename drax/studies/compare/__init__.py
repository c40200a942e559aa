"""Baselines side by side (paper Table 1), speculative decoding (Table 3) and the CPU speed study
(recipe stage 13, `conf/compare.yaml`), for one test set, from the recipe's trained experiments.

    table1.md     error per language on a per-language subset of the test set, and RTFx (batch 1,
                  from the waveform) on the runtime set, for CTC greedy, AR greedy, AR beam, Whisper
                  zero-shot, Drax 4/1, 8/1, 16/1, Drax MBR 8/16 and Drax AR-rescored 8/16
    table3.md     speculative decoding: mean accepted tokens per verification step and RTFx, per target
                  (the AR baseline, Whisper) and drafter (Drax, NFE 2; a small AR model drafting 5 / 10),
                  with the check that every output equals the target's greedy output
    speed.md      decoder-only and end-to-end RTFx per duration bin, Drax 2/4/8/16 vs AR greedy; the
                  output length where Drax overtakes AR greedy (sweep over output lengths on a 30 s
                  utterance's encoder states); throughput (utterances/s) of Drax and AR greedy at
                  batch 1 and 16
    speed.png     decoder seconds against output length (the sweep), crossover points
    fig2a.png     end-to-end RTFx against output length on the runtime set, every system (Figure 2a)

Runtime protocol (App. C.2/C.4): utterances drawn equally from 5 s bins up to 30 s; the test sets
hold single sentences, so longer utterances are made by joining same-language test utterances
(audio and text). Each is decoded alone (batch 1, fp32, no compilation) from the waveform. The
models were trained on single sentences, so on joined audio their own stopping would not reflect
the length they must produce: for timing, AR decoders produce exactly the reference number of
tokens (end token suppressed before), Drax uses an output length fitted to the duration (the
training data's 95th-percentile tokens per second, rounded up to 8), CTC is one pass. Whisper
zero-shot uses its standard 30 s padded input.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict
from datetime import date
from pathlib import Path

import torch

from drax.fileio import atomic_write_text
from drax.studies.compare.speed import sweep, throughput, write_speed
from drax.studies.compare.systems import CompareConfig, Systems, joined_runtime_set
from drax.studies.compare.table1 import accuracy, plot_fig2a, write_table1
from drax.studies.compare.table3 import speculative_table, write_table3
from drax.studies.compare.timing import runtime

__all__ = ["Compare", "CompareConfig", "joined_runtime_set"]


class Compare(Systems):
    """Stage 13 on one test set: `run` measures every table and writes compare.md."""

    def run(self, command: str = "") -> Path:
        c = self.c
        errors = accuracy(self)
        bins = joined_runtime_set(self.data_dir, self.set_dir, self.units, c.runtime_per_bin, c.seed)
        table, points = runtime(self, bins)
        lengths, sweep_duration = sweep(self, bins)
        per_second = throughput(self)
        spec = speculative_table(self)
        write_table1(self, errors, table, bins)
        write_speed(self, table, lengths, sweep_duration, per_second, bins)
        write_table3(self, spec)
        plot_fig2a(self, points)
        head = (f"# Baselines, speculative decoding and speed\n\nWritten on {date.today()} ({platform.machine()}, "
                f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}) by `{command}`. Accuracy subset: "
                f"{c.utts_per_lang} utterances per language of `{self.set_dir.name}`.\n\nConfig: `{json.dumps(asdict(c))}`\n")
        path = self.out_dir / "compare.md"
        atomic_write_text(str(path), "\n".join([head, *self.sections]))
        return path

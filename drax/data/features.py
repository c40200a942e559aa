"""Feature dumping: audio of a Kaldi data dir -> Whisper log-mel or frozen-encoder states in a Kaldi ark.

Dumping frozen-encoder states once means training never re-runs the frozen encoder (the recipe's
default; `kind: logmel` keeps the encoder in the model instead). Bad input is never dropped silently:
missing or corrupt audio, empty audio and audio over 30 s are skipped and listed with their reason in
`<out>/skipped`; audio at another sample rate or with several channels is resampled / mixed down
and counted. The ark/scp pair is written under temporary names and renamed when complete.

A dump runs in shards (shard=(i, n), each into its own directory): the batches of the set's
longest-first order are dealt round-robin, so every batch is the same as in one dump and
`merge_dumps` lists the same features, shapes and skips as one dump.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import kaldiio
import numpy as np
import torch
from tqdm import tqdm

from drax.data import FEATURE_KINDS
from drax.data.audio import load_audio, pad_batch
from drax.data.filtering import DUMPED_SCP
from drax.data.kaldi_dir import format_kv, read_kv_dict
from drax.fileio import atomic_path, atomic_write_text, temp_path
from drax.nets.whisper import FrozenWhisperEncoder, log_mel, mel_filters, whisper_input, whisper_mel_bins

logger = logging.getLogger(__name__)


@dataclass
class DumpSummary:
    written: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # utt -> reason
    fixed: Counter = field(default_factory=Counter)  # "resampled", "downmixed"
    feat_dim: int = 0


def dump_features(
    data_dir: str | Path,
    out_dir: str | Path,
    kind: str = "whisper_states",
    whisper: str | None = None,
    n_mels: int = 80,
    batch_size: int = 4,
    autocast: str | None = None,
    pad_to_30s: bool = False,
    trailing_silence: float = 0.0,
    shard: tuple[int, int] = (0, 1),
    device: str = "cpu",
) -> DumpSummary:
    """Write `out_dir/feats.ark`, `dumped.scp` (every utterance dumped), `feats_shape` and `skipped` for
    the utterances of `data_dir`. Filtering (drax/data/filtering.py) reads `dumped.scp` and writes the
    `feats.scp` training and decoding read, so re-filtering never loses what was dumped.
    autocast: the frozen encoder's precision (FrozenWhisperEncoder); pad_to_30s: audio padded with
    silence to 30 s first, as Whisper was trained (3,000 log-mel frames); trailing_silence: seconds of
    silence appended instead (`whisper_input`); device: where it runs."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind '{kind}'; valid choices: {', '.join(FEATURE_KINDS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = None
    if whisper is not None:  # the model's mel count wins
        n_mels = whisper_mel_bins(whisper)
    if kind == "whisper_states":

        if whisper is None:
            raise ValueError("feature kind 'whisper_states' needs a Whisper model (dir or hub id)")
        encoder = FrozenWhisperEncoder(n_mels, whisper, autocast=autocast).to(device).eval()
    filters = mel_filters(n_mels)

    wavs = read_kv_dict(os.path.join(data_dir, "wav.scp"))
    durs_file = os.path.join(data_dir, "utt2dur")
    durs = {u: float(d) for u, d in read_kv_dict(durs_file).items()} if os.path.exists(durs_file) else {}
    # Longest first: batches of similar length waste little padding in the encoder.
    order = sorted(wavs, key=lambda u: (-durs.get(u, 0.0), u))
    index, count = shard
    batches = [order[k: k + batch_size] for k in range(0, len(order), batch_size)][index::count]
    summary = DumpSummary()
    shapes: dict[str, str] = {}
    pending: list[tuple[str, torch.Tensor]] = []

    def flush(writer):
        if not pending:
            return
        if encoder is None:
            outs = list(pending)
        else:
            with torch.no_grad():
                states, olens, _ = encoder(*pad_batch([f for _, f in pending], device))
            states, olens = states.float().cpu(), olens.cpu()
            outs = [(u, states[i, : olens[i]]) for i, (u, _) in enumerate(pending)]
        for utt, feat in outs:
            arr = feat.numpy().astype(np.float32)
            if not np.isfinite(arr).all():  # e.g. an encoder in reduced precision that overflowed
                summary.skipped[utt] = (f"{kind} with NaN or infinite values"
                                        + (f" (encoder autocast {autocast}; null computes in float32)" if autocast else ""))
                continue
            writer(utt, arr)
            shapes[utt] = f"{arr.shape[0]},{arr.shape[1]}"
            summary.feat_dim = arr.shape[1]
            summary.written += 1
        pending.clear()

    final_ark = out_dir / "feats.ark"
    with atomic_path(final_ark) as ark:  # nothing half-written stays behind
        scp = temp_path(out_dir / "feats.scp")
        try:
            with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
                label = f"dump {kind} {Path(data_dir).name}" + (f" shard {index + 1}/{count}" if count > 1 else "")
                for batch in tqdm(batches, desc=label, unit="batch", mininterval=5):
                    for utt in batch:
                        try:
                            audio, fixes = load_audio(wavs[utt])
                        except ValueError as e:
                            summary.skipped[utt] = str(e)
                            continue
                        summary.fixed.update(fixes)
                        audio = whisper_input(torch.from_numpy(audio), pad_to_30s, trailing_silence)
                        pending.append((utt, log_mel(audio, filters)))
                    flush(writer)
            # scp lines point into the ark by byte offset: the same offsets hold once the ark is renamed
            lines = dict(line.split(" ", 1) for line in Path(scp).read_text(encoding="utf-8").splitlines())
        finally:
            os.unlink(scp)
    atomic_write_text(str(out_dir / DUMPED_SCP), format_kv(
        (u, lines[u].replace(ark, str(final_ark))) for u in sorted(lines)))
    atomic_write_text(str(out_dir / "feats_shape"), format_kv((u, shapes[u]) for u in sorted(shapes)))
    atomic_write_text(str(out_dir / "skipped"), format_kv(sorted(summary.skipped.items())))
    if summary.skipped:
        logger.warning("%s: skipped %d utterance(s), listed with reasons in %s/skipped: %s",
                       data_dir, len(summary.skipped), out_dir, ", ".join(list(summary.skipped)[:5]))
    for fix, count in summary.fixed.items():
        logger.warning("%s: %s %d utterance(s) to 16 kHz mono", data_dir, fix, count)
    return summary


def dumped_utterances(shard_dir: Path) -> list[str]:
    """The utterances a dump wrote or skipped (`check_shard_outputs`' view of a shard); ValueError
    where a dumped.scp line points outside the dump's own ark (another dump's, or past its end)."""
    ark = (shard_dir / "feats.ark").resolve()
    size = ark.stat().st_size
    dumped = read_kv_dict(str(shard_dir / DUMPED_SCP))
    for utt, entry in dumped.items():
        path, _, offset = entry.rpartition(":")
        if Path(path).resolve() != ark or not offset.isdigit() or int(offset) >= size:
            raise ValueError(f"{shard_dir / DUMPED_SCP}: {utt} points to {entry}, not into {ark} ({size} bytes)")
    return [*dumped, *read_kv_dict(str(shard_dir / "skipped"))]


def merge_dumps(shard_dirs: list[Path], out_dir: Path) -> DumpSummary:
    """The shards' dumps as one in `out_dir`: dumped.scp (pointing into each shard's ark), feats_shape
    and skipped, by utterance."""
    lines, shapes, skipped = {}, {}, {}
    for d in shard_dirs:
        lines.update(read_kv_dict(str(d / DUMPED_SCP)))
        shapes.update(read_kv_dict(str(d / "feats_shape")))
        skipped.update(read_kv_dict(str(d / "skipped")))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(str(out_dir / DUMPED_SCP), format_kv(sorted(lines.items())))
    atomic_write_text(str(out_dir / "feats_shape"), format_kv(sorted(shapes.items())))
    atomic_write_text(str(out_dir / "skipped"), format_kv(sorted(skipped.items())))
    dims = {v.split(",")[1] for v in shapes.values()}
    return DumpSummary(written=len(lines), skipped=skipped, feat_dim=int(dims.pop()) if dims else 0)

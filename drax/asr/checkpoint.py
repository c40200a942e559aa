"""ESPnet trainer checkpoints: saved atomically, read without unpickling arbitrary code, set aside when
damaged, completed when a kill came between two saves.

ESPnet's trainer writes output_dir/checkpoint.pth (model, optimizer, scheduler and reporter state)
and <n>epoch.pth (model) with torch.save. `atomic_torch_save` makes each save a temporary file
renamed into place; `load_trainer_checkpoint` reads one with `weights_only=True`, allowing just the
few plain types the reporter stores.
"""
from __future__ import annotations

import datetime
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from drax.fileio import atomic_path, temp_path

logger = logging.getLogger(__name__)

# what ESPnet's Reporter state holds besides tensors and builtins: numpy scalars and epoch times
_REPORTER_TYPES = [np._core.multiarray.scalar, np.dtype, type(np.dtype("float64")), type(np.dtype("float32")),
                   type(np.dtype("int64")), datetime.timedelta]
# registered once for the process: the safe_globals context manager is not thread-safe (a study
# reads checkpoints from several threads)
torch.serialization.add_safe_globals(_REPORTER_TYPES)
_plain_save = getattr(torch.save, "plain_save", torch.save)


def atomic_torch_save(obj, f, *args, **kwargs):
    """torch.save; to a path: through a temporary file in the same directory, then renamed."""
    if not isinstance(f, (str, os.PathLike)):
        return _plain_save(obj, f, *args, **kwargs)
    with atomic_path(f) as tmp:
        _plain_save(obj, tmp, *args, **kwargs)


atomic_torch_save.plain_save = _plain_save


def load_trainer_checkpoint(path: str | Path) -> dict:
    """A checkpoint.pth as a dict, loaded with weights_only=True (no arbitrary code); its tensors are
    mapped from the file, read only where used (the reporter's stats need none of them)."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def reporter_stats(path: str | Path) -> dict:
    """{epoch: {"train": {...}, "valid": {...}}} of a checkpoint.pth."""
    return load_trainer_checkpoint(path)["reporter"]["stats"]


def set_aside_damaged_checkpoint(output_dir: Path) -> Path | None:
    """Move an unreadable output_dir/checkpoint.pth to checkpoint.pth.damaged; returns its new path."""
    checkpoint = Path(output_dir) / "checkpoint.pth"
    if not checkpoint.exists():
        return None
    try:  # torch.save writes a zip archive: check its structure and every member's CRC, unpickle nothing
        with zipfile.ZipFile(checkpoint) as archive:
            bad = archive.testzip()
        if bad is None:
            return None
        problem = f"member {bad} fails its CRC"
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        problem = f"{type(e).__name__}: {e}"
    aside = checkpoint.with_name("checkpoint.pth.damaged")
    os.replace(checkpoint, aside)
    logger.warning("%s cannot be read (%s); moved to %s, training starts again from epoch 1",
                   checkpoint, problem, aside)
    return aside


def restore_epoch_model(output_dir: Path, best_model_criterion: list) -> int | None:
    """Write the last epoch's <n>epoch.pth and its links from checkpoint.pth, where they are missing;
    returns n where it did. ESPnet saves checkpoint.pth first, then <n>epoch.pth, latest.pth and the
    <phase>.<key>.best.pth links: killed between the two, it resumes after epoch n without n's model
    file, and averaging the best epochs at the end fails on it at every re-run. checkpoint.pth holds
    the same weights."""
    from espnet2.train.reporter import Reporter

    checkpoint = Path(output_dir) / "checkpoint.pth"
    if not checkpoint.exists():
        return None
    state = load_trainer_checkpoint(checkpoint)
    reporter = Reporter()
    reporter.load_state_dict(state["reporter"])
    epoch = reporter.get_epoch()
    model_file = checkpoint.with_name(f"{epoch}epoch.pth")
    if epoch == 0 or model_file.exists():
        return None
    atomic_torch_save(state["model"], model_file)
    links = ["latest.pth"] + [f"{phase}.{key}.best.pth" for phase, key, mode in best_model_criterion
                              if reporter.has(phase, key) and reporter.get_best_epoch(phase, key, mode) == epoch]
    for name in links:  # a new link renamed over the old one, as a file would be
        tmp = temp_path(checkpoint.with_name(name))
        os.unlink(tmp)
        os.symlink(model_file.name, tmp)
        os.replace(tmp, checkpoint.with_name(name))
    logger.warning("%s: the trainer was stopped after saving checkpoint.pth of epoch %d and before %s; "
                   "wrote %s and %s from checkpoint.pth", output_dir, epoch, model_file.name, model_file.name,
                   ", ".join(links))
    return epoch

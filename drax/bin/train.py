"""Train an ASR model with ESPnet's ASR task and trainer, with Drax's components registered.

    python -m drax.bin.train --config conf/train.yaml --output_dir exp/asr ...   (any espnet2 asr_train flag)

Multi-GPU and multi-node work as in ESPnet (--ngpu, --multiprocessing_distributed, --dist_* flags):
the registry is imported at module level, so spawned workers see it too.

Interrupting a training loses at most the epoch in progress: every file the trainer saves
(checkpoint.pth, <n>epoch.pth, ...) is written to a temporary name and renamed, so a kill during a
save leaves the previous file whole; a checkpoint.pth that cannot be read anyway (written by
something else, a full disk) is moved aside to checkpoint.pth.damaged with a warning and the
training starts again instead of failing on every re-run.
"""
import sys
from pathlib import Path

import torch
from espnet2.tasks.asr import ASRTask

import drax.asr.registry  # noqa: F401  (registers model: drax, decoder: dit, ...)
from drax.asr.checkpoint import atomic_torch_save, set_aside_damaged_checkpoint


def _output_dir(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--output_dir" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--output_dir="):
            return arg.split("=", 1)[1]
    return None


# Every save of ESPnet's trainer goes through torch.save. Set at import, so that spawned workers of a
# multi-GPU run (which import this entry point again) save atomically too.
torch.save = atomic_torch_save


def main(cmd=None):
    output_dir = _output_dir(list(sys.argv[1:] if cmd is None else cmd))
    if output_dir:
        set_aside_damaged_checkpoint(Path(output_dir))
    ASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

"""Train an ASR model with ESPnet's ASR task and trainer, with Drax's components registered.

    python -m drax.bin.train --config conf/train.yaml --output_dir exp/asr ...   (any espnet2 asr_train flag)

Multi-GPU and multi-node work as in ESPnet (--ngpu, --multiprocessing_distributed, --dist_* flags):
the registry is imported at module level, so spawned workers see it too.

Interrupting a training loses at most the epoch in progress: every file the trainer saves
(checkpoint.pth, <n>epoch.pth, ...) is written to a temporary name and renamed, so a kill during a
save leaves the previous file whole; a checkpoint.pth that cannot be read anyway (written by
something else, a full disk) is moved aside to checkpoint.pth.damaged with a warning and the
training starts again instead of failing on every re-run; a kill between checkpoint.pth and
<n>epoch.pth is completed from checkpoint.pth before the trainer resumes. Every torch.load of the
process unpickles weights and plain types only, ESPnet's own (resume, averaging, init_param) included.
"""
import contextlib
import os
from pathlib import Path

import torch
from espnet2.tasks.asr import ASRTask

import drax.asr.registry  # noqa: F401  (registers model: drax, decoder: dit, ...)
from drax.asr.checkpoint import atomic_torch_save, restore_epoch_model, set_aside_damaged_checkpoint

# Every save of ESPnet's trainer goes through torch.save. Set at import, so that spawned workers of a
# multi-GPU run (which import this entry point again) save atomically too.
torch.save = atomic_torch_save


@contextlib.contextmanager
def weights_only_loads():
    """ESPnet loads checkpoints with weights_only=False; torch reads this switch at each load and
    loads weights only. Workers started meanwhile inherit it; the caller's environment is restored."""
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = before


def main(cmd=None):
    args = ASRTask.get_parser().parse_args(cmd)
    if args.output_dir:
        set_aside_damaged_checkpoint(Path(args.output_dir))
        restore_epoch_model(Path(args.output_dir), args.best_model_criterion)
    with weights_only_loads():
        ASRTask.main(cmd=cmd)
    # ESPnet leaves a rank's process group to the interpreter's exit, where tearing down its threads can
    # abort the rank after training finished ("terminate called without an active exception")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

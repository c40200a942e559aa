"""Train an ASR model with ESPnet's ASR task and trainer, with Drax's components registered.

    python -m drax.bin.train --config conf/train.yaml --output_dir exp/asr ...   (any espnet2 asr_train flag)

Multi-GPU and multi-node work as in ESPnet (--ngpu, --multiprocessing_distributed, --dist_* flags):
the registry is imported at module level, so spawned workers see it too.
"""
import drax.asr.registry  # noqa: F401  (registers model: drax, decoder: dit, ...)
from espnet2.tasks.asr import ASRTask


def main(cmd=None):
    ASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

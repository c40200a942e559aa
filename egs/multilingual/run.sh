#!/usr/bin/env bash
# The paper's 8-language mixture: the data dirs prepared by the five corpus recipes (stage 1 of
# ../librispeech, ../mls, ../commonvoice, ../aishell, ../reazonspeech) merged into one training set,
# evaluated on every corpus's test sets (see README.md).
#   ./run.sh [--stage N] [--stop_stage M] [--<recipe key> <value> ...]   (see conf/recipe.yaml)
set -euo pipefail
cd "$(dirname "$0")"
exec ../../run.sh --recipe conf/recipe.yaml "$@"

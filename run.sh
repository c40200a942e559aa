#!/usr/bin/env bash
# The stage engine every recipe calls (ESPnet's asr.sh plays this role there).
#   ./run.sh                          runs the default recipe (egs/mini) end to end
#   egs/<corpus>/run.sh --stage 3     recipes call this script with --recipe conf/recipe.yaml
# Logic lives in Python (drax/recipe/stages.py); this script only finds the environment.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
case " $* " in
    *" --recipe "*) ;;
    *) cd "$root/egs/mini" && exec ./run.sh "$@" ;;
esac
python=${DRAX_VENV:-$root/tools/venv}/bin/python
if [ ! -x "$python" ]; then
    echo "error: no environment at ${DRAX_VENV:-$root/tools/venv}; run tools/setup.sh first" >&2
    exit 1
fi
export PYTHONUNBUFFERED=1
exec "$python" -m drax.bin.run_recipe "$@"

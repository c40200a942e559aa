#!/usr/bin/env bash
# Run the test suite in the toolkit's environment (tools/venv, or $DRAX_VENV as tools/setup.sh made it).
#   tools/test.sh                  # everything, the tiny recipes end to end included (~10 min on 2 cores)
#   tools/test.sh -m "not slow"    # without the end-to-end recipe runs
#   tools/test.sh tests/test_flow.py -k jacobi
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${DRAX_VENV:-$root/tools/venv}/bin/python
if [ ! -x "$python" ]; then
    echo "error: no environment at ${DRAX_VENV:-$root/tools/venv}; run tools/setup.sh first" >&2
    exit 1
fi
cd "$root"
exec "$python" -m pytest -q "${@:-tests}"

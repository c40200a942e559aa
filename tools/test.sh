#!/usr/bin/env bash
# Run the test suite in the toolkit's environment (tools/venv, or $DRAX_VENV as tools/setup.sh made it).
#   tools/test.sh                  # everything, the tiny recipes end to end included
#   tools/test.sh -m "not slow"    # without the end-to-end recipe runs
#   tools/test.sh tests/test_flow.py -k jacobi
# Tests run on DRAX_TEST_WORKERS pytest-xdist workers (default 2; 0: in this process).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${DRAX_VENV:-$root/tools/venv}/bin/python
if [ ! -x "$python" ]; then
    echo "error: no environment at ${DRAX_VENV:-$root/tools/venv}; run tools/setup.sh first" >&2
    exit 1
fi
cd "$root"
exec "$python" -m pytest -q -n "${DRAX_TEST_WORKERS:-2}" --dist loadgroup "${@:-tests}"

#!/usr/bin/env bash
# Create the toolkit's Python environment (ESPnet convention: tools/venv) and install drax into it.
#
#   tools/setup.sh                  # first run: ~3 min, ~6 GB; later runs: seconds, installs nothing
#   DRAX_VENV=/path/venv tools/setup.sh   # put the environment elsewhere
#
# Idempotent: a stamp holding the hash of the pinned requirements, the Debian package list and
# setup.py marks a finished install; the install reruns only when one of them changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${DRAX_VENV:-$root/tools/venv}
python=${DRAX_PYTHON:-python3.11}
stamp=$venv/.drax-installed

want=$(cat "$root/tools/requirements.txt" "$root/tools/apt-packages.txt" "$root/setup.py" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "drax environment up to date: $venv"
    exit 0
fi

if ! command -v "$python" >/dev/null; then
    echo "error: $python not found; drax needs Python 3.11 (espnet 202511 is the newest release for it)." >&2
    echo "       Set DRAX_PYTHON=/path/to/python3.11 to pick another interpreter." >&2
    exit 1
fi

# System packages (espeak-ng and text sources for the synthetic corpus).
mapfile -t apt_pkgs < <(grep -v '^#' "$root/tools/apt-packages.txt" | grep -v '^$')
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing Debian packages: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "error: missing Debian packages: ${missing[*]}" >&2
        echo "       run: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

echo "creating $venv (first run takes a few minutes and ~6 GB)"
rm -f "$stamp"
"$python" -m venv "$venv"
# This machine's pip index mirrors print one warning per missing local package; hide only those.
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
quiet "$venv/bin/pip" install --progress-bar off -q -r "$root/tools/requirements.txt"
quiet "$venv/bin/pip" install --progress-bar off -q --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" -c "import drax, torch, espnet2" >/dev/null
echo "$want" > "$stamp"
echo "drax environment ready: $venv"

#!/usr/bin/env bash
# Create .venv with Python 3.11 and install every ARForge distribution (editable) plus the
# development tools listed in pyproject.toml's `dev` extra. GPU workers (splatting, ai: torch)
# are only installed with GPU=1. Usage: scripts/install.sh   (env: PY, VENV, GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3.11}
VENV=${VENV:-.venv}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "install: $PY not found. Install Python 3.11 (Debian 12: apt-get install python3.11 python3.11-venv)." >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    echo "install: '$PY -m venv' failed (Debian ships venv separately); installing python3.11-venv" >&2
    if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
           as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-venv; }; then
      echo "install: could not install python3.11-venv; run: sudo apt-get install python3.11-venv" >&2
      exit 1
    fi
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

dists=(shared services/api services/webhooks services/photogrammetry services/mesh cli)
if [ "${GPU:-0}" = 1 ]; then dists+=(services/splatting services/ai); fi
args=()
for d in "${dists[@]}"; do
  if [ -f "$d/pyproject.toml" ]; then args+=(-e "./$d"); fi
done

# The workspace pyproject.toml is configuration only (not a package): read its dev extra.
"$VENV/bin/python" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["dev"]))
' > "$VENV/dev-requirements.txt"

echo "install: ${args[*]} + dev tools into $VENV"
"$VENV/bin/python" -m pip install -q "${args[@]}" -r "$VENV/dev-requirements.txt"

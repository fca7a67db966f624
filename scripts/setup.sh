#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the package with the pinned versions in constraints.txt.
# Idempotent: does nothing when the venv already matches constraints.txt and pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${B2B_VENV:-.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
want="$(cat constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.b2b-installed"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$version" != "3.11" && "$version" != "3.12" ]]; then
  echo "setup: need Python 3.11 (found $version at $PYTHON); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
echo "setup: installing into $VENV (Python $version, pinned by constraints.txt) ..."
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[test]"
echo "$want" > "$stamp"
echo "setup: done"

#!/usr/bin/env bash
# Regenerate constraints.txt from a fresh venv resolved from pyproject.toml (run after changing deps).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3.11}" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --upgrade pip
"$tmp/venv/bin/pip" install --quiet ".[test]"
{
  echo "# Reproducible install: pip install -c constraints.txt -e '.[test]'  (regenerate: scripts/lock.sh)"
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^b2b-integrations'
} > constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pins"

#!/usr/bin/env bash
# Installs Feast (scripts/feast/requirements.txt, pinned) into the repo-local venv
# .toolchains/feast-venv, once: it is rebuilt only when the pinned requirements change.
# Used by the Feast interop test (tests/tests/feast.rs); `make test` runs it.
# Prints the venv's python path on stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.toolchains/feast-venv"
REQUIREMENTS="$ROOT/scripts/feast/requirements.txt"
STAMP="$VENV/.wafer-requirements"
PYTHON="${PYTHON:-python3}"

if [[ -x "$VENV/bin/python" && -f "$STAMP" ]] && cmp -s "$REQUIREMENTS" "$STAMP"; then
    echo "feast venv: up to date in .toolchains/feast-venv" >&2
else
    echo "feast venv: installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into .toolchains/feast-venv" >&2
    start="$(date +%s)"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    cp "$REQUIREMENTS" "$STAMP"
    echo "feast venv: installed in $(( $(date +%s) - start )) s" >&2
fi
"$VENV/bin/python" -c 'import feast, redis, mmh3' >&2
echo "$VENV/bin/python"

#!/usr/bin/env bash
# Installs the Python baseline's dependencies (scripts/bench/requirements.txt, pinned)
# into the repo-local venv .toolchains/bench-venv, once: it is rebuilt only when the
# pinned requirements change. Prints the venv's python path on stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.toolchains/bench-venv"
REQUIREMENTS="$ROOT/scripts/bench/requirements.txt"
STAMP="$VENV/.wafer-requirements"
PYTHON="${PYTHON:-python3}"

if [[ -x "$VENV/bin/python" && -f "$STAMP" ]] && cmp -s "$REQUIREMENTS" "$STAMP"; then
    echo "bench venv: up to date in .toolchains/bench-venv" >&2
else
    echo "bench venv: installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into .toolchains/bench-venv" >&2
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    cp "$REQUIREMENTS" "$STAMP"
fi
"$VENV/bin/python" -c 'import confluent_kafka, redis' >&2
echo "$VENV/bin/python"

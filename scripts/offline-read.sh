#!/usr/bin/env bash
# Reads an offline log directory with pyarrow, pandas and DuckDB (as a data scientist would)
# and prints, per reader, a JSON summary: rows, users, tombstones, sum of event counts, the
# latest row per user by (as_of, written_at). tests/tests/offline.rs compares it with what the
# parquet crate reads.
#
#   scripts/offline-read.sh DIR VIEW      install the readers if needed, then read DIR
#   scripts/offline-read.sh install       only install them
#
# The readers (pinned in scripts/toolchains/offline-read-requirements.txt) go into
# target/offline-read-venv, reinstalled only when the pins change.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/target/offline-read-venv"
REQUIREMENTS="$ROOT/scripts/toolchains/offline-read-requirements.txt"
STAMP="$VENV/.wafer-requirements"
PYTHON="${PYTHON:-python3}"

install() {
    if [[ -x "$VENV/bin/python" && -f "$STAMP" ]] && cmp -s "$REQUIREMENTS" "$STAMP"; then
        return
    fi
    echo "offline readers: installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into target/offline-read-venv" >&2
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    cp "$REQUIREMENTS" "$STAMP"
}

install
if [[ "${1:-}" == "install" ]]; then
    exit 0
fi
exec "$VENV/bin/python" "$ROOT/scripts/offline_read.py" "$@"

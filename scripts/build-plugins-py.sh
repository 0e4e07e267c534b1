#!/usr/bin/env bash
# Builds the Python plugins into components: target/plugins/<name>_py.wasm.
#
#   scripts/build-plugins-py.sh            install the toolchain if needed, then build
#   scripts/build-plugins-py.sh install    only install the toolchain
#
# The toolchain (componentize-py, pinned in scripts/toolchains/python-requirements.txt)
# goes into .toolchains/python-venv, a repo-local venv ignored by git; it is
# reinstalled only when the pinned requirements change. Components are built from
# the repository's wit/ (world `feature-plugin`) with `--stub-wasi`, so they
# import nothing but `wafer:plugin/log` (and the types-only `wafer:plugin/types`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.toolchains/python-venv"
REQUIREMENTS="$ROOT/scripts/toolchains/python-requirements.txt"
STAMP="$VENV/.wafer-requirements"
OUT="$ROOT/target/plugins"
PYTHON="${PYTHON:-python3}"

# Python plugins: source directory under plugins/ and output component name.
PLUGINS=(
    "user-activity-py:user_activity_py"
)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

install() {
    if [[ -x "$VENV/bin/componentize-py" && -f "$STAMP" ]] && cmp -s "$REQUIREMENTS" "$STAMP"; then
        echo "python toolchain: $("$VENV/bin/componentize-py" --version) already in .toolchains/python-venv"
        return
    fi
    local start
    start="$(now)"
    echo "python toolchain: installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into .toolchains/python-venv"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$STAMP"
    echo "python toolchain: $("$VENV/bin/componentize-py" --version) installed in $(since "$start")"
}

build() {
    mkdir -p "$OUT"
    local entry src name start
    for entry in "${PLUGINS[@]}"; do
        src="$ROOT/plugins/${entry%%:*}"
        name="${entry##*:}"
        start="$(now)"
        # -p: module search path (the plugin, then the SDK); `app` is the plugin's
        # entry module, which defines `WitWorld` via wafer_guest.export_plugin.
        (cd "$src" && "$VENV/bin/componentize-py" \
            --wit-path "$ROOT/wit" --world feature-plugin \
            componentize --stub-wasi \
            -p "$src" -p "$ROOT/guest-sdk/python" \
            app -o "$OUT/$name.wasm.tmp") >/dev/null
        mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
        echo "built target/plugins/$name.wasm ($(stat -c %s "$OUT/$name.wasm") bytes) in $(since "$start")"
        # The world's imports only: a WASI import would make the host refuse the plugin.
        python3 "$ROOT/scripts/component-imports.py" \
            --allow wafer:plugin/log@0.2.0 wafer:plugin/types@0.2.0 -- "$OUT/$name.wasm"
    done
}

install
if [[ "${1:-}" != "install" ]]; then
    build
fi

#!/usr/bin/env bash
# Builds the JavaScript plugins into components: target/plugins/<name>_js.wasm.
#
#   scripts/build-plugins-js.sh            install the toolchain if needed, then build
#   scripts/build-plugins-js.sh install    only install the toolchain
#
# The toolchain (@bytecodealliance/componentize-js, pinned with its whole tree by
# scripts/toolchains/js/package-lock.json) goes into .toolchains/js, ignored by
# git, with `npm ci`; it is reinstalled only when the pinned manifest changes.
# Components are built from the repository's wit/ (world `feature-plugin`) with
# every optional engine feature disabled, so they import nothing but
# `wafer:plugin/log` (and the types-only `wafer:plugin/types`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINS="$ROOT/scripts/toolchains/js"
TOOLS="$ROOT/.toolchains/js"
OUT="$ROOT/target/plugins"

# JavaScript plugins: source directory under plugins/ and output component name.
PLUGINS=(
    "user-activity-js:user_activity_js"
)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
version() { node -p "require('$TOOLS/node_modules/@bytecodealliance/componentize-js/package.json').version"; }

install() {
    if [[ -d "$TOOLS/node_modules" ]] \
        && cmp -s "$PINS/package.json" "$TOOLS/package.json" \
        && cmp -s "$PINS/package-lock.json" "$TOOLS/package-lock.json" \
        && [[ -f "$TOOLS/.wafer-installed" ]]; then
        echo "js toolchain: componentize-js $(version) already in .toolchains/js"
        return
    fi
    local start
    start="$(now)"
    echo "js toolchain: installing the tree pinned by scripts/toolchains/js/package-lock.json into .toolchains/js"
    rm -rf "$TOOLS"
    mkdir -p "$TOOLS"
    cp "$PINS/package.json" "$PINS/package-lock.json" "$TOOLS/"
    (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$TOOLS/.wafer-installed"
    echo "js toolchain: componentize-js $(version) installed in $(since "$start")"
}

build() {
    mkdir -p "$OUT"
    local entry src name start
    for entry in "${PLUGINS[@]}"; do
        src="$ROOT/plugins/${entry%%:*}"
        name="${entry##*:}"
        start="$(now)"
        # From the repository root, so that the entry module's relative imports
        # of the SDK (guest-sdk/js) resolve inside the build.
        (cd "$ROOT" && node scripts/toolchains/js/componentize.mjs \
            --tools "$TOOLS" --wit wit --world feature-plugin \
            --source "$src/src/component.js" --out "$OUT/$name.wasm")
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

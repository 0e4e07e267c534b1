#!/usr/bin/env bash
# scripts/chromium.sh — headless Chromium for the status-page test (tests/tests/status_page.rs).
#
# Installs Debian's `chromium` package with apt-get when /usr/bin/chromium is missing; idempotent
# (does nothing when it is there). `make test` runs it. Needs root or sudo for the install.
#
# Usage: scripts/chromium.sh            install if missing, then print the version
set -euo pipefail

log() { printf 'chromium: %s\n' "$*" >&2; }
die() { printf 'chromium: ERROR: %s\n' "$*" >&2; exit 1; }

CHROMIUM=/usr/bin/chromium

if [[ ! -x $CHROMIUM ]]; then
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install chromium"
    sudo=(sudo)
  fi
  log "apt-get update"
  "${sudo[@]}" apt-get update -qq >&2
  log "apt-get install -y chromium"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >&2
  [[ -x $CHROMIUM ]] || die "$CHROMIUM missing after installing the chromium package"
fi
"$CHROMIUM" --version

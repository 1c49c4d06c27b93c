#!/usr/bin/env bash
# Runs every fuzz target one after another (one process, one job each), seeded from
# fuzz/seeds/<target>, growing fuzz/corpus/<target>. Logs to fuzz/logs/<target>-<time>.log.
# Usage (from the repository root): fuzz/run-all.sh [seconds-per-target] [target...]
set -u
cd "$(dirname "$0")/.."
secs="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(filter_policy api_key greeter account batch_parser json_body cursor objects telemetry_simple otlp)
mkdir -p fuzz/logs
stamp="$(date +%Y%m%d-%H%M%S)"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
  echo "== $t ($secs s)"
  CARGO_BUILD_JOBS=1 cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 >"fuzz/logs/$t-$stamp.log" 2>&1
  echo "   exit $?: $(grep -E '^#[0-9]+' "fuzz/logs/$t-$stamp.log" | tail -1)"
  grep -E '^Done' "fuzz/logs/$t-$stamp.log" || true
  echo "   corpus: $(ls "fuzz/corpus/$t" | wc -l) files"
done

#!/usr/bin/env bash
# W1: async throughput. N invocations of wordcount with a ~200-byte JSON
# payload (`Prefer: respond-async`), C in flight, then waits until every one
# is finished. Reports accept throughput, end-to-end throughput (first request
# → last completed_at_ms), CPU µs per invocation of gateway/worker/redis and
# the per-phase timings of a sample of records.
#
#   bench/w1-throughput.sh                      # N=20000, C=64, HTTP/1.1
#   N=100000 C=128 HTTP2=1 bench/w1-throughput.sh
#   BATCH=100 bench/w1-throughput.sh            # through /invoke/{fn}/batch
#   bench/w1-throughput.sh --sample 5000        # extra args go to `eddy-bench`
#
# Redis runs without AOF and RDB (see bench/lib.sh, BENCH_AOF=1 to turn AOF on).
source "$(dirname "$0")/lib.sh"
N=${N:-20000}
C=${C:-64}
args=(throughput -f wordcount -n "$N" -c "$C")
[ "${HTTP2:-0}" = 1 ] && args+=(--http2)
[ -n "${BATCH:-}" ] && args+=(--batch-size "$BATCH")

bench_setup w1-throughput
bench_deploy wordcount "$WASM/wordcount.wasm" --timeout-ms 2000
bench_run w1-throughput "${args[@]}" "$@"

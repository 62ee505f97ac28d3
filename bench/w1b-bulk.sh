#!/usr/bin/env bash
# W1b: bulk ingestion. N CSV rows for classify, as NDJSON lines
# `{"row":"t<i>,<amount>,<country>,<category>"}` through
# POST /invoke/classify/batch, BATCH lines per request, C requests in flight;
# one invocation per row. Reports rows/s accepted and end to end, CPU µs per
# row, per-phase timings of a sample.
#
#   bench/w1b-bulk.sh                           # N=100000, BATCH=1000, C=4
#   N=1000000 bench/w1b-bulk.sh                 # the million-row target
#
# Redis runs without AOF and RDB (BENCH_AOF=1 to turn AOF on).
source "$(dirname "$0")/lib.sh"
N=${N:-100000}
C=${C:-4}
BATCH=${BATCH:-1000}
args=(bulk -f classify -n "$N" -c "$C" --batch-size "$BATCH")
[ "${HTTP2:-0}" = 1 ] && args+=(--http2)

bench_setup w1b-bulk
bench_deploy classify "$WASM/classify.wasm" --timeout-ms 2000
bench_run w1b-bulk "${args[@]}" "$@"

#!/usr/bin/env bash
# W3: sync latency. N sync invocations of wordcount, one at a time (after a
# warm-up of 10), HDR histogram of the client-observed latency (p50, p90, p99,
# p99.9, max) and where the time went (queue wait, instantiate, run) from the
# records.
#
#   bench/w3-latency.sh                         # N=1000
#   N=10000 HTTP2=1 bench/w3-latency.sh
source "$(dirname "$0")/lib.sh"
N=${N:-1000}
C=${C:-1}
args=(latency -f wordcount -n "$N" -c "$C")
[ "${HTTP2:-0}" = 1 ] && args+=(--http2)

bench_setup w3-latency
bench_deploy wordcount "$WASM/wordcount.wasm" --timeout-ms 2000
bench_run w3-latency "${args[@]}" "$@"

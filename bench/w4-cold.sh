#!/usr/bin/env bash
# W4: cold start. TRIALS times: deploy wordcount.wasm under a fresh name
# (cold-<tag>-<n>) so it has never run, wait IDLE_MS, one sync invocation.
# Reports median/p99 of the client latency and of the record's timings
# (queue wait, load, instantiate, run, cold flag).
#
#   bench/w4-cold.sh                            # TRIALS=20, IDLE_MS=0
#   IDLE_MS=1500 bench/w4-cold.sh               # let the worker see the new stream first
#   FRESH=false IDLE_MS=70000 bench/w4-cold.sh  # same function, idle past scale-to-zero
#
# CPU per invocation here includes each trial's deploy (validation/compile in
# the gateway).
source "$(dirname "$0")/lib.sh"
TRIALS=${TRIALS:-20}
IDLE_MS=${IDLE_MS:-0}
FRESH=${FRESH:-true}
args=(cold -f wordcount -n "$TRIALS" --idle-ms "$IDLE_MS" --fresh-names "$FRESH" --module "$WASM/wordcount.wasm")
[ "${HTTP2:-0}" = 1 ] && args+=(--http2)

bench_setup w4-cold
if [ "$FRESH" = false ]; then
    bench_deploy wordcount "$WASM/wordcount.wasm" --timeout-ms 2000
fi
bench_run w4-cold "${args[@]}" "$@"

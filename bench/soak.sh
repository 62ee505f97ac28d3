#!/usr/bin/env bash
# Soak: ROUNDS rounds of N async wordcount invocations against one gateway
# and one worker (separate processes, records kept RECORD_TTL_S seconds), each
# round drained before the next. After each round it prints the resident
# memory (VmRSS) of the gateway and the worker: flat after the first round
# means nothing is left behind per invocation.
#
#   bench/soak.sh                        # ROUNDS=6 N=300000
#   ROUNDS=3 N=50000 bench/soak.sh
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-6}
N=${N:-300000}
export EDDY_RECORD_TTL_S=${RECORD_TTL_S:-60}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

bench_setup soak
bench_deploy wordcount "$WASM/wordcount.wasm" --timeout-ms 2000
gw=${BENCH_PIDS[gateway]} wk=${BENCH_PIDS[worker]}
echo "| round | invocations | end-to-end /s | gateway RSS MiB | worker RSS MiB | redis used MiB |"
echo "|---|---|---|---|---|---|"
echo "| start | 0 | | $(rss_mib "$gw") | $(rss_mib "$wk") | $(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ { printf "%.1f", $2 / 1048576 }') |"
for round in $(seq "$ROUNDS"); do
    out=$(timeout "$BENCH_TIMEOUT_S" "$EDDY_BENCH" throughput -f wordcount -n "$N" -c 64 -o json)
    rate=$(printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(round((d.get("completion") or {}).get("per_sec") or 0))' 2>/dev/null || echo "?")
    sleep 2
    echo "| $round | $((round * N)) | $rate | $(rss_mib "$gw") | $(rss_mib "$wk") | $(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ { printf "%.1f", $2 / 1048576 }') |"
done
# Records expire after their TTL: Redis gives their memory back then.
sleep $((EDDY_RECORD_TTL_S + 15))
echo "| +$((EDDY_RECORD_TTL_S + 15)) s idle | $((ROUNDS * N)) | | $(rss_mib "$gw") | $(rss_mib "$wk") | $(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ { printf "%.1f", $2 / 1048576 }') |"

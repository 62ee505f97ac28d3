#!/usr/bin/env bash
# Runs every scenario once, at the sizes of the environment (defaults: the
# modest sizes of each script), one after the other, and collects their
# markdown rows into .eddy/bench/all-<date>.md. Each scenario brings up and
# tears down its own redis, gateway and worker.
#
#   bench/all.sh
#   W1_N=100000 W1B_N=1000000 W2_D=8 W3_N=10000 W4_TRIALS=100 bench/all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=.eddy/bench/all-$(date -u +%Y%m%dT%H%M%SZ).md
mkdir -p .eddy/bench
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
status=0
run() {
    local name=$1
    shift
    echo "== $name" >&2
    # The row is the last line starting with "| <name>".
    if ! "$@" | tee /dev/stderr | grep "^| $name " >>"$rows"; then
        status=1
    fi
}
run w1-throughput env N="${W1_N:-20000}" bench/w1-throughput.sh
run w1b-bulk env N="${W1B_N:-100000}" bench/w1b-bulk.sh
run w2-run env B="${W2_B:-4}" D="${W2_D:-6}" bench/w2-run.sh
run w3-latency env N="${W3_N:-1000}" bench/w3-latency.sh
run w4-cold env TRIALS="${W4_TRIALS:-20}" bench/w4-cold.sh
{
    echo "| scenario | N | wall s | throughput /s | vs XADD/s | CPU µs/inv gateway | worker | redis | controller | total | client | p50 ms | p99 ms | p99.9 ms | problems |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    cat "$rows"
} | tee "$out"
echo "rows: $out" >&2
exit "$status"

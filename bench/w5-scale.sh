#!/usr/bin/env bash
# Issue 5 figures: scale-up reaction, scale to zero (RSS), fairness. Starts its
# own `eddy up` (private redis-server) and runs bench/scale.py against it.
# usage: bench/w5-scale.sh [--burst N] [--trickle N] [--burst-ms MS] [--repeat K]
set -euo pipefail
cd "$(dirname "$0")/.."
# EDDY_BIN picks the binary (default: this checkout's release build).
EDDY_BIN=${EDDY_BIN:-target/release/eddy}
[ -x "$EDDY_BIN" ] || make build
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
EDDY_DATA_DIR=$DIR EDDY_CACHE_DIR=$DIR/artifacts EDDY_LISTEN=127.0.0.1:$PORT EDDY_ADMIN_KEY=bench-admin \
  EDDY_LOG=warn "$EDDY_BIN" up 2> "$DIR/up.log" &
UP=$!
trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 200); do grep -q "eddy up: ready" "$DIR/up.log" 2>/dev/null && break; sleep 0.05; done
sleep 0.5
timeout 600 python3 bench/scale.py "http://127.0.0.1:$PORT" bench-admin "$@"

#!/usr/bin/env bash
# What a sync call finds in Redis during another tenant's burst, counted in
# script calls from Redis's MONITOR (see bench/order_trickle.py). Starts its
# own `eddy up` (private redis-server).
# usage: bench/w5-order.sh [--burst N] [--monitor-s S]
set -euo pipefail
cd "$(dirname "$0")/.."
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
REDIS_PORT=$(grep -o 'port=[0-9]*' "$DIR/redis/redis.log" | head -1 | cut -d= -f2)
timeout 600 python3 bench/order_trickle.py "http://127.0.0.1:$PORT" bench-admin "$REDIS_PORT" "$@"

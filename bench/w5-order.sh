#!/usr/bin/env bash
# What a sync call finds in Redis during another tenant's burst, counted in
# script calls from Redis's MONITOR (see bench/order_trickle.py). Starts its
# own `eddy up` (private redis-server).
# usage: bench/w5-order.sh [--burst N] [--monitor-s S] [--via batch|posts]
set -euo pipefail
source "$(dirname "$0")/w5-up.sh"
w5_up
timeout 600 python3 bench/order_trickle.py "http://127.0.0.1:$PORT" bench-admin "$REDIS_PORT" "$@"

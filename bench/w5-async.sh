#!/usr/bin/env bash
# An async trickle during another tenant's CPU-bound burst (see
# bench/async_trickle.py): enqueue-to-completion latency of the trickle's
# async invocations, idle and during the burst. Starts its own `eddy up`
# (private redis-server); EDDY_BULK_YIELD etc. pass through for A/B runs.
# usage: bench/w5-async.sh [--burst N] [--burst-ms MS] [--idle N]
set -euo pipefail
source "$(dirname "$0")/w5-up.sh"
w5_up
timeout 600 python3 bench/async_trickle.py "http://127.0.0.1:$PORT" bench-admin "$@"

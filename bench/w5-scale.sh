#!/usr/bin/env bash
# Issue 5 figures: scale-up reaction, scale to zero (RSS), fairness. Starts its
# own `eddy up` (private redis-server) and runs bench/scale.py against it.
# usage: bench/w5-scale.sh [--burst N] [--trickle N] [--burst-ms MS] [--repeat K] [--idle-first]
set -euo pipefail
source "$(dirname "$0")/w5-up.sh"
w5_up
timeout 600 python3 bench/scale.py "http://127.0.0.1:$PORT" bench-admin "$@"

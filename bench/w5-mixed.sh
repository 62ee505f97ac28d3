#!/usr/bin/env bash
# What the bulk yield (EDDY_BULK_YIELD) costs a bulk tenant: its async
# throughput while another tenant's sync calls wait all the time, against
# none (see bench/mixed.py). Starts its own `eddy up` (private redis-server);
# EDDY_BULK_YIELD=0 in the environment turns the yield off for the A/B.
# usage: bench/w5-mixed.sh [--n N] [--sync C] [--via posts|batch]
set -euo pipefail
source "$(dirname "$0")/w5-up.sh"
w5_up EDDY_BULK_YIELD="${EDDY_BULK_YIELD:-1}"
timeout 900 python3 bench/mixed.py "http://127.0.0.1:$PORT" bench-admin "$@"

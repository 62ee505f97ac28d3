#!/usr/bin/env bash
# Shows Eddy working: runs the example processors through the same sandbox the
# workers use, then shows what happens to misbehaving ones.
set -euo pipefail
cd "$(dirname "$0")/.."
EDDY=target/release/eddy
W=functions/target/wasm32-wasip2/release
export EDDY_CACHE_DIR=.eddy/artifacts

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "check: is wordcount an eddy:processor component?"
$EDDY check $W/wordcount.wasm

step "run wordcount on a JSON document"
echo '{"text":"the quick brown fox jumps over the lazy dog and the cat"}' | $EDDY run $W/wordcount.wasm --input -

step "run classify on CSV rows, with a config value"
printf '1,50,DE,books\n2,5000,US,cars\n3,10,KP,food\n' | \
  $EDDY run $W/classify.wasm --input - --content-type text/csv --config high_amount=1000

step "run fanout: its follow-ups are values, committed only on success"
echo '{"branch":3,"depth":2}' | $EDDY run $W/fanout.wasm --input -

step "a processor in an infinite loop is stopped at its timeout"
$EDDY run $W/fx_loop.wasm --timeout-ms 100 || true

step "a processor that eats memory is stopped at its limit"
$EDDY run $W/fx_memhog.wasm --memory-mb 16 | tail -2 || true

step "a core module is refused with what is wrong"
printf '\0asm\1\0\0\0' > .eddy/core.wasm
$EDDY check .eddy/core.wasm || true

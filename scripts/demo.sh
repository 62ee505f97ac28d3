#!/usr/bin/env bash
# Brings Eddy up locally (`eddy up`: a private redis-server, the gateway and a
# worker in one process) and shows it working through the CLI: a tenant, a
# deploy, a sync invoke, an async invoke with a signed callback, and a run of
# follow-ups that knows when it is finished; a processor that does real work
# (fetches a document, classifies it with an API behind a secret token, indexes
# each section in a follow-up) against local servers, and a schedule. Then the
# sandbox at its limits.
set -euo pipefail
cd "$(dirname "$0")/.."
EDDY=$PWD/target/release/eddy
W=functions/target/wasm32-wasip2/release
DATA=${EDDY_DATA_DIR:-.eddy/demo}
PORT=${EDDY_DEMO_PORT:-8080}
HOOK_PORT=${EDDY_DEMO_HOOK_PORT:-8099}
API_PORT=${EDDY_DEMO_API_PORT:-8098}
export EDDY_URL=http://127.0.0.1:$PORT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

mkdir -p "$DATA"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

step "eddy up: redis-server + gateway + worker + controller, one process"
EDDY_DATA_DIR=$DATA EDDY_CACHE_DIR=$DATA/artifacts EDDY_LISTEN=127.0.0.1:$PORT \
  EDDY_CALLBACK_ALLOWLIST=127.0.0.1 EDDY_OUTBOUND_ALLOWLIST=127.0.0.1 EDDY_LOG=warn \
  "$EDDY" up 2> "$DATA/up.log" &
pids+=($!)
for _ in $(seq 300); do grep -q "eddy up: ready" "$DATA/up.log" 2>/dev/null && break; sleep 0.1; done
grep "eddy up:" "$DATA/up.log"
export EDDY_KEY=$(cat "$DATA/admin-key")

step "create a tenant (admin key); its key and webhook secret come back once"
TENANT=demo-$RANDOM
"$EDDY" tenant create "$TENANT" --max-pending 100000 -o json > "$DATA/tenant.json"
export EDDY_KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$DATA/tenant.json")
SECRET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["webhook_secret"])' "$DATA/tenant.json")
echo "tenant $TENANT, key ${EDDY_KEY:0:16}…"

step "deploy wordcount and fanout (validated and precompiled before they are accepted)"
"$EDDY" deploy wordcount $W/wordcount.wasm --timeout-ms 2000
"$EDDY" deploy fanout $W/fanout.wasm

step "sync invoke: the answer is the processor's output"
"$EDDY" invoke wordcount --data '{"text":"the quick brown fox jumps over the lazy dog and the cat"}'; echo

step "async invoke with a callback: 202 now, a signed POST when it is done"
python3 scripts/webhook_receiver.py "$HOOK_PORT" "$SECRET" &
pids+=($!)
sleep 0.3
"$EDDY" invoke wordcount --async --callback "http://127.0.0.1:$HOOK_PORT/hook" --data '{"text":"async and signed"}'
sleep 1

step "a run: fanout B=4 D=5 emits follow-ups until depth 5 (1,365 invocations)"
RUN=$("$EDDY" invoke fanout --async --run-callback "http://127.0.0.1:$HOOK_PORT/hook" \
  --data '{"branch":4,"depth":5}' -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
"$EDDY" runs "$RUN" --watch
"$EDDY" runs "$RUN"
sleep 0.5

step "real work: fetch a document, classify its sections (a bearer token from a secret), index each in a follow-up"
TOKEN=demo-token-$RANDOM$RANDOM
python3 scripts/demo_api.py "$API_PORT" "$TOKEN" > "$DATA/api.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$API_PORT") 2>/dev/null && break; sleep 0.1; done
API=http://127.0.0.1:$API_PORT
"$EDDY" deploy ingest $W/ingest.wasm --allow-host "$API" --timeout-ms 5000
"$EDDY" var set CLASSIFIER_URL "$API/classify" -f ingest
"$EDDY" var set INDEX_URL "$API/index" -f ingest
printf '%s' "$TOKEN" | "$EDDY" var set CLASSIFIER_TOKEN --secret -f ingest
"$EDDY" var ls -f ingest
RUN=$("$EDDY" invoke ingest --async --data "{\"url\":\"$API/docs/report.md\"}" -o json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
"$EDDY" runs "$RUN" --watch
"$EDDY" invocation "$RUN"
echo "what the local API received:"
sed 's/^/  /' "$DATA/api.log"

step "a schedule: the same document every 2 seconds (cron with seconds, UTC); each tick is a run"
"$EDDY" schedule create report --cron "*/2 * * * * *" --function ingest \
  --data "{\"url\":\"$API/docs/report.md\"}"
sleep 4.5
"$EDDY" schedule show report
"$EDDY" schedule rm report

step "bad input gets a clear error"
"$EDDY" invoke nope || true
printf '\0asm\1\0\0\0' > "$DATA/core.wasm"
"$EDDY" deploy broken "$DATA/core.wasm" || true

step "the sandbox at its limits (eddy run: the same runtime, locally)"
"$EDDY" run $W/fx_loop.wasm --timeout-ms 100 | grep '^error' || true
"$EDDY" run $W/fx_memhog.wasm --memory-mb 16 | grep '^error' || true
"$EDDY" run $W/fx_emitbomb.wasm | grep '^error' || true

step "done: Ctrl-C-free shutdown (SIGTERM drains the worker, then stops redis)"
kill -TERM "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
pids=("${pids[@]:1}")
echo "Run it yourself: target/release/eddy up   (then: eddy --help)"

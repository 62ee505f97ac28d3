#!/usr/bin/env bash
# The dashboard (/ui) in a real browser, end to end: installs what it needs
# when missing (Debian's `chromium`, `playwright-core` from npm into
# tests/ui/node_modules; the release `eddy` and the guests are built if
# absent), starts `eddy up` with its own data dir in a temp dir on free ports,
# creates a tenant, deploys fanout (and fx-fail, for a dead letter), then runs
# tests/ui/ui.test.mjs: headless Chromium opens /ui#key=<tenant key>, starts a
# fanout run from the page and waits for 100 % and moving counters. Saves
# ${CI_ARTIFACTS:-.eddy/artifacts}/dashboard.png (and docs/dashboard.png with
# UI_SCREENSHOT_DOCS=1).
# Last line: `1 passed, 0 failed` or `0 passed, 1 failed`; exit code to match.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)
EDDY=$ROOT/target/release/eddy
W=$ROOT/functions/target/wasm32-wasip2/release
say() { printf 'ui-test: %s\n' "$*" >&2; }
fail() { say "$*"; echo "0 passed, 1 failed"; exit 1; }

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
if [ ! -x /usr/bin/chromium ]; then
  say "installing chromium (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
    || fail "could not install chromium"
fi
if ! command -v redis-server >/dev/null 2>&1 || ! command -v rustup >/dev/null 2>&1; then
  scripts/setup.sh
fi
if [ ! -f tests/ui/node_modules/playwright-core/package.json ]; then
  say "installing playwright-core (npm)"
  (cd tests/ui && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; \
    else npm install --no-audit --no-fund --loglevel=error; fi) || fail "npm install failed"
fi
if [ ! -f "$W/fanout.wasm" ] || [ ! -f "$W/fx_fail.wasm" ]; then
  say "building the guests"
  make functions >/dev/null
fi
if [ ! -x "$EDDY" ]; then
  say "building eddy"
  cargo build --release -p eddy-cli
fi
T_SETUP=$(date +%s)

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
TMP=$(mktemp -d -t eddy-ui.XXXXXX)
PORT=$(free_port)
RPORT=$(free_port)
ADMIN="ui-admin-$RANDOM$RANDOM"
UP_PID=""
cleanup() {
  if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
    kill -TERM "$UP_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

say "eddy up on 127.0.0.1:$PORT (redis on $RPORT, data in $TMP)"
EDDY_DATA_DIR=$TMP/data EDDY_CACHE_DIR=$TMP/data/artifacts EDDY_LISTEN=127.0.0.1:$PORT \
  EDDY_REDIS_PORT=$RPORT EDDY_ADMIN_KEY=$ADMIN EDDY_LOG=warn \
  "$EDDY" up 2> "$TMP/up.log" &
UP_PID=$!
for _ in $(seq 300); do
  grep -q "eddy up: ready" "$TMP/up.log" 2>/dev/null && break
  kill -0 "$UP_PID" 2>/dev/null || { cat "$TMP/up.log" >&2; fail "eddy up exited"; }
  sleep 0.1
done
grep -q "eddy up: ready" "$TMP/up.log" || { cat "$TMP/up.log" >&2; fail "eddy up did not get ready"; }

export EDDY_URL=http://127.0.0.1:$PORT
TENANT=ui-$RANDOM
EDDY_KEY=$ADMIN "$EDDY" tenant create "$TENANT" -o json > "$TMP/tenant.json" || fail "creating the tenant"
KEY=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).key)' "$TMP/tenant.json")
EDDY_KEY=$KEY "$EDDY" deploy fanout "$W/fanout.wasm" >/dev/null || fail "deploying fanout"
EDDY_KEY=$KEY "$EDDY" deploy fx-fail "$W/fx_fail.wasm" --max-retries 0 >/dev/null || fail "deploying fx-fail"
EDDY_KEY=$KEY "$EDDY" invoke fx-fail --async >/dev/null || fail "invoking fx-fail"
EDDY_KEY=$KEY "$EDDY" schedule create nightly --cron "0 3 * * *" --function fanout >/dev/null \
  || fail "creating a schedule"
say "tenant $TENANT ready: fanout and fx-fail deployed, a nightly schedule"

# The browser test prints the timings and, last, its `N passed, N failed`.
EDDY_UI_KEY=$KEY EDDY_UI_TENANT=$TENANT EDDY_ROOT=$ROOT EDDY_UI_LOG=$TMP/up.log \
  EDDY_UI_T0=$T0 EDDY_UI_T_SETUP=$T_SETUP EDDY_UI_T_PLATFORM=$(date +%s) \
  CI_ARTIFACTS=${CI_ARTIFACTS:-$ROOT/.eddy/artifacts} node tests/ui/ui.test.mjs

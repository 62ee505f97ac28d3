#!/usr/bin/env bash
# Fuzzes the HTTP API from its own description: schemathesis (PyPI, pinned)
# generates requests from `GET /openapi.json` of a real `eddy up` and sends them
# with a tenant's key and with the admin key. Every answer must be a
# deliberate one: a 5xx fails the run (`not_a_server_error`).
#
# Needs target/release/eddy and the guests (`make build`). Python tools live in
# a cached venv (${EDDY_VENV_FUZZ:-.eddy/venv-fuzz}), installed on first use.
# The two operations whose bodies schemathesis cannot produce (a WebAssembly
# component, NDJSON) are left out; the e2e tests cover them.
set -euo pipefail

start=$(date +%s)
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))
cd "$top"
VENV=${EDDY_VENV_FUZZ:-.eddy/venv-fuzz}
case $VENV in /*) ;; *) VENV=$top/$VENV ;; esac
SCHEMATHESIS="schemathesis==4.32.5"
EXAMPLES=${EDDY_FUZZ_EXAMPLES:-30}

log() { printf 'api-fuzz: %s\n' "$*"; }

[ -x target/release/eddy ] || { log "build first: make build"; exit 2; }
ECHO=functions/target/wasm32-wasip2/release/echo.wasm
[ -f "$ECHO" ] || { log "build the guests first: make functions"; exit 2; }

if [ "$(cat "$VENV/.eddy-stamp" 2>/dev/null)" != "$SCHEMATHESIS" ] || [ ! -x "$VENV/bin/schemathesis" ]; then
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
      log "python3 -m venv failed: installing python3-venv"
      $sudo apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  log "installing $SCHEMATHESIS into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SCHEMATHESIS"
  printf '%s' "$SCHEMATHESIS" > "$VENV/.eddy-stamp"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
PORT=$(free_port)
ADMIN=fuzz-admin
EDDY_DATA_DIR=$TMP EDDY_CACHE_DIR=$TMP/artifacts EDDY_LISTEN=127.0.0.1:$PORT \
  EDDY_ADMIN_KEY=$ADMIN EDDY_LOG=warn target/release/eddy up 2>"$TMP/up.log" &
UP=$!
trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$TMP"' EXIT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 300); do
  grep -q "eddy up: ready" "$TMP/up.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "eddy up: ready" "$TMP/up.log" || { cat "$TMP/up.log"; log "eddy up did not start"; exit 1; }

# A tenant with a function, so that generated requests reach real handlers.
KEY=$(python3 - "$BASE" "$ADMIN" "$ECHO" <<'PY'
import json, sys, urllib.request
base, admin, wasm = sys.argv[1:]
def call(method, path, key, body, ctype):
    req = urllib.request.Request(base + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": ctype})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
key = call("POST", "/tenants", admin, json.dumps({"id": "fuzz"}).encode(), "application/json")["key"]
call("PUT", "/functions/echo", key, open(wasm, "rb").read(), "application/wasm")
print(key)
PY
)

status=0
for who in tenant admin; do
  if [ "$who" = tenant ]; then auth=$KEY; else auth=$ADMIN; fi
  log "as the $who: $EXAMPLES examples per operation"
  # From the temporary directory: schemathesis keeps a cache (.schemathesis)
  # where it runs.
  if ! (cd "$TMP" && "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
      -H "Authorization: Bearer $auth" \
      --checks not_a_server_error \
      --exclude-operation-id deploy --exclude-operation-id batch \
      --max-examples "$EXAMPLES" --seed 1 --no-color >"$TMP/$who.txt" 2>&1); then
    status=1
  fi
  grep -E "generated|passed|failed|Server error|ERRORS|FAILURES" "$TMP/$who.txt" | sed 's/^/  /' | head -20
  if [ $status != 0 ]; then
    cat "$TMP/$who.txt"
    break
  fi
done
log "finished in $(($(date +%s) - start))s (exit $status)"
exit $status

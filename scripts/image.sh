#!/usr/bin/env bash
# Builds the static `eddy` (x86_64-unknown-linux-musl) and the FROM scratch image,
# and with --smoke runs that image the way the chart does: a gateway, a worker and a
# controller, three containers of one image, against a redis-server of the test's own;
# the host's `eddy` client creates a tenant, deploys wordcount, invokes it sync and
# async, then the containers are stopped with SIGTERM and must exit 0 (drained).
#
#   scripts/image.sh            # build the binary and the image eddy:<version>
#   scripts/image.sh --smoke    # ... and smoke-test it (what `make test` runs)
#
# Installs what it needs when missing: the musl target (rustup), musl-tools (the
# static build's allocator, mimalloc, is C) and podman (Debian). With no container
# engine that works, --smoke prints why and exits 0 after checking the binary alone;
# IMAGE_REQUIRED=1 makes that a failure.
# Last line: `1 passed, 0 failed` or `0 passed, 1 failed` (--smoke).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=x86_64-unknown-linux-musl
BIN=$ROOT/target/$TARGET/release/eddy
HOST_EDDY=$ROOT/target/release/eddy
W=$ROOT/functions/target/wasm32-wasip2/release
SMOKE=0
[ "${1:-}" = --smoke ] && SMOKE=1
say() { printf 'image: %s\n' "$*" >&2; }
fail() { say "$*"; [ $SMOKE = 1 ] && echo "0 passed, 1 failed"; exit 1; }
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_install() {
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# --- the static binary ---------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx $TARGET; then
  say "adding the $TARGET target"
  rustup target add $TARGET
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
  say "installing musl-tools (apt)"
  apt_install musl-tools || fail "could not install musl-tools"
fi
T0=$(date +%s)
cargo build --release --locked --target $TARGET -p eddy-cli --bin eddy
say "static build: $(( $(date +%s) - T0 )) s"
# Static: no program interpreter, no shared libraries.
if readelf -l "$BIN" | grep -q 'Requesting program interpreter' || readelf -d "$BIN" | grep -q NEEDED; then
  fail "$BIN is not static: $(readelf -d "$BIN" | grep NEEDED | tr -s ' ' | head -3)"
fi
"$BIN" --version >/dev/null || fail "$BIN does not run"
BIN_BYTES=$(stat -c %s "$BIN")
say "static eddy: $BIN_BYTES bytes ($(( BIN_BYTES / 1048576 )) MiB)"

# --- the image -------------------------------------------------------------------
engine() {
  if command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then echo podman; return; fi
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; return; fi
  return 1
}
ENGINE=$(engine || true)
if [ -z "$ENGINE" ] && command -v apt-get >/dev/null 2>&1; then
  say "no container engine: installing podman (apt)"
  apt_install podman || true
  ENGINE=$(engine || true)
fi
if [ -z "$ENGINE" ]; then
  [ "${IMAGE_REQUIRED:-0}" = 1 ] && fail "no working container engine (podman or docker)"
  say "SKIPPED the image: no working container engine (podman or docker); the static binary was checked"
  [ $SMOKE = 1 ] && echo "0 passed, 0 failed (skipped: no container engine)"
  exit 0
fi
VERSION=$("$BIN" --version | awk '{print $2}')
TAG=eddy:$VERSION
CTX=$(mktemp -d -t eddy-image.XXXXXX)
cp Dockerfile "$CTX/Dockerfile"
cp "$BIN" "$CTX/eddy"
mkdir "$CTX/cache"
T0=$(date +%s)
$ENGINE build -q -t "$TAG" "$CTX" >/dev/null || { rm -rf "$CTX"; fail "$ENGINE build failed"; }
rm -rf "$CTX"
IMAGE_BYTES=$($ENGINE image inspect "$TAG" --format '{{.Size}}')
say "image $TAG: $IMAGE_BYTES bytes ($(( IMAGE_BYTES / 1048576 )) MiB), built in $(( $(date +%s) - T0 )) s with $ENGINE"
[ $SMOKE = 1 ] || exit 0

# The engine's default OCI runtime may not run here (crun refuses a cgroup v1/v2
# hybrid host): fall back to runc, installing it when missing.
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
RUNTIME=()
RUN_ERR=$(mktemp -t eddy-image-run.XXXXXX)
if ! $ENGINE run --rm "${LIMITS[@]}" "$TAG" --version >/dev/null 2>"$RUN_ERR"; then
  [ "$ENGINE" = podman ] || fail "$ENGINE cannot run the image: $(cat "$RUN_ERR")"
  command -v runc >/dev/null 2>&1 || apt_install runc || true
  say "the default runtime failed ($(tail -1 "$RUN_ERR")); trying runc"
  RUNTIME=(--runtime runc)
  podman "${RUNTIME[@]}" run --rm "${LIMITS[@]}" "$TAG" --version >/dev/null \
    || fail "podman cannot run the image with runc either"
fi
rm -f "$RUN_ERR"

# --- the smoke test: the chart's three roles from the image -------------------------
if [ ! -x "$HOST_EDDY" ]; then cargo build --release -p eddy-cli; fi
if [ ! -f "$W/wordcount.wasm" ]; then make functions >/dev/null; fi
command -v redis-server >/dev/null 2>&1 || scripts/setup.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
TMP=$(mktemp -d -t eddy-smoke.XXXXXX)
RPORT=$(free_port); GPORT=$(free_port); CPORT=$(free_port); WPORT=$(free_port)
ADMIN="smoke-admin-$RANDOM$RANDOM"
NAME="eddy-smoke-$$"
REDIS_PID=""
cleanup() {
  for role in gateway worker controller; do
    $ENGINE "${RUNTIME[@]}" rm -f -t 0 "$NAME-$role" >/dev/null 2>&1 || true
  done
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$RPORT" ping >/dev/null 2>&1 || fail "redis-server did not start: $(tail -3 "$TMP/redis.log")"

# Host networking: the containers reach the test's Redis on loopback, as the pods of
# the chart reach its Service.
run_role() { # role, extra env...
  local role=$1; shift
  $ENGINE "${RUNTIME[@]}" run -d --name "$NAME-$role" --network host "${LIMITS[@]}" \
    -e REDIS_URL="redis://127.0.0.1:$RPORT" -e EDDY_ADMIN_KEY="$ADMIN" -e EDDY_LOG=info \
    "$@" "$TAG" "$role" >/dev/null || fail "$ENGINE run $role failed"
}
run_role gateway -e EDDY_LISTEN="127.0.0.1:$GPORT"
run_role worker -e EDDY_METRICS_LISTEN="127.0.0.1:$WPORT"
run_role controller -e EDDY_CONTROLLER_LISTEN="127.0.0.1:$CPORT"

# 2xx from a URL (python3: no curl on a bare machine).
up() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" >/dev/null 2>&1; }
for _ in $(seq 150); do
  up "http://127.0.0.1:$GPORT/readyz" && up "http://127.0.0.1:$WPORT/readyz" \
    && up "http://127.0.0.1:$CPORT/replicas" && break
  sleep 0.2
done
for pair in "gateway http://127.0.0.1:$GPORT/readyz" "worker http://127.0.0.1:$WPORT/readyz" \
            "controller http://127.0.0.1:$CPORT/replicas"; do
  set -- $pair
  up "$2" || fail "the $1 container is not ready at $2: $($ENGINE logs --tail 5 "$NAME-$1" 2>&1)"
done
say "gateway, worker and controller containers are ready"

export EDDY_URL=http://127.0.0.1:$GPORT
EDDY_KEY=$ADMIN "$HOST_EDDY" tenant create smoke -o json >"$TMP/tenant.json" || fail "tenant create failed"
EDDY_KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$TMP/tenant.json")
export EDDY_KEY
"$HOST_EDDY" deploy wordcount "$W/wordcount.wasm" >/dev/null || fail "deploy failed"
OUT=$("$HOST_EDDY" invoke wordcount --data '{"text":"one image for every role"}' -o json) \
  || fail "sync invoke failed: $OUT"
python3 - "$OUT" <<'EOF' || fail "unexpected sync answer: $OUT"
import json, sys
out = json.loads(sys.argv[1])
out = out.get("output", out)
assert out["words"] == 5, out
EOF
ACC=$("$HOST_EDDY" invoke wordcount --async --data '{"text":"async too"}' -o json) || fail "async invoke failed"
ID=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$ACC")
STATUS=""
for _ in $(seq 100); do
  STATUS=$("$HOST_EDDY" invocation "$ID" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  [ "$STATUS" = succeeded ] && break
  sleep 0.1
done
[ "$STATUS" = succeeded ] || fail "async invocation $ID is $STATUS"
say "sync and async invocations completed through the image's worker"

# SIGTERM: each role drains and exits 0.
for role in gateway worker controller; do
  $ENGINE "${RUNTIME[@]}" stop -t 30 "$NAME-$role" >/dev/null
  CODE=$($ENGINE inspect "$NAME-$role" --format '{{.State.ExitCode}}')
  [ "$CODE" = 0 ] || fail "$role exited $CODE after SIGTERM: $($ENGINE logs --tail 5 "$NAME-$role" 2>&1)"
done
say "every role exited 0 on SIGTERM"
echo "1 passed, 0 failed"

# Sourced by the issue-5 scripts (w5-*.sh): starts a private `eddy up` (its
# own redis-server, AOF on as `eddy up` has it) and waits until it is ready.
# Arguments are extra VAR=value settings for it. Sets DIR (its data), PORT
# (the gateway's), UP (its pid), REDIS_PORT and REDISCLI_AUTH (its Redis's
# password, which redis-cli and order_trickle.py read), and an EXIT trap that stops
# it and removes DIR (w5_on_exit adds to that trap).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# EDDY_BIN picks the binary (default: this checkout's release build).
export EDDY_BIN=${EDDY_BIN:-target/release/eddy}
[ -x "$EDDY_BIN" ] || make build
w5_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
W5_EXIT=""
w5_on_exit() { W5_EXIT="$W5_EXIT; $1"; }
w5_up() {
  DIR=$(mktemp -d)
  PORT=$(w5_free_port)
  env "$@" EDDY_DATA_DIR="$DIR" EDDY_CACHE_DIR="$DIR/artifacts" EDDY_LISTEN="127.0.0.1:$PORT" \
    EDDY_ADMIN_KEY=bench-admin EDDY_LOG=warn "$EDDY_BIN" up 2> "$DIR/up.log" &
  UP=$!
  trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$DIR"'"$W5_EXIT" EXIT
  for _ in $(seq 200); do grep -q "eddy up: ready" "$DIR/up.log" 2>/dev/null && break; sleep 0.05; done
  sleep 0.5
  REDIS_PORT=$(grep -o 'port=[0-9]*' "$DIR/redis/redis.log" | head -1 | cut -d= -f2)
  REDISCLI_AUTH=$(cat "$DIR/redis-password")
  export REDISCLI_AUTH
}

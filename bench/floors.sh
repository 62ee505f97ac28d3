#!/usr/bin/env bash
# What an invocation costs at the least on this machine, part by part, measured
# in the same session as W1 (bench/w1-throughput.sh), so that W1's CPU per
# invocation can be read against it:
#
#   http     the gateway's own HTTP floor: `eddy gateway` answering
#            `GET /healthz` to wrk (64 connections, keep-alive): requests/s and
#            gateway CPU µs per request (no auth, no JSON, no Redis)
#   redis    the Redis commands one invocation needs, without Lua and
#            pipelined: XADD of the entry (~450 B), HSET (6 fields) + EXPIRE of
#            its record, its share of XREADGROUP (COUNT 64), XACK, HSET of the
#            result (6 fields) + HINCRBY; Redis CPU µs per invocation
#   sandbox  a fresh instance of wordcount (criterion, `make bench-runtime`)
#
#   bench/floors.sh            # N=50000
#
# Installs wrk from the system packages when missing (the http part is skipped
# if it cannot). Prints one markdown table.
source "$(dirname "$0")/lib.sh"
N=${N:-50000}

bench_setup_min() {
    bench_build
    RUN_DIR=$BENCH_OUT/run-floors-$(date -u +%Y%m%dT%H%M%SZ)-$$
    mkdir -p "$RUN_DIR"
    bench_start_redis
    bench_baseline
}

bench_setup_min

# --- redis: the commands of N invocations, pipelined, no Lua
redis_us=$(python3 - "$REDIS_PORT" "$N" <<'PY'
import socket, sys, os
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
def run(cmds, per=256):
    # send in pipelined chunks, read every reply (count top-level replies)
    for i in range(0, len(cmds), per):
        chunk = cmds[i:i + per]
        s.sendall(b"".join(chunk))
        need, buf = len(chunk), b""
        while need:
            buf += s.recv(1 << 20)
            need = len(chunk) - count_replies(buf)
    return
def count_replies(buf):
    # enough for this script: replies are simple strings, integers, bulk
    # strings, or arrays of those (XREADGROUP); walk them
    i, n = 0, 0
    def one(i):
        t = buf[i:i + 1]
        j = buf.find(b"\r\n", i)
        if j < 0: raise IndexError
        if t in (b"+", b"-", b":"):
            return j + 2
        if t == b"$":
            l = int(buf[i + 1:j])
            if l < 0: return j + 2
            if len(buf) < j + 2 + l + 2: raise IndexError
            return j + 2 + l + 2
        if t == b"*":
            l = int(buf[i + 1:j]); k = j + 2
            for _ in range(max(l, 0)): k = one(k)
            return k
        raise ValueError(t)
    try:
        while i < len(buf):
            i = one(i); n += 1
    except IndexError:
        pass
    return n
def cpu():
    s.sendall(cmd("INFO", "cpu"))
    data = b""
    while b"used_cpu_user:" not in data or not data.endswith(b"\r\n"):
        data += s.recv(65536)
        if data.count(b"\r\n") > 8 and b"used_cpu_user_children" in data: break
    d = dict(l.split(":", 1) for l in data.decode().splitlines() if ":" in l)
    return float(d["used_cpu_sys"]) + float(d["used_cpu_user"])
env, payload = b"e" * 250, b"p" * 200
ids = [os.urandom(16).hex() for _ in range(n)]
run([cmd("XGROUP", "CREATE", "floor:q", "workers", "$", "MKSTREAM")])
c0 = cpu()
run([cmd("XADD", "floor:q", "*", "e", env, "p", payload) for _ in range(n)])
run([c for i in ids for c in (
    cmd("HSET", "floor:inv:" + i, "status", "queued", "function", "wordcount", "version", 1,
        "created", 1796250674903, "max_depth", 10, "max_inv", 10000),
    cmd("EXPIRE", "floor:inv:" + i, 86400))])
entries = []
while len(entries) < n:
    s.sendall(cmd("XREADGROUP", "GROUP", "workers", "c", "COUNT", 64, "STREAMS", "floor:q", ">"))
    buf = b""
    while count_replies(buf) < 1:
        buf += s.recv(1 << 20)
    # entry ids look like "<ms>-<seq>"
    import re
    got = re.findall(rb"\$\d+\r\n(\d+-\d+)\r\n", buf)
    if not got: break
    entries += got
out = b'{"words":42}'
outcome = b'{"timings":{"queue_wait_us":1000,"instantiate_us":3,"run_us":3},"logs":[],"worker":"w"}'
run([c for e, i in zip(entries, ids) for c in (
    cmd("XACK", "floor:q", "workers", e),
    cmd("HSET", "floor:inv:" + i, "status", "succeeded", "completed", 1796250674999,
        "outcome", outcome, "output", out, "ct", "application/json", "attempt", 1),
    cmd("HINCRBY", "floor:inv:" + i, "completions", 1))])
c1 = cpu()
print(f"{(c1 - c0) * 1e6 / n:.1f}")
PY
)
log "redis floor: $redis_us µs of Redis CPU per invocation (commands without Lua, pipelined)"

# --- http: the gateway answering /healthz to wrk
http_rps=- http_us=-
command -v wrk >/dev/null 2>&1 || { log "installing wrk"; (apt-get install -y wrk >/dev/null 2>&1 || sudo apt-get install -y wrk >/dev/null 2>&1) || true; }
if command -v wrk >/dev/null 2>&1; then
    GATEWAY_PORT=$(free_port)
    start gateway "$RUN_DIR/gateway.log" env REDIS_URL="$REDIS_URL" EDDY_LISTEN="127.0.0.1:$GATEWAY_PORT" \
        EDDY_ADMIN_KEY=floor EDDY_CACHE_DIR="$RUN_DIR/artifacts" EDDY_THREADS="${BENCH_THREADS:-1}" EDDY_LOG=warn "$EDDY" gateway
    wait_for 30 "gateway" curl -sf "http://127.0.0.1:$GATEWAY_PORT/healthz"
    gw=${BENCH_PIDS[gateway]}
    t0=$(cpu_ticks "$gw")
    out=$(wrk -t1 -c64 -d5s "http://127.0.0.1:$GATEWAY_PORT/healthz")
    t1=$(cpu_ticks "$gw")
    reqs=$(printf '%s\n' "$out" | awk '/requests in/ { print $1 }')
    http_rps=$(printf '%s\n' "$out" | awk '/Requests\/sec/ { print $2 }')
    http_us=$(python3 -c "print(f'{($t1 - $t0) / $CLK_TCK * 1e6 / $reqs:.1f}')")
    log "http floor: $http_rps req/s, gateway $http_us µs CPU per request"
else
    log "no wrk: http floor skipped"
fi

# --- sandbox: criterion's fresh-instance wordcount
est=$BENCH_ROOT/target/criterion/invoke/fresh_instance_wordcount/new/estimates.json
if [ "${FLOORS_BENCH_RUNTIME:-1}" = 1 ]; then
    (cd "$BENCH_ROOT" && cargo bench -p eddy-runtime --bench invoke -- "fresh_instance/wordcount" \
        --warm-up-time 1 --measurement-time 3 >/dev/null 2>&1) || true
fi
sandbox_us=$(python3 -c "import json; print(f\"{json.load(open('$est'))['median']['point_estimate']/1000:.1f}\")" 2>/dev/null || echo -)
log "sandbox floor: $sandbox_us µs (fresh-instance wordcount, median)"

python3 - "$XADD_PER_SEC" "$http_us" "$redis_us" "$sandbox_us" "$http_rps" <<'PY'
import sys
xadd, http, redis, sandbox, rps = sys.argv[1:6]
def f(x):
    try: return float(x)
    except ValueError: return None
parts = [("HTTP (gateway, /healthz to wrk)", f(http)), ("Redis (the invocation's commands, no Lua)", f(redis)), ("sandbox (fresh wordcount)", f(sandbox))]
print("\n| part | floor, µs of CPU per invocation |\n|---|---|")
for name, v in parts:
    print(f"| {name} | {v if v is not None else '-'} |")
known = [v for _, v in parts if v is not None]
total = sum(known)
print(f"| **sum** | **{total:.1f}** |")
print(f"\nOn 2 cores the sum allows at most {2e6 / total:,.0f} invocations/s (before any client, and "
      f"with nothing else costing anything); the W1 target, 10% of XADD -P16 here, is {float(xadd) / 10:,.0f}/s. "
      f"wrk's /healthz rate: {rps} req/s.")
PY

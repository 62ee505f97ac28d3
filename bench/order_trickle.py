#!/usr/bin/env python3
"""What a sync call finds in Redis during another tenant's burst, counted in
commands rather than in time (`bench/w5-order.sh` runs it).

Tenant B sends a trickle of sync `wordcount` calls (one every 20 ms) while
tenant A's burst of N short invocations goes through the batch endpoint.
While the burst is being accepted, Redis's `MONITOR` records for a few
seconds every command in the order Redis executed it. For each trickle call
(its enqueue script, then its completion script) this counts the burst's
script calls that Redis executed between the two: its bulk enqueues (the
batch endpoint's 16-line chunks) and its completions (the worker's group
commits). Each is a stretch of single-threaded Redis that the trickle's
completion may have waited behind. Counts do not depend on how fast the
machine is at the moment, which a noisy VM makes of every timing; MONITOR
itself slows Redis, equally for any build.

With `--via posts` the burst is N single async POSTs (`eddy-bench
throughput`, 64 in flight: the gateway's group commit) instead of one batch.

usage: order_trickle.py URL ADMIN_KEY REDIS_PORT [--burst N] [--monitor-s S] [--via batch|posts]
Standard library only. Prints one JSON document.
"""
import hashlib
import http.client
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

from w5client import burst_and_trickle, call

URL, ADMIN, REDIS_PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
BURST = int(sys.argv[sys.argv.index("--burst") + 1]) if "--burst" in sys.argv else 100_000
VIA = sys.argv[sys.argv.index("--via") + 1] if "--via" in sys.argv else "batch"
MONITOR_S = float(sys.argv[sys.argv.index("--monitor-s") + 1]) if "--monitor-s" in sys.argv else 2.0
U = urllib.parse.urlparse(URL)
SHA = {
    hashlib.sha1(open(f"queue/src/lua/{n}.lua", "rb").read()).hexdigest(): n
    for n in ("enqueue", "complete")
}


def conn():
    return http.client.HTTPConnection(U.hostname, U.port, timeout=120)


c = conn()
stamp, keys = burst_and_trickle(c, ADMIN)


def trickle(stop):
    tc = conn()
    while not stop.is_set():
        s, _ = call(tc, "POST", "/invoke/wordcount", keys["trickle"], b'{"text":"trickle words"}')
        assert s == 200, s
        time.sleep(0.02)


def burst():
    if VIA == "posts":
        subprocess.run([os.environ.get("EDDY_BENCH_BIN", "target/release/eddy-bench"), "throughput",
                        "-f", "work", "-n", str(BURST), "-c", "64", "--payload", '{"ms":0}',
                        "--url", URL, "--key", keys["burst"], "-q"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    bc = conn()
    body = "\n".join('{"ms":0}' for _ in range(BURST)).encode()
    s, _ = call(bc, "POST", "/invoke/work/batch", keys["burst"], body)
    assert s == 200, s


for _ in range(20):  # the trickle's stream warm, the lane's held read open
    call(c, "POST", "/invoke/wordcount", keys["trickle"], b'{"text":"warm"}')
mp = multiprocessing.get_context("fork")
stop = mp.Event()
t = mp.Process(target=trickle, args=(stop,))
t.start()
time.sleep(0.2)
b = mp.Process(target=burst)
b.start()
time.sleep(0.5)
r = socket.create_connection(("127.0.0.1", REDIS_PORT))
# `eddy up`'s Redis has a password (w5-up.sh exports it).
password = os.environ.get("REDISCLI_AUTH", "")
if password:
    r.sendall(f"AUTH {password}\r\n".encode())
r.sendall(b"MONITOR\r\n")
raw, until = [], time.time() + MONITOR_S
r.settimeout(0.2)
while time.time() < until:
    try:
        chunk = r.recv(1 << 20)
    except socket.timeout:
        continue
    if not chunk:
        break
    raw.append(chunk)
r.close()
b.join()
stop.set()
t.join()

# One line per command: `+<ts> [<db> <client>] "CMD" "arg" ...`; commands
# run by a script show `lua` as the client and are left out.
head = re.compile(rb'^\+[0-9.]+ \[\d+ ([^\]]+)\] "(?i:evalsha)" "([0-9a-f]{40})" "(\d+)" "([^"]*)"')
events = []  # (tenant, script) in execution order
for line in b"".join(raw).split(b"\r\n"):
    m = head.match(line)
    if not m or m.group(1) == b"lua":
        continue
    script = SHA.get(m.group(2).decode())
    first_key = m.group(4).decode()
    tenant = "trickle" if f"trickle-{stamp}" in first_key else "burst" if f"burst-{stamp}" in first_key else None
    if script and tenant:
        events.append((tenant, script))

calls, current = [], None
for tenant, script in events:
    if tenant == "trickle" and script == "enqueue":
        current = {"enqueue": 0, "complete": 0}
    elif tenant == "trickle" and script == "complete" and current is not None:
        calls.append(current)
        current = None
    elif tenant == "burst" and current is not None:
        current[script] += 1


def summary(xs):
    xs = sorted(xs)
    return {"mean": round(sum(xs) / len(xs), 2), "p50": xs[len(xs) // 2], "max": xs[-1]} if xs else None


print(json.dumps({
    "burst": BURST, "via": VIA, "monitor_s": MONITOR_S,
    "scripts_seen": {"burst": sum(1 for t, _ in events if t == "burst"),
                     "trickle": sum(1 for t, _ in events if t == "trickle")},
    "trickle_calls": len(calls),
    "burst_enqueues_between": summary([x["enqueue"] for x in calls]),
    "burst_completions_between": summary([x["complete"] for x in calls]),
}, indent=2))

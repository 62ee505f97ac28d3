"""What the bulk yield costs a bulk tenant: its async throughput while
another tenant's sync calls wait all the time, against none.

usage: mixed.py URL ADMIN [--n N] [--sync C] [--via posts|batch]

Creates the two tenants of w5client.burst_and_trickle. Then, with C sync
callers of the trickle tenant back to back (0 = none), sends N async
invocations of the burst tenant's `work` ({"ms":0}) with `eddy-bench`:
single POSTs, 64 in flight (`--via posts`, the gateway's group commit), or
the batch endpoint, 1,000 lines a request, 4 in flight (`--via batch`).
Prints one JSON line: the burst's accept and end-to-end throughput, and the
sync calls' count and latency percentiles over the same time, overall and
split by the phase each call started in: `before` (callers started, the
burst not yet), `accept` (the burst being posted), `drain` (all accepted,
not all complete), `after` (the burst complete). The split tells a change
in the mix of phases (a slower acceptance holds more of the samples) from
a change within a phase.
"""
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import time
import urllib.parse

from w5client import burst_and_trickle, call

URL, ADMIN = sys.argv[1], sys.argv[2]


def arg(name, default, kind=int):
    return kind(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


N, SYNC, VIA = arg("--n", 50_000), arg("--sync", 1), arg("--via", "posts", str)
U = urllib.parse.urlparse(URL)


def conn():
    return http.client.HTTPConnection(U.hostname, U.port, timeout=120)


c = conn()
stamp, keys = burst_and_trickle(c, ADMIN)
for _ in range(20):  # the trickle's stream warm, the lane's held read open
    call(c, "POST", "/invoke/wordcount", keys["trickle"], b'{"text":"warm"}')


def caller(stop, out):
    tc, lat = conn(), []
    while not stop.is_set():
        at, t0 = time.time(), time.perf_counter()  # wall clock: the bench's own stamps
        s, _ = call(tc, "POST", "/invoke/wordcount", keys["trickle"], b'{"text":"sync words"}')
        assert s == 200, s
        lat.append((at, time.perf_counter() - t0))
    out.put(lat)


mp = multiprocessing.get_context("fork")
stop, out = mp.Event(), mp.Queue()
callers = [mp.Process(target=caller, args=(stop, out)) for _ in range(SYNC)]
for p in callers:
    p.start()
time.sleep(0.3)
scenario = ["throughput", "-c", "64"] if VIA == "posts" else ["bulk", "--batch-size", "1000", "-c", "4"]
try:
    # `eddy-bench` exits 1 when it saw problems (e.g. the burst did not
    # drain); its JSON still says what happened.
    r = subprocess.run(
        [os.environ.get("EDDY_BENCH_BIN", "target/release/eddy-bench"), *scenario, "-f", "work",
         "-n", str(N), "--payload", '{"ms":0}', "--url", URL, "--key", keys["burst"], "-q", "-o", "json"],
        capture_output=True, text=True)
finally:
    stop.set()
samples = [x for _ in callers for x in out.get()]
for p in callers:
    p.join()
if not r.stdout.strip():
    sys.exit(f"eddy-bench printed nothing (exit {r.returncode}): {r.stderr.strip()}")
b = json.loads(r.stdout)
done = b.get("completion", {})
# The phases' edges on the wall clock, from the bench's own stamps; an edge
# it could not see is None, and the calls past it count as `unknown`.
started = done.get("started_at_ms")
started = started / 1e3 if started else None  # the bench's first request
accept_s = b.get("accept", {}).get("seconds")
accepted_at = started + accept_s if started and accept_s is not None else None
# The last completion among the records the bench sampled (a random sample
# plus the last accepted ids): the drain's end, or a little before it.
last = done.get("last_completed_at_ms")
drained_at = last / 1e3 if last else None


def phase(t0):
    for name, edge in (("before", started), ("accept", accepted_at), ("drain", drained_at)):
        if edge is None:
            return "unknown"
        if t0 < edge:
            return name
    return "after"


def pct(lat, q):
    return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None


lat = sorted(d for _, d in samples)
phases = {}
for name in ("before", "accept", "drain", "after", "unknown"):
    ds = sorted(d for t0, d in samples if phase(t0) == name)
    phases[name] = {"calls": len(ds), "p50_ms": pct(ds, 0.5), "p99_ms": pct(ds, 0.99)}


print(json.dumps({
    "n": N, "via": VIA, "sync_callers": SYNC, "bulk_yield": os.environ.get("EDDY_BULK_YIELD", "1"),
    "accept_per_sec": b.get("accept", {}).get("per_sec"),
    "end_to_end_per_sec": b.get("completion", {}).get("per_sec"),
    "sync_calls": len(lat), "sync_p50_ms": pct(lat, 0.5), "sync_p99_ms": pct(lat, 0.99),
    "sync_by_phase": phases, "bench_exit": r.returncode, "problems": b.get("problems"),
}))

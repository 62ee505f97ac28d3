#!/usr/bin/env python3
"""Issue 5 figures against a running Eddy (`bench/w5-scale.sh` starts one):

  reaction  10,000 invocations land on a cold (scaled-to-zero) function via the
            batch endpoint; from the records: when the number of invocations
            running at once first reached the target concurrency, and when the
            backlog was drained. Concurrency is computed from each record's
            start (enqueued + queue wait) and end (completed), ms resolution.
  zero      after the idle timeout: warm concurrency 0 and the worker's RSS
            before/after (from `GET /status` heartbeats).
  fairness  tenant B sends a trickle of sync invocations (one every 20 ms);
            its p50/p99 while idle, then, from a separate process, during
            tenant A's burst of N: from just before the burst is posted
            (its acceptance included) until its backlog is empty. With
            --repeat K the burst is sent K times, one after the other; the
            trickle's samples of all K are pooled for the p99 (each burst's
            own ratio is listed too: alone, ~200-600 samples put the p99 on
            one of the 2-6 slowest calls). The idle samples (--trickle N in
            all) are taken in K windows, one before each burst (after the
            previous one drained and its function scaled to zero), so that
            idle and burst samples span the same stretch of time: a VM whose
            speed drifts over a minute moves both, not the ratio alone
            (`--idle-first` takes all N before the first burst instead, as
            sessions 1-7 did). The slowest calls are split by phase from
            their records.

usage: scale.py URL ADMIN_KEY [--burst N] [--trickle N] [--burst-ms MS] [--repeat K] [--idle-first]
Standard library only. Prints one JSON document.
"""
import http.client
import json
import statistics
import sys
import multiprocessing
import time
import urllib.parse

URL, ADMIN = sys.argv[1], sys.argv[2]
BURST = int(sys.argv[sys.argv.index("--burst") + 1]) if "--burst" in sys.argv else 10_000
TRICKLE = int(sys.argv[sys.argv.index("--trickle") + 1]) if "--trickle" in sys.argv else 200
# CPU time of each burst invocation (fx-busy spins this long; 0 = a trivial one).
BURST_MS = int(sys.argv[sys.argv.index("--burst-ms") + 1]) if "--burst-ms" in sys.argv else 1
REPEAT = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1
IDLE_FIRST = "--idle-first" in sys.argv
U = urllib.parse.urlparse(URL)


def conn():
    return http.client.HTTPConnection(U.hostname, U.port, timeout=60)


def call(c, method, path, key, body=None, headers=None, want=None):
    h = {"authorization": f"Bearer {key}"}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    if want is not None:
        want.append(r.getheader("x-eddy-invocation-id"))
    return r.status, data


def js(c, method, path, key, body=None, headers=None):
    s, d = call(c, method, path, key, body, headers)
    return s, (json.loads(d) if d else None)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else None


c = conn()
stamp = str(int(time.time()))
tenants = {}
for name in ("burst", "trickle"):
    s, t = js(c, "POST", "/tenants", ADMIN, json.dumps({"id": f"{name}-{stamp}"}))
    assert s == 201, (s, t)
    tenants[name] = t["key"]
wasm = open("functions/target/wasm32-wasip2/release/wordcount.wasm", "rb").read()
busy = open("functions/target/wasm32-wasip2/release/fx_busy.wasm", "rb").read()
for name, key, module, q in (
    ("work", tenants["burst"], busy, "?idle_timeout_ms=2000&max_concurrency=16"),
    ("wordcount", tenants["trickle"], wasm, "?idle_timeout_ms=60000"),
):
    s, _ = call(c, "PUT", f"/functions/{name}{q}", key, module)
    assert s == 201, s
out = {"burst": BURST, "burst_ms": BURST_MS}

# --- fairness baseline: trickle while idle
# lat gets (ms, invocation id) per call; stops after n calls, or once `stop`
# is set (the burst has drained: later samples would measure an idle worker).
# During the burst it runs in a process of its own, like a separate client:
# a thread here would share the interpreter lock with the drain poll.
def trickle(n, key, lat, stop=None):
    tc = conn()
    for _ in range(n):
        if stop is not None and stop.is_set():
            break
        ids = []
        wall, t0 = time.time() * 1000, time.perf_counter()
        s, _ = call(tc, "POST", "/invoke/wordcount", key, b'{"text":"trickle words"}', want=ids)
        lat.append(((time.perf_counter() - t0) * 1000, ids[0], wall))
        assert s == 200, s
        time.sleep(0.02)


def ms_of(samples):
    return [m for m, *_ in samples]


def slowest(samples, key, k=5):
    """Where the slowest calls' time went, from their records (ms)."""
    rows = []
    for m, i, _ in sorted(samples, reverse=True)[:k]:
        s, r = js(c, "GET", f"/invocations/{i}", key)
        t = r["timings"]
        server = r["completed_at_ms"] - r["created_at_ms"]
        rows.append({
            "client_ms": round(m, 2),
            "outside_record_ms": round(m - server, 2),
            "queue_wait_ms": t["queue_wait_us"] / 1000,
            "slot_wait_ms": t.get("slot_wait_us", 0) / 1000,
            "instantiate_run_ms": (t["instantiate_us"] + t["run_us"]) / 1000,
            "created_to_completed_ms": server,
        })
    return rows

idle_samples = []
def idle_window(r):
    """The idle samples due before burst r."""
    if IDLE_FIRST:
        n = TRICKLE if r == 0 else 0
    else:
        n = TRICKLE // REPEAT + (1 if r < TRICKLE % REPEAT else 0)
    if n and r > 0:
        # The previous burst's function back at zero (idle timeout 2 s),
        # its stream trimmed: nothing of the burst left running.
        t0 = time.time()
        while time.time() - t0 < 30:
            s, st = js(c, "GET", "/status", ADMIN)
            f = [x for x in st["functions"]
                 if x["function"] == "work" and x["tenant"] == f"burst-{stamp}"]
            if (not f or f[0]["concurrency"] == 0) and time.time() - t0 > 3:
                break
            time.sleep(0.2)
    trickle(n, tenants["trickle"], idle_samples)

# --- reaction: the function is cold (never run); a burst lands via batch
body = "\n".join(f'{{"ms":{BURST_MS}}}' for _ in range(BURST)).encode()
def trickle_process(n, key, stop, results):
    lat = []
    trickle(n, key, lat, stop)
    results.put(lat)


mp = multiprocessing.get_context("fork")
busy_samples, per_burst = [], []
for r in range(REPEAT):
    idle_window(r)
    drained, results, ready = mp.Event(), mp.Queue(), mp.Event()
    # The trickle runs from just before the burst is posted (its acceptance
    # is part of the burst) until the backlog is empty. `n` only bounds it.
    t = mp.Process(target=trickle_process, args=(100_000, tenants["trickle"], drained, results))
    t.start()
    time.sleep(0.05)
    t0_ms = time.time() * 1000
    s, data = call(c, "POST", "/invoke/work/batch", tenants["burst"], body)
    assert s == 200, s
    burst_accepted_ms = time.time() * 1000
    if r == 0:
        ids = [json.loads(l)["id"] for l in data.decode().splitlines() if l.strip()]
        assert len(ids) == BURST
        first_t0_ms, accepted_ms = t0_ms, time.time() * 1000
    # drain
    while True:
        s, f = js(c, "GET", "/functions/work", tenants["burst"])
        b = f["backlog"]
        if b["lag"] == 0 and b["pending"] == 0:
            break
        time.sleep(0.01)
    drained.set()
    got = results.get()
    t.join()
    busy_samples += got
    lat = ms_of(got)
    # While the burst was being accepted (the batch endpoint and Redis busy
    # with its enqueues) and after (the worker draining it).
    accepting = [m for m, _, w in got if w < burst_accepted_ms]
    draining = [m for m, _, w in got if w >= burst_accepted_ms]
    per_burst.append({
        "samples": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99),
        "p99_accepting": pct(accepting, 99), "p99_draining": pct(draining, 99),
        "drain_ms": round(time.time() * 1000 - t0_ms),
    })
t0_ms = first_t0_ms
idle_lat = ms_of(idle_samples)
out["trickle_idle_ms"] = {"samples": len(idle_lat), "p50": pct(idle_lat, 50), "p99": pct(idle_lat, 99)}
for b in per_burst:
    b["p99_ratio"] = round(b["p99"] / out["trickle_idle_ms"]["p99"], 2)
busy_lat = ms_of(busy_samples)
out["trickle_during_burst_ms"] = {
    "samples": len(busy_lat), "p50": pct(busy_lat, 50), "p99": pct(busy_lat, 99),
}
out["fairness_p99_ratio"] = round(out["trickle_during_burst_ms"]["p99"] / out["trickle_idle_ms"]["p99"], 2)
out["fairness_per_burst"] = per_burst
out["trickle_slowest_during_burst"] = slowest(busy_samples, tenants["trickle"])
out["trickle_slowest_idle"] = slowest(idle_samples, tenants["trickle"], 3)

# concurrency curve from the records
spans = []
for i in ids:
    s, r = js(c, "GET", f"/invocations/{i}", tenants["burst"])
    start = r["created_at_ms"] + r["timings"]["queue_wait_us"] / 1000
    spans.append((start, r["completed_at_ms"]))
first = min(s for s, _ in spans)
last_end = max(e for _, e in spans)
events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
running, peak, peak_at = 0, 0, None
for at, d in events:
    running += d
    if running > peak:
        peak, peak_at = running, at
target = 16  # the function's max_concurrency (the controller's cap)
reach = None
running = 0
for at, d in events:
    running += d
    if running >= min(target, peak):
        reach = at
        break
out["reaction"] = {
    "first_start_after_burst_ms": round(first - t0_ms, 1),
    "peak_concurrency": peak,
    "target_concurrency": target,
    "time_to_peak_after_first_start_ms": round((reach or first) - first, 1),
    "time_to_peak_after_burst_ms": round((reach or first) - t0_ms, 1),
    "drained_after_burst_ms": round(last_end - t0_ms, 1),
    "accept_ms": round(accepted_ms - t0_ms, 1),
}

# --- scale to zero: wait for concurrency 0 and compare worker RSS
s, st = js(c, "GET", "/status", ADMIN)
rss_before = max(w["rss_bytes"] for w in st["workers"])
t0 = time.time()
while time.time() - t0 < 30:
    s, st = js(c, "GET", "/status", ADMIN)
    f = [x for x in st["functions"] if x["function"] == "work" and x["tenant"] == f"burst-{stamp}"]
    if f and f[0]["concurrency"] == 0 and all(w["warm"] <= 1 for w in st["workers"]):
        break
    time.sleep(0.2)
time.sleep(2.5)  # a heartbeat after the release
s, st = js(c, "GET", "/status", ADMIN)
out["zero"] = {
    "seconds_to_zero_after_drain": round(time.time() - t0 - 2.5, 2),
    "rss_before_mib": round(rss_before / 1048576, 1),
    "rss_after_mib": round(max(w["rss_bytes"] for w in st["workers"]) / 1048576, 1),
    "warm_functions_after": [w["warm"] for w in st["workers"]],
}
print(json.dumps(out, indent=2))

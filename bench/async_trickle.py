"""An async trickle during another tenant's CPU-bound burst: does a
tenant's async work (its short guests run on the worker's bulk threads)
still get through while another tenant's long guests keep the execution
threads busy?

usage: async_trickle.py URL ADMIN [--burst N] [--burst-ms MS] [--idle N]

Creates the two tenants of w5client.burst_and_trickle. The trickle tenant
posts async `wordcount` invocations (`Prefer: respond-async`), one every
20 ms: --idle N of them first (idle), then from just before the burst
tenant's N x MS ms `work` invocations are posted through the batch endpoint
until that backlog is empty. Each invocation's latency is its record's
completed_at_ms - created_at_ms (ms resolution: enqueue to completion,
what a callback receiver would see). Prints one JSON line: p50/p99/max
idle and during the burst, and how long the burst took to drain.
"""
import http.client
import json
import multiprocessing
import sys
import time
import urllib.parse

from w5client import burst_and_trickle, call, wait_drained

URL, ADMIN = sys.argv[1], sys.argv[2]


def arg(name, default):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


BURST, BURST_MS, IDLE = arg("--burst", 20_000), arg("--burst-ms", 1), arg("--idle", 200)
U = urllib.parse.urlparse(URL)


def conn():
    return http.client.HTTPConnection(U.hostname, U.port, timeout=120)


c = conn()
stamp, keys = burst_and_trickle(c, ADMIN)


def post_async(tc):
    s, d = call(tc, "POST", "/invoke/wordcount", keys["trickle"], b'{"text":"async trickle"}',
                headers={"prefer": "respond-async"})
    assert s == 202, (s, d)
    return json.loads(d)["id"]


def trickle(n, stop, out):
    tc, ids = conn(), []
    for _ in range(n):
        if stop is not None and stop.is_set():
            break
        ids.append(post_async(tc))
        time.sleep(0.02)
    out.put(ids)


for _ in range(20):  # the trickle's function loaded
    call(c, "POST", "/invoke/wordcount", keys["trickle"], b'{"text":"warm"}')
mp = multiprocessing.get_context("fork")
q = mp.Queue()
trickle(IDLE, None, q)
idle_ids = q.get()

stop = mp.Event()
t = mp.Process(target=trickle, args=(10**9, stop, q))
t.start()
time.sleep(0.05)
t0 = time.time()
body = "\n".join(f'{{"ms":{BURST_MS}}}' for _ in range(BURST)).encode()
s, _ = call(c, "POST", "/invoke/work/batch", keys["burst"], body)
assert s == 200, s
wait_drained(c, keys["burst"])
drained_s = time.time() - t0
stop.set()
busy_ids = q.get()
t.join()


def latencies(ids):
    out = []
    for i in ids:
        for _ in range(100):  # the last few may still be completing
            s, d = call(c, "GET", f"/invocations/{i}", keys["trickle"])
            r = json.loads(d)
            if r.get("completed_at_ms"):
                out.append(r["completed_at_ms"] - r["created_at_ms"])
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"invocation {i} did not complete")
    return sorted(out)


def summary(lat):
    return {"n": len(lat), "p50_ms": lat[len(lat) // 2], "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "max_ms": lat[-1]}


idle, busy = summary(latencies(idle_ids)), summary(latencies(busy_ids))
print(json.dumps({"burst": BURST, "burst_ms": BURST_MS, "idle": idle, "during_burst": busy,
                  "drained_s": round(drained_s, 2)}))

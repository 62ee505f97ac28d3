#!/usr/bin/env python3
"""Where a sync call's time goes during another tenant's burst, in µs, from
the platform's own OpenTelemetry spans (`bench/w5-trace.sh` runs it).

Tenant B sends a trickle of sync `wordcount` calls (one every 20 ms), each
with a sampled `traceparent`: first while idle, then, from a separate
process, during tenant A's burst of N short invocations through the batch
endpoint, until the burst has drained. `eddy up` runs with
`parentbased_traceidratio` at 0, so only the trickle's traces are exported
(the burst's are not sampled) to an OTLP/HTTP sink in this script, which
keeps every export. Each call is then cut at its spans' edges (client clock
and span clocks are the same machine's wall clock):

  to_server        client sends → the gateway's server span starts
  to_enqueue       → the gateway's `enqueue` span starts (auth, parsing)
  enqueue          the enqueue's round trip to Redis
  enqueue_to_worker  → the worker's invocation span starts (the wake-up or
                   the blocked read, the read's reply, the dispatch)
  worker_to_exec   → the execute span starts (slot wait, instance)
  execute          the guest
  complete         the completion's round trip to Redis
  worker_end_to_server_end   the worker's span ends → the gateway's does
                   (the reply's pub/sub message, the waiting request's wake)
  server_end_to_client       → the client has the response

Percentiles per window: idle, while the burst is being accepted, after
(while it drains), plus the slowest calls, split.

usage: trace_trickle.py URL ADMIN_KEY SPANS_DIR [--burst N] [--idle N]
needs the `opentelemetry-proto` package (w5-trace.sh installs it).
"""
import collections
import glob
import http.client
import json
import multiprocessing
import os
import sys
import time
import urllib.parse

from w5client import burst_and_trickle, call, wait_drained

URL, ADMIN, SPANS = sys.argv[1], sys.argv[2], sys.argv[3]
BURST = int(sys.argv[sys.argv.index("--burst") + 1]) if "--burst" in sys.argv else 100_000
IDLE = int(sys.argv[sys.argv.index("--idle") + 1]) if "--idle" in sys.argv else 300
U = urllib.parse.urlparse(URL)


def conn():
    return http.client.HTTPConnection(U.hostname, U.port, timeout=60)


c = conn()
stamp, keys = burst_and_trickle(c, ADMIN)


def trickle(n, key, window, out, stop=None):
    tc = conn()
    for _ in range(n):
        if stop is not None and stop.is_set():
            break
        trace, span = os.urandom(16).hex(), os.urandom(8).hex()
        t0 = time.time()
        s, _ = call(tc, "POST", "/invoke/wordcount", key, b'{"text":"trickle words"}',
                    {"traceparent": f"00-{trace}-{span}-01"})
        t1 = time.time()
        assert s == 200, s
        out.append({"trace": trace, "t0": t0, "t1": t1, "window": window})
        time.sleep(0.02)


def in_process(stop, q):
    out = []
    trickle(1_000_000, keys["trickle"], "burst", out, stop)
    q.put(out)


samples = []
trickle(IDLE, keys["trickle"], "idle", samples)
body = "\n".join('{"ms":0}' for _ in range(BURST)).encode()
mp = multiprocessing.get_context("fork")
stop, q = mp.Event(), mp.Queue()
p = mp.Process(target=in_process, args=(stop, q))
p.start()
time.sleep(0.05)
s, _ = call(c, "POST", "/invoke/work/batch", keys["burst"], body)
assert s == 200, s
accepted = time.time()
wait_drained(c, keys["burst"])
stop.set()
during = q.get()
p.join()
for r in during:
    r["window"] = "accepting" if r["t0"] < accepted else "draining"
samples += during

# The spans: wait until every trickle call's trace has arrived (the batch
# exporter sends every few seconds).
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: E402

want = {s["trace"] for s in samples}
deadline = time.time() + 30
while True:
    spans = collections.defaultdict(dict)
    for f in sorted(glob.glob(f"{SPANS}/*.pb")):
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString(open(f, "rb").read())
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    spans[sp.trace_id.hex()].setdefault(
                        sp.name, (sp.start_time_unix_nano / 1e9, sp.end_time_unix_nano / 1e9))
    have = {t for t in want if any(n.startswith("invoke") for n in spans.get(t, {}))
            and "complete" in spans.get(t, {})}
    if have == want or time.time() > deadline:
        break
    time.sleep(1)

PARTS = ["total", "to_server", "to_enqueue", "enqueue", "enqueue_to_worker", "worker_to_exec",
         "execute", "complete", "worker_end_to_server_end", "server_end_to_client"]
rows = collections.defaultdict(list)
for s in samples:
    by = spans.get(s["trace"], {})
    srv = next((v for k, v in by.items() if k.startswith("POST")), None)
    inv = next((v for k, v in by.items() if k.startswith("invoke")), None)
    exe, done, enq = by.get("execute"), by.get("complete"), by.get("enqueue")
    if not (srv and inv and exe and done and enq):
        continue
    ms = lambda a, b: round((b - a) * 1000, 3)  # noqa: E731
    rows[s["window"]].append({
        "total": ms(s["t0"], s["t1"]),
        "to_server": ms(s["t0"], srv[0]),
        "to_enqueue": ms(srv[0], enq[0]),
        "enqueue": ms(enq[0], enq[1]),
        "enqueue_to_worker": ms(enq[1], inv[0]),
        "worker_to_exec": ms(inv[0], exe[0]),
        "execute": ms(exe[0], exe[1]),
        "complete": ms(done[0], done[1]),
        "worker_end_to_server_end": ms(inv[1], srv[1]),
        "server_end_to_client": ms(srv[1], s["t1"]),
    })


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else None


out = {"burst": BURST, "calls": len(samples), "traced": sum(len(v) for v in rows.values())}
for window in ("idle", "accepting", "draining"):
    rs = rows[window]
    out[window] = {
        "samples": len(rs),
        "ms": {k: {f"p{p}": pct([r[k] for r in rs], p) for p in (50, 90, 99)} for k in PARTS},
        "slowest": sorted(rs, key=lambda r: -r["total"])[:5],
    }
print(json.dumps(out, indent=1))

"""What the issue-5 bench scripts (scale.py aside) share: one HTTP call to a
running Eddy, and the two tenants they measure, each with its function."""
import json
import time


def call(c, method, path, key, body=None, headers=None):
    """(status, body) of one request on the http.client connection `c`."""
    h = {"authorization": f"Bearer {key}"}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    return r.status, r.read()


def burst_and_trickle(c, admin):
    """Creates tenants `burst-<stamp>` (function `work`: fx-busy, idle
    timeout 2 s, max concurrency 16) and `trickle-<stamp>` (`wordcount`);
    returns (stamp, {"burst": key, "trickle": key})."""
    stamp = str(int(time.time()))
    keys = {}
    for name in ("burst", "trickle"):
        s, d = call(c, "POST", "/tenants", admin, json.dumps({"id": f"{name}-{stamp}"}))
        assert s == 201, (s, d)
        keys[name] = json.loads(d)["key"]
    for name, key, module, q in (
        ("work", keys["burst"], "fx_busy", "?idle_timeout_ms=2000&max_concurrency=16"),
        ("wordcount", keys["trickle"], "wordcount", "?idle_timeout_ms=60000"),
    ):
        wasm = open(f"functions/target/wasm32-wasip2/release/{module}.wasm", "rb").read()
        s, d = call(c, "PUT", f"/functions/{name}{q}", key, wasm)
        assert s == 201, (s, d)
    return stamp, keys


def wait_drained(c, key, function="work"):
    """Polls `GET /functions/<function>` every 10 ms until its backlog (lag
    and pending) is empty."""
    while True:
        s, d = call(c, "GET", f"/functions/{function}", key)
        assert s == 200, (s, d)
        b = json.loads(d)["backlog"]
        if b["lag"] == 0 and b["pending"] == 0:
            return
        time.sleep(0.01)

#!/usr/bin/env python3
"""The services the `ingest` example talks to in `make demo`, on loopback:

- GET  /docs/<name>  a Markdown document (report.md);
- POST /classify     {"sections": [text, ...]} -> {"labels": [label, ...]},
                     by keywords; needs `Authorization: Bearer <token>`;
- POST /index        one section; needs the same token; prints what it got.

Usage: demo_api.py PORT TOKEN. A request without the token gets 401 and a
line saying so, which is what a processor sees if its secret is wrong.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, TOKEN = int(sys.argv[1]), sys.argv[2]

REPORT = """Weekly operations report for the payments team.

# Incidents
The card gateway had an outage of 14 minutes on Tuesday; error rates
returned to normal after the failover.

# Refunds
Refund requests rose 8 %; three chargebacks are still open.

# Access
Two engineers had their password reset after a login alert; no data left.

# Hiring
We welcome Ada and Grace to the team.
"""

RULES = [
    ("incident", ("outage", "incident", "error")),
    ("billing", ("refund", "chargeback", "invoice")),
    ("security", ("password", "login", "breach")),
]


def label(text):
    t = text.lower()
    for name, words in RULES:
        if any(w in t for w in words):
            return name
    return "general"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json" if not isinstance(body, str) else "text/markdown")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/docs/report.md":
            self.reply(200, REPORT)
        else:
            self.reply(404, {"error": "no such document"})

    def body(self):
        # Guests stream their bodies (chunked) unless they set a length.
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_POST(self):
        body = self.body()
        if self.headers.get("authorization") != f"Bearer {TOKEN}":
            print(f"api: {self.path} refused: wrong or missing bearer token", flush=True)
            self.reply(401, {"error": "unauthorized"})
            return
        req = json.loads(body or b"{}")
        if self.path == "/classify":
            labels = [label(s) for s in req.get("sections", [])]
            print(f"api: classified {len(labels)} sections: {', '.join(labels)}", flush=True)
            self.reply(200, {"labels": labels})
        elif self.path == "/index":
            print(f"api: indexed section {req.get('index')} [{req.get('label')}] {req.get('title')!r}", flush=True)
            self.reply(201, {"ok": True})
        else:
            self.reply(404, {"error": "no such route"})


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()

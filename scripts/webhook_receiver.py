#!/usr/bin/env python3
"""A tiny callback receiver for the demo: verifies the Standard Webhooks
signature with the tenant's secret and prints what arrived.

usage: webhook_receiver.py PORT SECRET
"""
import base64
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, SECRET = int(sys.argv[1]), sys.argv[2]
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        msg_id = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        mac = hmac.new(KEY, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        expected = "v1," + base64.b64encode(mac).decode()
        ok = hmac.compare_digest(expected, self.headers.get("webhook-signature", ""))
        event = json.loads(body)
        print(
            f"  callback {event.get('type')} {event.get('id')} status={event.get('status')}"
            f" signature={'valid' if ok else 'INVALID'}",
            flush=True,
        )
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Hook).serve_forever()

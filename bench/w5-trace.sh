#!/usr/bin/env bash
# Where a sync call's time goes during another tenant's burst, part by part,
# from Eddy's own OpenTelemetry spans (see bench/trace_trickle.py). Starts
# its own `eddy up` (private redis-server, AOF on as `eddy up` has it) with
# spans exported to an OTLP sink of its own; only the trickle is sampled.
# usage: bench/w5-trace.sh [--burst N] [--idle N]
set -euo pipefail
source "$(dirname "$0")/w5-up.sh"
python3 -c 'import opentelemetry.proto' 2>/dev/null || python3 -m pip install -q opentelemetry-proto >&2
SPANS=$(mktemp -d)
SINK=$(w5_free_port)
# The sink: stores each OTLP/HTTP export as it comes.
python3 - "$SINK" "$SPANS" <<'PY' &
import http.server, itertools, os, sys
out = sys.argv[2]; os.makedirs(out, exist_ok=True); n = itertools.count()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        open(f"{out}/{next(n):06d}.pb", "wb").write(body)
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
SINK_PID=$!
w5_on_exit 'kill $SINK_PID 2>/dev/null; rm -rf "$SPANS"'
w5_up OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK" OTEL_TRACES_SAMPLER=parentbased_traceidratio \
  OTEL_TRACES_SAMPLER_ARG=0
timeout 600 python3 bench/trace_trickle.py "http://127.0.0.1:$PORT" bench-admin "$SPANS" "$@"

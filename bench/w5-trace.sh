#!/usr/bin/env bash
# Where a sync call's time goes during another tenant's burst, part by part,
# from Eddy's own OpenTelemetry spans (see bench/trace_trickle.py). Starts
# its own `eddy up` (private redis-server, AOF on as `eddy up` has it) with
# spans exported to an OTLP sink of its own; only the trickle is sampled.
# usage: bench/w5-trace.sh [--burst N] [--idle N]
set -euo pipefail
cd "$(dirname "$0")/.."
EDDY_BIN=${EDDY_BIN:-target/release/eddy}
[ -x "$EDDY_BIN" ] || make build
python3 -c 'import opentelemetry.proto' 2>/dev/null || python3 -m pip install -q opentelemetry-proto >&2
DIR=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK=$(free_port)
PORT=$(free_port)
# The sink: stores each OTLP/HTTP export as it comes.
python3 - "$SINK" "$DIR/spans" <<'PY' &
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
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK OTEL_TRACES_SAMPLER=parentbased_traceidratio \
  OTEL_TRACES_SAMPLER_ARG=0 EDDY_DATA_DIR=$DIR EDDY_CACHE_DIR=$DIR/artifacts \
  EDDY_LISTEN=127.0.0.1:$PORT EDDY_ADMIN_KEY=bench-admin EDDY_LOG=warn "$EDDY_BIN" up 2> "$DIR/up.log" &
UP=$!
trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null; kill $SINK_PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 200); do grep -q "eddy up: ready" "$DIR/up.log" 2>/dev/null && break; sleep 0.05; done
sleep 0.5
timeout 600 python3 bench/trace_trickle.py "http://127.0.0.1:$PORT" bench-admin "$DIR/spans" "$@"

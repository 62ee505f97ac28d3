#!/usr/bin/env bash
# Rust, Python and TypeScript wordcounts side by side in the runtime bench:
# fresh-instance invoke (instantiate + run), instantiate alone, cold load
# from the artifact cache, and (printed) compile time and artifact size.
# Builds the SDKs' examples with `eddy build` (componentize-py,
# componentize-js) first. Usage: bench/guests.sh [criterion filter]
set -euo pipefail
cd "$(dirname "$0")/.."
eddy=target/release/eddy
[ -x "$eddy" ] || cargo build --release -p eddy-cli
for p in functions/sdk-python/examples/wordcount functions/sdk-js/examples/wordcount; do
  (cd "$p" && "../../../../$eddy" build)
done
export EDDY_BENCH_GUESTS="python=$PWD/functions/sdk-python/examples/wordcount/target/wordcount-py.wasm,ts=$PWD/functions/sdk-js/examples/wordcount/target/wordcount-ts.wasm"
cargo bench -p eddy-runtime --bench invoke -- "${1:-fresh_instance/wordcount|guests}"

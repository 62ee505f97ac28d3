#!/usr/bin/env bash
# W2: a feedback-loop run. One root invocation of fanout {"branch":B,"depth":D}
# grows into 1 + B + … + B^D invocations through follow-ups; the run record is
# polled every 2 ms until it is no longer `running`. Reports the run's
# duration, invocations/s, CPU µs per invocation, per-phase timings of a
# sample of the tree.
#
#   bench/w2-run.sh                             # B=4 D=6: 5,461 invocations
#   B=4 D=8 bench/w2-run.sh                     # 87,381 invocations
source "$(dirname "$0")/lib.sh"
B=${B:-4}
D=${D:-6}
# The run guard must allow the whole tree.
MAXINV=$(python3 -c "print(sum($B**k for k in range($D+1)))")

bench_setup w2-run
bench_deploy fanout "$WASM/fanout.wasm" --max-depth "$D" --max-invocations "$MAXINV" --max-emits "$((B > 0 ? B : 1))"
bench_run w2-run run -f fanout --branch "$B" --depth "$D" "$@"

# Shared by the bench/w*.sh scenario scripts. Source it, then:
#
#   bench_setup <scenario-id>     build if needed, own redis-server, XADD baseline,
#                                 eddy gateway + worker (+ controller), a tenant
#   bench_deploy <name> <wasm> [eddy deploy options...]
#   bench_run <scenario-id> <eddy-bench args...>
#                                 runs `eddy-bench ... -o json`, measures the CPU
#                                 time of gateway/worker/redis/controller during
#                                 it, writes .eddy/bench/<scenario-id>-<date>.json
#                                 and prints a markdown row
#
# Every process started here is stopped on exit (trap), every wait is bounded.
#
# Knobs (environment):
#   BENCH_BUILD=auto|1|0        build when the binary or guests are missing (auto),
#                               always (1), never (0)
#   BENCH_AOF=0|1               redis persistence: 0 (default) = `--save "" --appendonly no`
#                               (throughput runs measure Eddy, not the disk); 1 = AOF
#                               everysec, like `eddy up`
#   BENCH_CONTROLLER=0|1|auto   also run `eddy controller` (default 0: gateway + worker only;
#                               auto: when the binary has the command)
#   BENCH_WORKER_CONCURRENCY=64 EDDY_CONCURRENCY of the worker (the binary's default;
#                               runs before 2026-12-02 used 16)
#   BENCH_THREADS=1             EDDY_THREADS of gateway, worker and controller: the four
#                               processes share 2 cores, as one-CPU pods would ("" = one
#                               per core, the binary's default)
#   BENCH_SHARED_CACHE=1        gateway and worker share one artifact cache dir (like
#                               `eddy up`); 0 = separate dirs (like separate pods)
#   EDDY_BIN=path               the eddy under test (default: this checkout's release build)
#   EDDY_BENCH_BIN=path         the load generator (default: this checkout's eddy-bench)
#   BENCH_TIMEOUT_S=1800        upper bound on the `eddy-bench` process
#   BENCH_KEEP_RUN_DIR=1        keep the run directory (logs, redis dump) after exit
#   BENCH_REDIS_ARGS="--hash-max-ziplist-value 1024"
#                               more redis-server arguments (the default is what `eddy up`
#                               and the Helm chart set; "" = Redis's own defaults)
#   BENCH_WAIT_QUIET=0          before the measured run, wait up to this many seconds
#                               until no other process uses more than 20% CPU

set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EDDY=${EDDY_BIN:-$BENCH_ROOT/target/release/eddy}
# The load generator (bench/loadgen); an A/B of an older eddy keeps this one.
EDDY_BENCH=${EDDY_BENCH_BIN:-$BENCH_ROOT/target/release/eddy-bench}
WASM=$BENCH_ROOT/functions/target/wasm32-wasip2/release
BENCH_OUT=$BENCH_ROOT/.eddy/bench
CLK_TCK=$(getconf CLK_TCK)

BENCH_BUILD=${BENCH_BUILD:-auto}
BENCH_AOF=${BENCH_AOF:-0}
BENCH_CONTROLLER=${BENCH_CONTROLLER:-0}
BENCH_WORKER_CONCURRENCY=${BENCH_WORKER_CONCURRENCY:-64}
BENCH_SHARED_CACHE=${BENCH_SHARED_CACHE:-1}
BENCH_THREADS=${BENCH_THREADS-1}
BENCH_REDIS_ARGS=${BENCH_REDIS_ARGS---hash-max-ziplist-value 1024}
BENCH_TIMEOUT_S=${BENCH_TIMEOUT_S:-1800}
BENCH_KEEP_RUN_DIR=${BENCH_KEEP_RUN_DIR:-1}
BENCH_WAIT_QUIET=${BENCH_WAIT_QUIET:-0}

# name → pid of what we started, stopped in reverse order on exit.
declare -A BENCH_PIDS=()
BENCH_ORDER=()

log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

bench_cleanup() {
    local rc=$?
    local i name pid
    for ((i = ${#BENCH_ORDER[@]} - 1; i >= 0; i--)); do
        name=${BENCH_ORDER[$i]}
        pid=${BENCH_PIDS[$name]:-}
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || continue
        # Bounded: a drain gets 15 s, then it is killed.
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name ($pid) did not stop within 15 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "${RUN_DIR:-}" ] && [ -d "$RUN_DIR" ]; then
        rm -rf "$RUN_DIR/artifacts" "$RUN_DIR/artifacts-gw" "$RUN_DIR/artifacts-wk"
        [ "$BENCH_KEEP_RUN_DIR" = 1 ] || rm -rf "$RUN_DIR"
    fi
    exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# start <name> <logfile> <command...>: in the background, remembered for cleanup.
start() {
    local name=$1 logfile=$2
    shift 2
    "$@" >"$logfile" 2>&1 &
    BENCH_PIDS[$name]=$!
    BENCH_ORDER+=("$name")
}

# wait_for <seconds> <what> <command...>: polls every 50 ms.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || die "$what not ready within ${secs}s"
        sleep 0.05
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of
# /proc/<pid>/stat; the text after the last ")" starts at field 3). A
# process's stat counts all its threads.
cpu_ticks() {
    local pid=$1
    if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then
        echo 0
        return
    fi
    sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}

bench_build() {
    case $BENCH_BUILD in
        0) ;;
        1) (cd "$BENCH_ROOT" && make build) ;;
        *) if [ ! -x "$EDDY" ] || [ ! -f "$WASM/wordcount.wasm" ] || [ ! -f "$WASM/classify.wasm" ] \
                || [ ! -f "$WASM/fanout.wasm" ] || ! "$EDDY_BENCH" --help >/dev/null 2>&1; then
               (cd "$BENCH_ROOT" && make build)
           fi ;;
    esac
    [ -x "$EDDY" ] || die "no $EDDY after the build"
    [ -x "$EDDY_BENCH" ] || die "no $EDDY_BENCH after the build"
}

bench_start_redis() {
    REDIS_PORT=$(free_port)
    local persistence=(--save "" --appendonly no)
    if [ "$BENCH_AOF" = 1 ]; then
        persistence=(--save "" --appendonly yes --appendfsync everysec)
    fi
    start redis "$RUN_DIR/redis.out" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --dir "$RUN_DIR" --logfile redis.log "${persistence[@]}" $BENCH_REDIS_ARGS
    REDIS_URL=redis://127.0.0.1:$REDIS_PORT
    wait_for 10 "redis-server" redis-cli -p "$REDIS_PORT" ping
    log "redis-server $(redis-server --version | grep -o 'v=[0-9.]*') on port $REDIS_PORT (AOF $([ "$BENCH_AOF" = 1 ] && echo everysec || echo off), no RDB saves)"
}

# The yardstick of the same session: how fast this redis appends 200-byte
# stream entries, pipelined 16 deep.
bench_baseline() {
    local value out
    value=$(head -c 200 /dev/zero | tr '\0' 'x')
    out=$(timeout 120 redis-benchmark -p "$REDIS_PORT" -q -n 200000 -P 16 XADD benchstream '*' f "$value" 2>&1 | tr '\r' '\n')
    XADD_PER_SEC=$(printf '%s\n' "$out" | grep -o '[0-9.]* requests per second' | tail -1 | awk '{ print $1 }')
    [ -n "$XADD_PER_SEC" ] || die "redis-benchmark printed no rate: $out"
    redis-cli -p "$REDIS_PORT" del benchstream >/dev/null
    log "baseline: redis-benchmark -n 200000 -P 16 XADD (200-byte value): $XADD_PER_SEC XADD/s"
}

bench_start_eddy() {
    GATEWAY_PORT=$(free_port)
    ADMIN_KEY=bench_admin_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    export EDDY_URL=http://127.0.0.1:$GATEWAY_PORT
    local gw_cache=$RUN_DIR/artifacts wk_cache=$RUN_DIR/artifacts
    if [ "$BENCH_SHARED_CACHE" != 1 ]; then
        gw_cache=$RUN_DIR/artifacts-gw
        wk_cache=$RUN_DIR/artifacts-wk
    fi
    # Unset, not empty, for the binary's default (one per core).
    if [ -n "$BENCH_THREADS" ]; then export EDDY_THREADS=$BENCH_THREADS; else unset EDDY_THREADS; fi
    start gateway "$RUN_DIR/gateway.log" env REDIS_URL="$REDIS_URL" EDDY_LISTEN="127.0.0.1:$GATEWAY_PORT" \
        EDDY_ADMIN_KEY="$ADMIN_KEY" EDDY_CACHE_DIR="$gw_cache" EDDY_LOG="${EDDY_LOG:-warn}" "$EDDY" gateway
    start worker "$RUN_DIR/worker.log" env REDIS_URL="$REDIS_URL" EDDY_CONCURRENCY="$BENCH_WORKER_CONCURRENCY" \
        EDDY_CACHE_DIR="$wk_cache" EDDY_LOG="${EDDY_LOG:-warn}" "$EDDY" worker
    CONTROLLER_ON=0
    if [ "$BENCH_CONTROLLER" = 1 ] || { [ "$BENCH_CONTROLLER" = auto ] && "$EDDY" controller --help >/dev/null 2>&1; }; then
        CONTROLLER_ON=1
        start controller "$RUN_DIR/controller.log" env REDIS_URL="$REDIS_URL" \
            EDDY_CONTROLLER_LISTEN="127.0.0.1:$(free_port)" EDDY_LOG="${EDDY_LOG:-warn}" "$EDDY" controller
    fi
    wait_for 30 "the gateway" curl -fsS "$EDDY_URL/readyz"
    sleep 0.2
    local name
    for name in "${BENCH_ORDER[@]}"; do
        kill -0 "${BENCH_PIDS[$name]}" 2>/dev/null || die "$name exited at start: $(tail -5 "$RUN_DIR/$name.log" 2>/dev/null)"
    done
    log "gateway $EDDY_URL (pid ${BENCH_PIDS[gateway]}), worker pid ${BENCH_PIDS[worker]} (EDDY_CONCURRENCY=$BENCH_WORKER_CONCURRENCY, EDDY_THREADS=${BENCH_THREADS:-per core})$([ "$CONTROLLER_ON" = 1 ] && echo ", controller pid ${BENCH_PIDS[controller]}")"
}

bench_tenant() {
    local created
    created=$(EDDY_KEY=$ADMIN_KEY timeout 30 "$EDDY" tenant create bench -o json)
    EDDY_KEY=$(printf '%s' "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
    export EDDY_KEY
    log "tenant bench created"
}

# bench_setup <scenario-id>
bench_setup() {
    local id=$1
    bench_build
    mkdir -p "$BENCH_OUT"
    RUN_DIR=$BENCH_OUT/run-$id-$(date -u +%Y%m%dT%H%M%SZ)-$$
    mkdir -p "$RUN_DIR"
    log "$id: run directory $RUN_DIR"
    bench_start_redis
    bench_baseline
    bench_start_eddy
    bench_tenant
}

# bench_deploy <name> <wasm> [deploy options...]
bench_deploy() {
    local name=$1 wasm=$2
    shift 2
    [ -f "$wasm" ] || die "no module $wasm (make functions)"
    timeout 120 "$EDDY" deploy "$name" "$wasm" "$@" -o json >"$RUN_DIR/deploy-$name.json"
    log "deployed $name"
}

# Processes other than ours above 20% CPU now (top's second sample: the
# current use over 0.5 s), as "name[pid](cpu%) ...".
other_busy() {
    local ours=" ${BENCH_PIDS[*]} $$ "
    timeout 10 top -bn2 -d0.5 -w 200 2>/dev/null \
        | awk -v ours="$ours" '/^top -/ { n++ }
            n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 > 20 && index(ours, " " $1 " ") == 0 {
                printf "%s[%s](%s%%) ", $12, $1, $9 }' || true
}

cpu_snapshot() {
    local name
    for name in gateway worker redis controller; do
        printf '%s=%s ' "$name" "$(cpu_ticks "${BENCH_PIDS[$name]:-}")"
    done
}

# bench_run <scenario-id> <eddy-bench args...>
bench_run() {
    local id=$1
    shift
    local stamp out rc before after
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    out=$BENCH_OUT/$id-$stamp.json
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    local load_before busy waited=0
    # Anything else busy on the machine skews every figure: wait for quiet
    # (BENCH_WAIT_QUIET seconds at most), then say what was still busy.
    while :; do
        busy=$(other_busy)
        [ -n "$busy" ] && [ "$waited" -lt "$BENCH_WAIT_QUIET" ] || break
        [ "$waited" -gt 0 ] || log "waiting up to ${BENCH_WAIT_QUIET}s for a quiet machine (busy: $busy)"
        sleep 5
        waited=$((waited + 5))
    done
    [ -z "$busy" ] || log "WARNING: other busy processes before the run: $busy"
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    before=$(cpu_snapshot)
    local watch=() name
    for name in "${BENCH_ORDER[@]}"; do
        watch+=(--watch-pid "$name=${BENCH_PIDS[$name]}")
    done
    log "eddy-bench $*"
    set +e
    timeout "$BENCH_TIMEOUT_S" "$EDDY_BENCH" "$@" "${watch[@]}" -o json >"$RUN_DIR/bench.json"
    rc=$?
    set -e
    after=$(cpu_snapshot)
    redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' >"$RUN_DIR/commandstats.txt"
    redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' | grep -E '^used_memory(_human|_peak_human)?:' >"$RUN_DIR/memory.txt" || true
    for name in "${BENCH_ORDER[@]}"; do
        kill -0 "${BENCH_PIDS[$name]}" 2>/dev/null || log "WARNING: $name is no longer running (see $RUN_DIR/$name.log)"
    done
    [ -s "$RUN_DIR/bench.json" ] || die "eddy-bench exited $rc without a summary"
    python3 "$BENCH_ROOT/bench/summarise.py" \
        --bench "$RUN_DIR/bench.json" --rc "$rc" --id "$id" \
        --before "$before" --after "$after" --clk-tck "$CLK_TCK" \
        --xadd "$XADD_PER_SEC" --commandstats "$RUN_DIR/commandstats.txt" \
        --memory "$RUN_DIR/memory.txt" --aof "$BENCH_AOF" \
        --worker-concurrency "$BENCH_WORKER_CONCURRENCY" --controller "$CONTROLLER_ON" \
        --shared-cache "$BENCH_SHARED_CACHE" --root "$BENCH_ROOT" --run-dir "$RUN_DIR" \
        --loadavg-before "$load_before" --loadavg-after "$(cut -d' ' -f1-3 /proc/loadavg)" \
        --busy-before "${busy:-none}" \
        --out "$out"
    log "result: $out (exit $rc)"
    return "$rc"
}

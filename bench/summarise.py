#!/usr/bin/env python3
"""Turns one `eddy-bench -o json` summary plus what bench/lib.sh measured
around it (CPU ticks of each process before/after, the XADD baseline, redis
INFO commandstats) into the result JSON under .eddy/bench/ and a markdown row.

CPU per invocation = (utime + stime ticks after - before) / CLK_TCK / the
invocations the scenario counted (`headline.invocations`)."""

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def ticks(snapshot):
    out = {}
    for part in snapshot.split():
        name, _, value = part.partition("=")
        out[name] = int(value or 0)
    return out


def commandstats(path):
    rows = []
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return rows
    for line in lines:
        if not line.startswith("cmdstat_"):
            continue
        name, _, fields = line.partition(":")
        kv = dict(f.split("=", 1) for f in fields.split(",") if "=" in f)
        rows.append({
            "command": name[len("cmdstat_"):],
            "calls": int(kv.get("calls", 0)),
            "usec": int(kv.get("usec", 0)),
            "usec_per_call": float(kv.get("usec_per_call", 0)),
            "failed_calls": int(kv.get("failed_calls", 0)),
        })
    rows.sort(key=lambda r: r["usec"], reverse=True)
    return rows


def memory(path):
    out = {}
    try:
        for line in open(path).read().splitlines():
            k, _, v = line.partition(":")
            if k:
                out[k] = v
    except OSError:
        pass
    return out


def git(root):
    def run(*args):
        try:
            return subprocess.run(["git", "-C", root, *args], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - best effort
            return ""
    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}


def binary(path):
    """Which build ran: the tree may change between runs (shared target dir)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)), "bytes": st.st_size}


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        redis = subprocess.run(["redis-server", "--version"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        redis = ""
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "redis": redis}


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def ms(us):
    return "-" if us is None else f"{us / 1000:.2f}"


def main():
    p = argparse.ArgumentParser()
    for a in ["bench", "rc", "id", "before", "after", "clk-tck", "xadd", "commandstats",
              "memory", "aof", "worker-concurrency", "controller", "shared-cache", "root",
              "run-dir", "out", "loadavg-before", "loadavg-after", "busy-before"]:
        p.add_argument("--" + a, required=True)
    a = p.parse_args()

    bench = json.load(open(a.bench))
    clk = int(a.clk_tck)
    head = bench.get("headline", {})
    n = head.get("invocations") or 0
    # Whole `eddy-bench` process lifetime (includes reading the sample of
    # records after the load): the script's own /proc reads.
    before, after = ticks(a.before), ticks(a.after)
    outer = {k: round((after.get(k, 0) - before.get(k, 0)) / clk, 3) for k in after}
    outer["total"] = round(sum(outer.values()), 3)
    # The measured phase only: what `eddy-bench --watch-pid` read itself.
    phase = bench.get("cpu") or {}
    if phase.get("seconds"):
        cpu_s = {k: v for k, v in phase["seconds"].items() if k not in ("client", "server_total")}
        cpu_s["total"] = phase["seconds"].get("server_total")
        client_cpu = phase["seconds"].get("client")
        cpu_phase = phase.get("phase")
    else:
        cpu_s, client_cpu, cpu_phase = outer, bench.get("client_cpu_s"), "whole eddy-bench run"
    per_inv = {k: (round(v * 1e6 / n, 1) if (n and v is not None) else None) for k, v in cpu_s.items()}
    xadd = float(a.xadd)
    thr = head.get("throughput_per_sec")
    stats = commandstats(a.commandstats)

    result = {
        "id": a.id,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "exit_code": int(a.rc),
        "bench": bench,
        "baseline": {
            "command": "redis-benchmark -q -n 200000 -P 16 XADD benchstream * f <200 bytes>",
            "xadd_per_sec": xadd,
        },
        "throughput_to_xadd": round(thr / xadd, 5) if thr else None,
        "cpu_phase": cpu_phase,
        "cpu_s": cpu_s,
        "cpu_us_per_invocation": per_inv,
        "client_cpu_s": client_cpu,
        "client_cpu_us_per_invocation": round(client_cpu * 1e6 / n, 1) if (n and client_cpu is not None) else None,
        "cpu_method": "utime+stime of each process from /proc/<pid>/stat (all threads), read by "
                      "`eddy-bench --watch-pid` at the start and end of the measured phase, "
                      "ticks / CLK_TCK, divided by headline.invocations",
        "cpu_s_whole_bench_process": outer,
        "redis": {"commandstats_by_usec": stats, "memory": memory(a.memory)},
        "config": {"aof": a.aof == "1", "worker_concurrency": int(a.worker_concurrency),
                   "controller": a.controller == "1", "shared_artifact_cache": a.shared_cache == "1"},
        "machine": machine(),
        "load": {"loadavg_before": a.loadavg_before, "loadavg_after": a.loadavg_after,
                 "busy_processes_before": a.busy_before},
        "git": git(a.root),
        "eddy_binary": binary(os.path.join(a.root, "target/release/eddy")),
        "run_dir": a.run_dir,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    lat = head.get("latency_us") or {}
    ratio = result["throughput_to_xadd"]
    problems = bench.get("problems") or []
    print()
    print("| scenario | N | wall s | throughput /s | vs XADD/s | CPU µs/inv gateway | worker | redis | controller | total | client | p50 ms | p99 ms | p99.9 ms | problems |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        a.id, fmt(n), fmt(head.get("wall_s"), 3), fmt(thr), 
        f"1/{xadd / thr:,.0f} of {fmt(xadd)}" if thr else f"- ({fmt(xadd)})",
        fmt(per_inv.get("gateway"), 1), fmt(per_inv.get("worker"), 1), fmt(per_inv.get("redis"), 1),
        fmt(per_inv.get("controller"), 1), fmt(per_inv.get("total"), 1),
        fmt(result["client_cpu_us_per_invocation"], 1),
        ms(lat.get("p50")), ms(lat.get("p99")), ms(lat.get("p999")),
        "; ".join(problems) if problems else "none"))
    print()
    print(f"latency kind: {head.get('latency_kind')}; redis commands by time spent:", file=sys.stderr)
    for r in stats[:6]:
        print(f"  {r['command']:<14} calls {r['calls']:>9,}  usec {r['usec']:>11,}  "
              f"{r['usec_per_call']:.2f} us/call", file=sys.stderr)


if __name__ == "__main__":
    main()

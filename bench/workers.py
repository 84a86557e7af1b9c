"""`make bench-workers`: the serve command with `--workers 1` and `--workers 2`, side by side in one run.

    python -m bench.workers [--runs 3] [--duration 5] [--server auto|granian|uvicorn]

Generates the bench gateway (bench/protos, as `make bench` does), starts the upstream (the Go anchor's
gRPC backend when built, else bench/echo_backend.py) and both gateways at once, each in its own process
group on its own loopback port; then, runs interleaved, `wrk -t2 -c64 --latency` GET /v1/echo/abc and
POST /v1/echo against each. Prints req/s, p50/p99 and the gateway's CPU per request (its whole process
group: parent + workers). On a machine with few cores the upstream and wrk compete with the workers for
them, so the gain from a second worker is bounded by what is left: the table says how many cores there
were and how busy the machine was besides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.run import (
    GET_PATH,
    LUA,
    PY,
    WORK,
    free_port,
    generate,
    go_bins,
    log,
    measured,
    run,
    spawn,
    stop,
    wait_port,
    wait_ready,
)
from bench.serving_configs import parse_wrk

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--server", choices=("auto", "granian", "uvicorn"), default="auto")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "workers.md")
    args = ap.parse_args()
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    gen = WORK / "gen"
    generate(gen)
    go_dir = go_bins(build=False)
    upstream_addr = f"127.0.0.1:{free_port()}"
    if go_dir:
        upstream_cmd = [str(go_dir / "server"), "-addr", upstream_addr]
        upstream_desc = "Go gRPC backend (the grpc-gateway-go anchor)"
    else:
        upstream_cmd = [PY, str(HERE / "echo_backend.py"), str(gen), upstream_addr]
        upstream_desc = "Python grpc.aio backend (bench/echo_backend.py)"
    env = dict(os.environ, PYTHONPATH=str(gen), PYTHONUNBUFFERED="1")
    upstream = spawn("upstream", upstream_cmd, int(upstream_addr.rsplit(":", 1)[1]), WORK)
    gateways: dict[int, Any] = {}
    rows: dict[tuple[int, str], list[dict[str, Any]]] = {}
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    try:
        wait_port(upstream)
        for workers in (1, 2):
            port = free_port()
            cmd = [PY, "-m", "pygateway_serve", "--upstream", upstream_addr, "--listen", f"127.0.0.1:{port}"]
            cmd += ["--server", args.server, "--workers", str(workers), "--log-level", "warning"]
            gateways[workers] = spawn(f"workers{workers}", cmd, port, gen, env)
            wait_ready(gateways[workers])
            log(f"started --workers {workers}: pid {gateways[workers].pid}, port {port}")

        def wrk(workers: int, seconds: int, post: bool) -> dict[str, Any]:
            gw = gateways[workers]
            target = f"http://127.0.0.1:{gw.port}" + ("/v1/echo" if post else GET_PATH)
            script = ["-s", str(LUA)] if post else []
            cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", *script, target]
            out, cpu = measured(gw.pid, upstream.pid, lambda: run(cmd, timeout=seconds + 30).stdout)
            row: dict[str, Any] = {**parse_wrk(out), **cpu}
            row["us"] = cpu["gw_cpu_s"] * 1e6 / max(row["reqs"], 1)
            return row

        for workers in (1, 2):  # warm-up: every worker's channel connected
            wrk(workers, 2, False)
            wrk(workers, 2, True)
        for r in range(args.runs):
            for workload in ("GET", "POST"):
                for workers in (1, 2) if r % 2 == 0 else (2, 1):
                    row = wrk(workers, args.duration, workload == "POST")
                    rows.setdefault((workers, workload), []).append(row)
                    log(
                        f"run {r + 1}/{args.runs} {workload:4s} --workers {workers}: {row['rps']:7.0f} req/s"
                        f" {row['us']:6.1f} µs/req, p99 {row['p99_ms']:.2f} ms, non-2xx {row['non2xx']},"
                        f" other CPU {row['other_cpu_s']:.2f} s"
                    )
    finally:
        for gw in gateways.values():
            stop(gw.popen)
        stop(upstream.popen)

    def med(workers: int, workload: str, key: str) -> float:
        return float(statistics.median(r[key] for r in rows[(workers, workload)]))

    lines = [
        f"# make bench-workers, {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"- upstream: {upstream_desc}; serve `--server {args.server}`; {os.cpu_count()} cores shared by the"
        f" gateway, the upstream and wrk; loadavg before {load}",
        f"- wrk -t2 -c64 -d{args.duration}s --latency, {args.runs} interleaved runs each, medians",
        "",
        "| workload | workers | req/s | p50 ms | p99 ms | gateway CPU µs/req | upstream CPU µs/req | other CPU s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload in ("GET", "POST"):
        for workers in (1, 2):
            up = statistics.median(r["up_cpu_s"] * 1e6 / max(r["reqs"], 1) for r in rows[(workers, workload)])
            lines.append(
                f"| {workload} | {workers} | {med(workers, workload, 'rps'):.0f} | "
                f"{med(workers, workload, 'p50_ms'):.2f} | {med(workers, workload, 'p99_ms'):.2f} | "
                f"{med(workers, workload, 'us'):.0f} | {up:.0f} | {med(workers, workload, 'other_cpu_s'):.2f} |"
            )
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

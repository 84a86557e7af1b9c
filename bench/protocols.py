"""Unary CPU per request of REST/JSON, gRPC-Web and Connect side by side, on one gateway process.

    python -m bench.protocols [--runs 3] [--duration 5] [--upstream auto|go|python]

The bench gateway (bench/protos, default options) under the shipped serve command, one upstream (the Go
anchor's backend when built, else bench/echo_backend.py), and wrk -t1 -c32 on the same Echo method:

  rest          POST /v1/echo, JSON body (bench/anchors/echo_post.lua: make bench's POST row)
  grpcweb       POST /bench.v1.EchoService/Echo, application/grpc-web+proto, the same message in binary
  connect       the same path, application/proto + Connect-Protocol-Version: 1
  connect-json  the same path, application/json + Connect-Protocol-Version: 1, the JSON body of `rest`

Gateway CPU (its process group, /proc ticks) over the requests wrk completed; medians of --runs runs,
workloads interleaved. Every answer must be 2xx (wrk's non-2xx count is checked).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.run import (
    HERE,
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

PATH = "/bench.v1.EchoService/Echo"
JSON_BODY = '{"id":"abc","message":"hello","num":"42","tags":["a","b"],"labels":{"k":"v"}}'


def lua_bytes(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def scripts(gen: Path, out: Path) -> dict[str, Path]:
    sys.path.insert(0, str(gen))
    from bench.v1 import bench_pb2  # type: ignore[import-not-found]
    from google.protobuf import json_format

    message = json_format.Parse(JSON_BODY, bench_pb2.EchoRequest()).SerializeToString()
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    bodies = {
        "grpcweb": (lua_bytes(frame), {"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1"}),
        "connect": (
            lua_bytes(message),
            {"Content-Type": "application/proto", "Connect-Protocol-Version": "1"},
        ),
        "connect-json": (
            json.dumps(JSON_BODY),
            {"Content-Type": "application/json", "Connect-Protocol-Version": "1"},
        ),
    }
    paths = {"rest": LUA}
    for name, (body, headers) in bodies.items():
        lines = ['wrk.method = "POST"', f'wrk.path = "{PATH}"', f"wrk.body = {body}"]
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
        path = out / f"{name}.lua"
        path.write_text("\n".join(lines) + "\n")
        paths[name] = path
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--upstream", choices=("auto", "go", "python"), default="auto")
    args = ap.parse_args()
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    gen = WORK / "gen-protocols"
    generate(gen)
    go_dir = None if args.upstream == "python" else go_bins(build=False)
    addr = f"127.0.0.1:{free_port()}"
    if go_dir:
        upstream_cmd, desc = [str(go_dir / "server"), "-addr", addr], "Go gRPC backend (anchor)"
    else:
        upstream_cmd, desc = [PY, str(HERE / "echo_backend.py"), str(gen), addr], "Python grpc.aio backend"
    env = dict(os.environ, PYTHONPATH=str(gen), PYTHONUNBUFFERED="1")
    upstream = spawn("upstream-protocols", upstream_cmd, int(addr.rsplit(":", 1)[1]), WORK)
    port = free_port()
    serve = [PY, "-m", "pygateway_serve", "--upstream", addr, "--listen", f"127.0.0.1:{port}"]
    gateway = spawn("ours-protocols", serve, port, gen, env)
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        wait_port(upstream)
        wait_ready(gateway)
        with tempfile.TemporaryDirectory() as tmp:
            lua = scripts(gen, Path(tmp))
            for r in range(args.runs + 1):  # the first round warms up
                for name, script in lua.items():
                    seconds = 2 if r == 0 else args.duration
                    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", str(script)]
                    cmd.append(f"http://127.0.0.1:{port}")
                    out, cpu = measured(
                        gateway.pid, upstream.pid, lambda: run(cmd, timeout=seconds + 30).stdout
                    )
                    row = {**parse_wrk(out), **cpu}
                    if row["non2xx"]:
                        raise RuntimeError(f"{name}: {row['non2xx']} non-2xx answers\n{out}")
                    row["us"] = cpu["gw_cpu_s"] * 1e6 / max(row["reqs"], 1)
                    if r:
                        rows.setdefault(name, []).append(row)
                        log(f"run {r}/{args.runs} {name:12s} {row['rps']:7.0f} req/s {row['us']:6.1f} µs/req")
    finally:
        stop(gateway.popen)
        stop(upstream.popen)
    rest = statistics.median(r["us"] for r in rows["rest"])
    print(
        f"\nUnary Echo, gateway CPU per request (median of {args.runs} x {args.duration} s, wrk -t1 -c32; {desc})\n"
    )
    print("| protocol | µs/req | vs REST | req/s |")
    print("|---|---|---|---|")
    for name, items in rows.items():
        us = statistics.median(r["us"] for r in items)
        rps = statistics.median(r["rps"] for r in items)
        print(f"| {name} | {us:.0f} | {us / rest:.2f}x | {rps:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

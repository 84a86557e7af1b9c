"""Where does the composition overhead go? (issue 17: "the raw ASGI handler on the shipped server cost 405 µs
per POST, while the server alone (66) plus grpcio's call alone (144) is 210")

    python -m bench.composition [--duration 5] [--runs 3] [--servers zttp,granian]

Against the Go gRPC backend (.work/anchor/bin/server; `make bench` builds it), in one run, interleaved:
- `server`: a trivial ASGI app (bench/baselines/server_alone.py) on the HTTP server;
- `raw-grpcio` / `raw-native`: the leanest handler (read body, json_format, one unary call, json reply) on
  that server, calling upstream through grpc.aio or the runtime's native transport;
- `floor-grpcio` / `floor-native`: the same calls with no HTTP server, 32 concurrent callers in one process
  (the load wrk -c32 puts on a gateway).
Servers: `zttp` (the serve command's default for modules with WebSocket routes: uvicorn + the gateway's zttp
protocol + wsproto, uvloop) and `granian` (embedded granian + WebSocket, uvloop).

Per configuration: CPU µs per request (utime+stime of the process, all threads), context switches per
request (voluntary and not, summed over the process's threads, from /proc/PID/task/*/status), thread
count, and the kernel share of the CPU. The composition overhead is
raw - (server + floor); the table prints it per transport.
Output: a markdown table on stdout and bench/results/composition.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.serving_configs import parse_wrk, stop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = ROOT / ".work" / "bench"
TCK = os.sysconf("SC_CLK_TCK")
POST_BODY = b'{"id":"abc","message":"hello","num":"42","tags":["a","b"],"labels":{"k":"v"}}'
CALLERS = 32

# ------------------------------------------------------------------------------------------ the apps

APP_SOURCE = '''
"""bench/composition.py's apps: KIND = server | raw-grpcio | raw-native (from $COMPOSITION_APP)."""
import os

from bench.v1 import bench_pb2
from google.protobuf import json_format

KIND = os.environ["COMPOSITION_APP"]
UPSTREAM = os.environ.get("UPSTREAM", "127.0.0.1:50051")
_REPLY = b'{"id":"abc","message":"hello","num":"42","tags":["a","b"],"labels":{"k":"v"}}'
_HEADERS = [(b"content-type", b"application/json")]
_echo = None


def _call():
    global _echo
    if _echo is None:
        from pygateway_runtime.transport import open_channel

        channel = open_channel(UPSTREAM, KIND.split("-", 1)[1])
        _echo = channel.unary_unary(
            "/bench.v1.EchoService/Echo",
            request_serializer=bench_pb2.EchoRequest.SerializeToString,
            response_deserializer=bench_pb2.EchoResponse.FromString,
        )
    return _echo


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    if scope["method"] == "POST":
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
    if KIND == "server":
        out = _REPLY
    else:
        if body:
            request = json_format.Parse(body, bench_pb2.EchoRequest())
        else:
            request = bench_pb2.EchoRequest(id=scope["path"].rsplit("/", 1)[-1])
        resp = await _call()(request)
        out = json_format.MessageToJson(resp, indent=None).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": _HEADERS + [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
'''

SERVE_SOURCE = '''
"""Serve composition_app:app on PORT with SERVER (zttp | granian), as the serve command does."""
import asyncio
import signal
import sys

import uvloop

SERVER, PORT = sys.argv[1], int(sys.argv[2])


async def main():
    from composition_app import app

    loop = asyncio.get_running_loop()
    if SERVER == "granian":
        from granian.constants import HTTPModes, Interfaces
        from granian.log import LogLevels
        from granian.server.embed import Server

        server = Server(app, address="127.0.0.1", port=PORT, interface=Interfaces.ASGINL,
                        http=HTTPModes.http1, websockets=True, backlog=1024, backpressure=4096,
                        log_level=LogLevels.warning)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.stop)
        await server.serve()
    else:
        import uvicorn
        from pygateway_runtime.servers import _uvicorn_http

        http, _ = _uvicorn_http(True)
        config = uvicorn.Config(app, host="127.0.0.1", port=PORT, http=http, ws="wsproto",
                                lifespan="off", log_level="warning", access_log=False,
                                server_header=False, proxy_headers=False)
        await uvicorn.Server(config).serve()


uvloop.run(main())
'''

FLOOR_SOURCE = '''
"""CALLERS concurrent unary callers, no HTTP server: CPU µs/call, ctx switches/call (JSON on stdout)."""
import asyncio
import json
import os
import sys
import time

import uvloop
from bench.v1 import bench_pb2
from google.protobuf import json_format

TRANSPORT, UPSTREAM, CALLERS, CALLS, GET = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "get"
BODY = b'{"id":"abc","message":"hello","num":"42","tags":["a","b"],"labels":{"k":"v"}}'


def ctx():
    total = 0
    for tid in os.listdir("/proc/self/task"):
        for line in open(f"/proc/self/task/{tid}/status"):
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


async def main():
    from pygateway_runtime.transport import open_channel

    channel = open_channel(UPSTREAM, TRANSPORT)
    echo = channel.unary_unary("/bench.v1.EchoService/Echo",
                               request_serializer=bench_pb2.EchoRequest.SerializeToString,
                               response_deserializer=bench_pb2.EchoResponse.FromString)

    async def caller(n):
        for _ in range(n):
            # the same JSON work the raw handler does, so floor + server = raw without composition
            request = bench_pb2.EchoRequest(id="abc") if GET else json_format.Parse(BODY, bench_pb2.EchoRequest())
            resp = await echo(request)
            json_format.MessageToJson(resp, indent=None)

    await asyncio.gather(*(caller(50) for _ in range(CALLERS)))
    c0, t0 = ctx(), os.times()
    await asyncio.gather(*(caller(CALLS) for _ in range(CALLERS)))
    n, t1 = CALLERS * CALLS, os.times()
    print(json.dumps({"cpu_us": (t1.user + t1.system - t0.user - t0.system) * 1e6 / n,
                      "sys_us": (t1.system - t0.system) * 1e6 / n, "ctx": (ctx() - c0) / n,
                      "threads": len(os.listdir("/proc/self/task"))}))


uvloop.run(main())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TCK, int(fields[12]) / TCK


def proc_ctx(pid: int) -> tuple[int, int]:
    total, threads = 0, 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        threads += 1
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total, threads


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not open")


def wrk(port: int, seconds: int, post: bool) -> dict[str, Any]:
    lua = HERE / "anchors" / "echo_post.lua"
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency"]
    if post:
        cmd += ["-s", str(lua)]
    url = f"http://127.0.0.1:{port}" + ("/v1/echo" if post else "/v1/echo/abc")
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 30).stdout
    return parse_wrk(out)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--servers", default="zttp,granian")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "composition.md")
    args = parser.parse_args()

    from bench.run import generate

    gen = WORK / "composition-gen"
    generate(gen)
    (gen / "composition_app.py").write_text(APP_SOURCE)
    (gen / "composition_serve.py").write_text(SERVE_SOURCE)
    (gen / "composition_floor.py").write_text(FLOOR_SOURCE)
    server_bin = ROOT / ".work" / "anchor" / "bin" / "server"
    if not os.access(server_bin, os.X_OK):
        sys.exit(f"{server_bin} missing: run `make bench` once (it builds the Go anchor)")
    up_port = free_port()
    upstream = f"127.0.0.1:{up_port}"
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    backend = subprocess.Popen([str(server_bin), "-addr", upstream], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{gen}:{ROOT}", "UPSTREAM": upstream}
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    try:
        time.sleep(0.5)
        servers = args.servers.split(",")
        kinds = ["server", "raw-grpcio", "raw-native", "ours-grpcio", "ours-native"]
        for run in range(args.runs):
            for workload in ("post", "get"):
                for transport in ("grpcio", "native"):  # the floors: no HTTP server
                    cmd = [sys.executable, str(gen / "composition_floor.py"), transport, upstream,
                           str(CALLERS), "300", workload]  # fmt: skip
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
                    if out.returncode != 0:
                        raise RuntimeError(out.stderr[-2000:])
                    results.setdefault((f"floor-{transport}", "-", workload), []).append(
                        json.loads(out.stdout)
                    )
                for server in servers:
                    for kind in kinds[run % len(kinds) :] + kinds[: run % len(kinds)]:  # rotate the order
                        port = free_port()
                        cmd = [sys.executable, str(gen / "composition_serve.py"), server, str(port)]
                        if kind.startswith("ours"):  # the serve command itself, as shipped
                            cmd = [
                                sys.executable,
                                "-m",
                                "pygateway_serve",
                                "--upstream",
                                upstream,
                                "--listen",
                                f"127.0.0.1:{port}",
                                "--transport",
                                kind.split("-")[1],
                                "--log-level",
                                "warning",
                            ]
                            cmd += ["--server", "granian"] if server == "granian" else []
                        with open(logs / f"composition-{server}-{kind}.log", "ab") as log:
                            proc = subprocess.Popen(cmd, env={**env, "COMPOSITION_APP": kind}, stdout=log,
                                                    stderr=log, start_new_session=True)  # fmt: skip
                        try:
                            wait_port(port, proc)
                            wrk(port, 1, workload == "post")  # warm-up: connect the channel, fill caches
                            (u0, s0), (x0, _) = proc_cpu(proc.pid), proc_ctx(proc.pid)
                            w = wrk(port, args.duration, workload == "post")
                            (u1, s1), (x1, threads) = proc_cpu(proc.pid), proc_ctx(proc.pid)
                            n = max(w["reqs"], 1)
                            row = {
                                "cpu_us": (u1 - u0 + s1 - s0) * 1e6 / n,
                                "sys_us": (s1 - s0) * 1e6 / n,
                                "ctx": (x1 - x0) / n,
                                "threads": threads,
                                "rps": w["reqs"] / args.duration,
                            }
                            results.setdefault((kind, server, workload), []).append(row)
                            print(f"run {run} {workload} {server} {kind}: {row}", file=sys.stderr, flush=True)
                        finally:
                            stop(proc)
    finally:
        stop(backend)

    def med(key: tuple[str, str, str], field: str) -> float:
        return statistics.median(r.get(field, float("nan")) for r in results[key])

    lines = [
        f"# bench/composition.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Go gRPC backend; wrk -t1 -c32 -d{args.duration}s; medians of {args.runs} runs; floors: {CALLERS} "
        "concurrent callers in one process doing the handler's JSON work, no HTTP server.",
        "",
        "| workload | server | configuration | CPU µs/req | of which kernel | ctx switches/req | threads | req/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(results):
        kind, server, workload = key
        rps = f"{med(key, 'rps'):,.0f}" if server != "-" else ""
        lines.append(f"| {workload.upper()} | {server} | {kind} | {med(key, 'cpu_us'):.1f} | {med(key, 'sys_us'):.1f} | "
                     f"{med(key, 'ctx'):.2f} | {med(key, 'threads'):.0f} | {rps} |")  # fmt: skip
    lines += ["", "Composition overhead = raw - (server alone + floor), CPU µs/req:", ""]
    lines += [
        "| workload | server | transport | raw | server + floor | overhead |",
        "|---|---|---|---|---|---|",
    ]
    for workload in ("post", "get"):
        for server in servers:
            for transport in ("grpcio", "native"):
                raw = med((f"raw-{transport}", server, workload), "cpu_us")
                parts = med(("server", server, workload), "cpu_us") + med(
                    (f"floor-{transport}", "-", workload), "cpu_us"
                )
                lines.append(
                    f"| {workload.upper()} | {server} | {transport} | {raw:.1f} | {parts:.1f} | {raw - parts:+.1f} |"
                )
    lines += ["", "The gateway's own code = ours (the serve command) - raw, CPU µs/req:", ""]
    lines += ["| workload | server | transport | ours | raw | gateway code |", "|---|---|---|---|---|---|"]
    for workload in ("post", "get"):
        for server in servers:
            for transport in ("grpcio", "native"):
                ours = med((f"ours-{transport}", server, workload), "cpu_us")
                raw = med((f"raw-{transport}", server, workload), "cpu_us")
                lines.append(
                    f"| {workload.upper()} | {server} | {transport} | {ours:.1f} | {raw:.1f} | {ours - raw:+.1f} |"
                )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

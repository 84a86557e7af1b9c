"""Client CPU per gRPC call: grpc.aio against the native transport, side by side against the same server.

    python bench/native_client.py [--calls 4000] [--messages 40000] [--runs 3] [--upstream HOST:PORT]

Without --upstream it starts tests/native_backend.py (grpc.aio, raw bytes) on a free loopback port; with
--go it starts tests/native_go_backend (grpc-go, same methods; built by tests/native_go.py). Every
measurement runs in a fresh subprocess (so grpcio's threads never share a process with the native
client), on uvloop when installed, and reports the client process's CPU (`time.process_time()`, all
threads) per unary call (sequential; 32 concurrent tasks) and per streamed message (one server stream
sent flat out). Calls are made as the gateway makes them: two metadata entries, a timeout, and the
initial and trailing metadata awaited. Bounded: at most --calls calls / --messages messages per case,
and each case's subprocess is killed after 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CASES = ("unary_seq", "unary_32", "stream")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _measure(transport: str, case: str, target: str, calls: int, messages: int) -> dict[str, Any]:
    import grpc

    sys.path.insert(0, str(ROOT))
    from protoc_gen_pygateway.runtime.native import NativeChannel

    channel: Any = NativeChannel(target) if transport == "native" else grpc.aio.insecure_channel(target)
    unary = channel.unary_unary("/test.Echo/Unary")
    stream = channel.unary_stream("/test.Echo/ServerStream")
    metadata = (("x-request-id", "abc123"), ("x-forwarded-for", "127.0.0.1"))
    payload = b"p" * 64

    async def one() -> None:
        call = unary(payload, metadata=metadata, timeout=10.0)
        await call
        await call.initial_metadata()
        await call.trailing_metadata()

    for _ in range(50):  # warm-up: connection, caches
        await one()
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    ru0 = _ctx_switches()
    if case == "unary_seq":
        for _ in range(calls):
            await one()
        count = calls
    elif case == "unary_32":
        per = calls // 32

        async def worker() -> None:
            for _ in range(per):
                await one()

        await asyncio.gather(*(worker() for _ in range(32)))
        count = per * 32
    else:
        call = stream(f"{messages}:64:0".encode(), metadata=metadata)
        count = 0
        async for _ in call:
            count += 1
        assert count == messages, count
    cpu = time.process_time() - start_cpu
    wall = time.perf_counter() - start_wall
    csw = _ctx_switches() - ru0
    await channel.close()
    return {"us_cpu": cpu / count * 1e6, "us_wall": wall / count * 1e6, "csw": csw / count, "count": count}


def _ctx_switches() -> int:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return int(ru.ru_nvcsw + ru.ru_nivcsw)


def _worker(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    result = asyncio.run(_measure(args.transport, args.case, args.upstream, args.calls, args.messages))
    result["loop"] = loop_name
    print(json.dumps(result))


def _start_backend(go: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    if go:
        sys.path.insert(0, str(ROOT))
        from tests.native_go import build_go_backend

        binary = build_go_backend()
        argv = [str(binary), "-addr", f"127.0.0.1:{port}"]
    else:
        argv = [sys.executable, "-m", "tests.native_backend", "--port", str(port)]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != b"ready":
        process.kill()
        raise SystemExit(f"backend did not start: {line!r}")
    return process, f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--messages", type=int, default=40000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--upstream")
    parser.add_argument("--go", action="store_true", help="measure against the grpc-go backend")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--transport", default="native", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="unary_seq", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    backend = None
    target = args.upstream
    if target is None:
        backend, target = _start_backend(args.go)
    try:
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(args.runs):
            for case in CASES:
                for transport in ("grpcio", "native"):
                    out = subprocess.run(
                        [sys.executable, __file__, "--worker", "--transport", transport, "--case", case,
                         "--upstream", target, "--calls", str(args.calls), "--messages", str(args.messages)],
                        capture_output=True, check=True, timeout=120, cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                    )  # fmt: skip
                    results.setdefault((case, transport), []).append(json.loads(out.stdout))
    finally:
        if backend is not None:
            backend.terminate()
            backend.wait(10)
    loop = next(iter(results.values()))[0]["loop"]
    server = "grpc-go" if args.go else ("grpc.aio" if args.upstream is None else args.upstream)
    print(f"client CPU per call/message, µs (median of {args.runs}; min-max), {loop}, server {server}")
    print(f"{'case':<12}{'grpc.aio':>22}{'native':>22}{'ratio':>8}{'csw grpcio/native':>20}")
    for case in CASES:
        cells = []
        medians = []
        csws = []
        for transport in ("grpcio", "native"):
            runs = results[(case, transport)]
            values = [r["us_cpu"] for r in runs]
            medians.append(statistics.median(values))
            csws.append(statistics.median(r["csw"] for r in runs))
            cells.append(f"{medians[-1]:.1f} ({min(values):.1f}-{max(values):.1f})")
        ratio = medians[1] / medians[0]
        print(f"{case:<12}{cells[0]:>22}{cells[1]:>22}{ratio:>8.2f}{csws[0]:>10.2f} / {csws[1]:.2f}")


if __name__ == "__main__":
    main()

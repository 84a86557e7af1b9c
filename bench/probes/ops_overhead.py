"""What the gateway's own Python costs per request with no upstream I/O, to compare runtime versions (e.g.
before/after the hooks, CORS and health code of docs/operations.md) to a fraction of a microsecond.

`python bench/probes/ops_overhead.py` (from a checkout, with its venv): generates bench/protos into a temp
dir and calls the generated app as ASGI with a fake channel whose calls complete at once (no grpc, no
server), for a unary GET, a unary POST and a 404; prints the minimum over repeats of CPU µs per request.
With `--features` (runtimes that have them) also: CORS on with an allowed Origin, and no-op hooks.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BODY = b'{"id":"abc","message":"hello","num":"42","tags":["a","b"],"labels":{"k":"v"}}'
N, REPEAT = 5000, 9


class _Call:
    def __init__(self, reply: Any) -> None:
        self.reply = reply

    def __await__(self) -> Any:
        if False:
            yield
        return self.reply

    async def initial_metadata(self) -> tuple[()]:
        return ()

    async def trailing_metadata(self) -> tuple[()]:
        return ()


class _Method:
    def __init__(self, deserializer: Any) -> None:
        self.reply = deserializer(b"")

    def __call__(self, payload: Any, metadata: Any = None, timeout: Any = None) -> _Call:
        return _Call(self.reply)


class FakeChannel:
    """Unary calls answered at once with an empty reply (what the gateway does around them is measured)."""

    def unary_unary(
        self, path: str, request_serializer: Any = None, response_deserializer: Any = None
    ) -> _Method:
        return _Method(response_deserializer)

    unary_stream = stream_unary = stream_stream = unary_unary


def scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def per_request(app: Any, sc: dict[str, Any], body: bytes, expect: int) -> float:
    event = {"type": "http.request", "body": body, "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return event

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    best = float("inf")
    for _ in range(REPEAT):
        start = time.process_time()
        for _ in range(N):
            await app(dict(sc), receive, send)
        best = min(best, (time.process_time() - start) * 1e6 / N)
    assert set(statuses) == {expect}, set(statuses)
    return best


async def measure(features: bool) -> list[tuple[str, float]]:
    gw = importlib.import_module("bench.v1.bench_pb2_gateway_echo_service")
    rt = importlib.import_module("pygateway_runtime")
    app = gw.create_app(FakeChannel())
    host = [(b"host", b"gw")]
    post = scope(
        "POST",
        "/v1/echo",
        [*host, (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
    )
    get = scope("GET", "/v1/echo/abc", host)
    rows = [
        ("unary GET /v1/echo/{id}", await per_request(app, get, b"", 200)),
        ("unary POST /v1/echo", await per_request(app, post, BODY, 200)),
        ("404 GET /nothing", await per_request(app, scope("GET", "/nothing", host), b"", 404)),
    ]
    if features:
        cors = gw.create_app(
            FakeChannel(), rt.GatewayOptions(cors=rt.CorsPolicy(allow_origins=["http://a.test"]))
        )
        origin = scope("GET", "/v1/echo/abc", [*host, (b"origin", b"http://a.test")])
        rows.append(("unary GET, CORS on, allowed Origin", await per_request(cors, origin, b"", 200)))

        def no_op(request: Any, value: Any) -> Any:
            return value if isinstance(value, list) else None

        hooked = gw.create_app(
            FakeChannel(), rt.GatewayOptions(incoming_metadata=no_op, forward_response=no_op)
        )
        rows.append(
            (
                "unary GET, no-op incoming_metadata + forward_response",
                await per_request(hooked, get, b"", 200),
            )
        )
        health = gw.create_app(FakeChannel(), rt.GatewayOptions(health=rt.HealthOptions()))
        rows.append(("unary GET, health endpoints on", await per_request(health, get, b"", 200)))
        rows.append(("GET /readyz", await per_request(health, scope("GET", "/readyz", host), b"", 200)))
    return rows


def main() -> int:
    features = "--features" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "protoc_gen_pygateway.protoc",
                f"-I{ROOT / 'bench' / 'protos'}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                f"--pygateway_out={out}",
                str(ROOT / "bench" / "protos" / "bench" / "v1" / "bench.proto"),
            ],
            check=True,
            cwd=ROOT,
        )
        sys.path.insert(0, str(out))
        rows = asyncio.run(measure(features))
    print(f"| gateway Python per request, fake channel ({ROOT.name}) | CPU us (min of {REPEAT} x {N}) |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

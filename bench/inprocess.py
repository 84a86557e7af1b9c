"""Where a generated gateway's CPU goes, without an HTTP server: `python -m bench.inprocess`.

Generates bench/protos/bench/v1/bench.proto into a temp dir, starts a grpc.aio EchoService backend in a
subprocess (loopback), then measures in this process, by `time.process_time()` (all threads, so grpc's
poller is included):
- the floor: bare grpc.aio unary calls and stream reads, 32 concurrent callers;
- the generated app called directly as ASGI (fake receive/send, no server): unary POST/GET, the same
  Echo over gRPC-Web and Connect (binary and JSON), one stream;
- per-request pieces (timeit): body parse, reply encode, request metadata, routing;
- with `--metrics` (needs prometheus_client): the same unary app with `GatewayOptions(metrics=...)`,
  alternated with the app without metrics (medians of 5 rounds each), and the metrics bookkeeping of one
  unary request alone (timeit).
The gap between the app and the floor is the gateway's own Python work; an ASGI server adds its own
cost on top (measured separately in bench/serving-configs.md).
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"id":"abc","message":"hello","num":"42","tags":["a","b"],"labels":{"k":"v"}}'
CALLERS, CALLS, STREAM = 32, 200, 20000

BACKEND = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import grpc
from bench.v1 import bench_pb2, bench_pb2_grpc

class Echo(bench_pb2_grpc.EchoServiceServicer):
    async def Echo(self, request, context):
        return bench_pb2.EchoResponse(id=request.id, message=request.message, num=request.num,
                                      tags=request.tags, labels=request.labels)

    async def Stream(self, request, context):
        for i in range(request.count):
            yield bench_pb2.EchoResponse(id="s", seq=i + 1)

async def main():
    server = grpc.aio.server()
    bench_pb2_grpc.add_EchoServiceServicer_to_server(Echo(), server)
    server.add_insecure_port("127.0.0.1:" + sys.argv[2])
    await server.start()
    await server.wait_for_termination()

asyncio.run(main())
"""


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


async def per_call(callers: int, calls: int, one: Any) -> float:
    """CPU microseconds per `one()` with `callers` concurrent loops of `calls` each (after a warm-up)."""

    async def loop(n: int) -> None:
        for _ in range(n):
            await one()

    await asyncio.gather(*(loop(10) for _ in range(callers)))
    start = time.process_time()
    await asyncio.gather(*(loop(calls) for _ in range(callers)))
    return (time.process_time() - start) * 1e6 / (callers * calls)


async def measure(port: int, with_metrics: bool = False) -> list[tuple[str, float]]:
    import grpc.aio
    from bench.v1 import bench_pb2

    gw = importlib.import_module("bench.v1.bench_pb2_gateway_echo_service")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    echo = channel.unary_unary(
        "/bench.v1.EchoService/Echo",
        request_serializer=bench_pb2.EchoRequest.SerializeToString,
        response_deserializer=bench_pb2.EchoResponse.FromString,
    )
    stream = channel.unary_stream(
        "/bench.v1.EchoService/Stream",
        request_serializer=bench_pb2.StreamRequest.SerializeToString,
        response_deserializer=bench_pb2.EchoResponse.FromString,
    )
    request = bench_pb2.EchoRequest(id="abc", message="hello", num=42, tags=["a", "b"], labels={"k": "v"})
    app = gw.create_app(channel)
    rows: list[tuple[str, float]] = []

    async def bare() -> None:
        await echo(request)

    rows.append(("floor: bare grpc.aio unary call", await per_call(CALLERS, CALLS, bare)))
    post = scope(
        "POST",
        "/v1/echo",
        [
            (b"host", b"gw"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
    )
    get = scope("GET", "/v1/echo/abc", [(b"host", b"gw")])
    binary = request.SerializeToString()
    frame = b"\x00" + len(binary).to_bytes(4, "big") + binary

    def rpc(kind: bytes, body: bytes, *extra: tuple[bytes, bytes]) -> dict[str, Any]:
        headers = [(b"host", b"gw"), (b"content-type", kind), (b"content-length", str(len(body)).encode())]
        return scope("POST", "/bench.v1.EchoService/Echo", [*headers, *extra])

    version = (b"connect-protocol-version", b"1")
    for name, sc, body in (
        ("app: unary POST /v1/echo", post, BODY),
        ("app: unary GET /v1/echo/{id}", get, b""),
        ("app: gRPC-Web unary (binary)", rpc(b"application/grpc-web+proto", frame), frame),
        ("app: Connect unary (application/proto)", rpc(b"application/proto", binary, version), binary),
        ("app: Connect unary (application/json)", rpc(b"application/json", BODY, version), BODY),
    ):
        event = {"type": "http.request", "body": body, "more_body": False}
        statuses: list[int] = []
        never = asyncio.get_running_loop().create_future()

        async def send(message: dict[str, Any], statuses: list[int] = statuses) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def one(sc: dict[str, Any] = sc, event: dict[str, Any] = event) -> None:
            events = [event]

            async def receive() -> dict[str, Any]:
                # As a server does: the body, then nothing until the client goes away (the gateway's
                # disconnect watcher waits here while the call runs).
                if events:
                    return events.pop()
                await asyncio.shield(never)
                return {"type": "http.disconnect"}

            await app(dict(sc), receive, send)

        rows.append((name, await per_call(CALLERS, CALLS, one)))
        assert set(statuses) == {200}, statuses

    if with_metrics:
        rows += await metrics_rows(gw, channel, post)
    # The same GET with the operating features on (docs/operations.md): CORS for an allowed origin, and
    # no-op hooks (what their checks and calls cost, not what a real hook does).
    rt = importlib.import_module("pygateway_runtime")
    cors_app = gw.create_app(
        channel, rt.GatewayOptions(cors=rt.CorsPolicy(allow_origins=["http://app.test"]))
    )

    def no_op(request: Any, value: Any) -> Any:
        return value if isinstance(value, list) else None

    hooks_app = gw.create_app(
        channel, rt.GatewayOptions(incoming_metadata=no_op, forward_response=no_op, error_handler=no_op)
    )
    get_origin = scope("GET", "/v1/echo/abc", [(b"host", b"gw"), (b"origin", b"http://app.test")])
    for name, variant in (
        ("app: unary GET, CORS on (allowed Origin)", cors_app),
        ("app: unary GET, no-op incoming/forward/error hooks", hooks_app),
    ):
        seen: list[int] = []
        get_event = {"type": "http.request", "body": b"", "more_body": False}

        async def receive_get() -> dict[str, Any]:
            return get_event

        async def send_get(message: dict[str, Any], seen: list[int] = seen) -> None:
            if message["type"] == "http.response.start":
                seen.append(message["status"])

        async def one_get(variant: Any = variant) -> None:
            await variant(dict(get_origin), receive_get, send_get)

        rows.append((name, await per_call(CALLERS, CALLS, one_get)))
        assert set(seen) == {200}, seen

    start = time.process_time()
    call = stream(bench_pb2.StreamRequest(count=STREAM))
    count = sum([1 async for _ in call])
    rows.append(
        ("floor: bare grpc.aio stream read, per message", (time.process_time() - start) * 1e6 / count)
    )

    lines = 0
    done = asyncio.Event()
    events = [{"type": "http.request", "body": b"", "more_body": False}]

    async def stream_receive() -> dict[str, Any]:
        if events:
            return events.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def stream_send(message: dict[str, Any]) -> None:
        nonlocal lines
        if message["type"] == "http.response.body":
            lines += message["body"].count(b"\n")

    start = time.process_time()
    await app(scope("GET", f"/v1/stream/{STREAM}", [(b"host", b"gw")]), stream_receive, stream_send)
    rows.append(("app: NDJSON stream, per message", (time.process_time() - start) * 1e6 / STREAM))
    done.set()
    assert lines == STREAM, lines

    req = rt.Request(post, None, None, app)
    reply = bench_pb2.EchoResponse(id="abc", message="hello", num=42, tags=["a", "b"], labels={"k": "v"})
    pieces = {
        "piece: body parse (POST request builder)": lambda: gw._echo_0_request(req, BODY),
        # The same two steps without the generated codecs: what json_format alone costs (before/after).
        "piece: body parse, generated fast path": lambda: gw._JSON.parse(
            bench_pb2.EchoRequest(), BODY, gw._decode_echo_request
        ),
        "piece: body parse, json_format only": lambda: gw._JSON.parse(bench_pb2.EchoRequest(), BODY),
        "piece: reply encode, generated encoder": lambda: gw._dump_echo_response(reply),
        "piece: reply encode, json_format only": lambda: gw._JSON.encode(reply),
        "piece: request metadata": lambda: rt.request_metadata(req, gw._POLICY),
        "piece: routing": lambda: app.resolve("GET", "/v1/echo/abc"),
    }
    rpc_module = importlib.import_module("pygateway_runtime.rpc")
    web = importlib.import_module("pygateway_runtime.grpcweb")
    echo_rpc = app.rpc["/bench.v1.EchoService/Echo"]
    web_req = rt.Request(rpc(b"application/grpc-web+proto", frame), None, None, app)

    def web_decode() -> bytes:
        frames = web.FrameDecoder(1 << 20)
        found = frames.feed(frame)
        frames.finish()
        return bytes(web.single_message(found))

    pieces.update(
        {
            "piece: gRPC-Web dispatch (choose)": lambda: rpc_module.choose(
                web_req, echo_rpc, lambda m: False
            ),
            "piece: gRPC-Web frame decode": web_decode,
            "piece: gRPC-Web/Connect request metadata": lambda: rpc_module.rpc_metadata(web_req, gw._POLICY),
            "piece: Connect JSON request -> bytes": lambda: echo_rpc.request_bytes(BODY, "json"),
            "piece: Connect JSON reply bytes -> JSON": lambda: echo_rpc.reply_bytes(
                reply.SerializeToString(), "json"
            ),
        }
    )
    for name, piece in pieces.items():
        rows.append((name, min(timeit.repeat(piece, number=20000, repeat=3)) / 20000 * 1e6))
    await channel.close()
    return rows


async def metrics_rows(gw: Any, channel: Any, post: dict[str, Any]) -> list[tuple[str, float]]:
    """Metrics off and on, side by side: the same unary POST through two apps, alternated."""
    import statistics

    from prometheus_client import CollectorRegistry

    rt = importlib.import_module("pygateway_runtime")
    observe = importlib.import_module("pygateway_runtime.observe")
    metrics_module = importlib.import_module("pygateway_runtime.metrics")
    metrics = metrics_module.Metrics(CollectorRegistry())
    apps = {"off": gw.create_app(channel), "on": gw.create_app(channel, rt.GatewayOptions(metrics=metrics))}
    event = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive() -> dict[str, Any]:
        return event

    async def send(message: dict[str, Any]) -> None:
        pass

    results: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(5):
        for key, app in apps.items():

            async def one(app: Any = app) -> None:
                await app(dict(post), receive, send)

            results[key].append(await per_call(CALLERS, CALLS, one))
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    rows = [
        ("app: unary POST, metrics off (median of 5, alternated)", off),
        ("app: unary POST, metrics on (median of 5, alternated)", on),
        ("difference (metrics on - off)", on - off),
    ]
    # The same two apps on a stub upstream (a call object answering at once, no grpc): only the gateway's
    # own Python runs, so the difference of a few microseconds is not lost in grpc's noise.
    reply = importlib.import_module("bench.v1.bench_pb2").EchoResponse(id="abc", message="hello")

    class StubCall:
        def __await__(self) -> Any:
            return self.reply().__await__()

        async def reply(self) -> Any:
            return reply

        async def initial_metadata(self) -> Any:
            return ()

        async def trailing_metadata(self) -> Any:
            return ()

    stubbed = {
        "off": gw.create_app(channel),
        "on": gw.create_app(channel, rt.GatewayOptions(metrics=metrics_module.Metrics(CollectorRegistry()))),
    }
    for app in stubbed.values():
        for each in app.routes:
            each.handler.__self__._echo = lambda *args, **kwargs: StubCall()
    stub: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(7):
        for key, app in stubbed.items():
            start = time.process_time()
            for _ in range(5000):
                await app(dict(post), receive, send)
            stub[key].append((time.process_time() - start) * 1e6 / 5000)
    stub_off, stub_on = statistics.median(stub["off"]), statistics.median(stub["on"])
    rows += [
        ("app on a stub upstream: unary POST, metrics off (median of 7)", stub_off),
        ("app on a stub upstream: unary POST, metrics on (median of 7)", stub_on),
        ("difference on the stub upstream (metrics on - off)", stub_on - stub_off),
    ]
    observers = observe.Observers(metrics, None, None)
    route = apps["on"].routes[0]
    metadata: list[tuple[str, str]] = []
    start_event = {"type": "http.response.start", "status": 200, "headers": []}
    body_event = {"type": "http.response.body", "body": b"{}"}

    def bookkeeping() -> None:
        exchange = observe.Exchange(observers, post, receive, send, "rid")
        exchange.routed(route)
        exchange.unary_started(metadata)
        exchange.unary_ended(0)
        # what the send wrapper does on the two events of a unary reply, without the await
        exchange.status = start_event["status"]  # type: ignore[assignment]
        exchange.response_bytes += len(body_event["body"])  # type: ignore[arg-type]
        exchange.finish()

    rows.append(
        (
            "piece: metrics bookkeeping of one unary request (Exchange, 5 reports)",
            min(timeit.repeat(bookkeeping, number=20000, repeat=3)) / 20000 * 1e6,
        )
    )
    return rows


def main() -> int:
    with_metrics = "--metrics" in sys.argv[1:]
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
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        backend = subprocess.Popen([sys.executable, "-c", BACKEND, str(out), str(port)])
        try:
            for _ in range(100):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            rows = asyncio.run(asyncio.wait_for(measure(port, with_metrics), 600))
        finally:
            backend.terminate()
            backend.wait(10)
    print("| what (Python grpc.aio backend, in-process, no HTTP server) | CPU us |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

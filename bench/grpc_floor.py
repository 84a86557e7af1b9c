"""The grpcio floor under a Python gateway: the client calls alone, no HTTP server and no gateway code.

    python bench/grpc_floor.py GEN_DIR HOST:PORT [grpcio|native]   # prints one JSON object

Against the same upstream as the gateways, in one process on uvloop when installed (as the serve command
runs), CPU by `time.process_time()` (all threads, so grpc's poller thread is included), after a warm-up:
- `unary`: 32 concurrent callers of Echo with the bench's POST message, as plain as grpc.aio allows;
- `unary_as_gateway`: the same with what a gateway call adds (two metadata entries, then awaiting the
  initial and trailing metadata for the Grpc-Metadata-* headers);
- `unary_get_as_gateway`: the same with GET /v1/echo/abc's request (only `id` set);
- `stream`: one Stream call of STREAM messages read with `await call.read()`;
- `stream_sync`: the same with the synchronous API (`for msg in call`), which no faster per message.
No gateway can go below these figures with grpcio; make bench prints them beside the gateways.

With `native` the same calls go through the gateway's own client (pygateway_runtime.native.NativeChannel,
from GEN_DIR: the copy the gateways run) in a process where grpcio never starts a channel (so none of its
threads run): the native transport's floor. `stream_sync` is grpcio's only.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

CALLERS, CALLS, STREAM = 32, 300, 100_000


def main() -> int:
    gen, addr = sys.argv[1], sys.argv[2]
    transport = sys.argv[3] if len(sys.argv) > 3 else "grpcio"
    sys.path.insert(0, gen)
    import grpc
    from bench.v1 import bench_pb2  # type: ignore[import-not-found]

    request = bench_pb2.EchoRequest(id="abc", message="hello", num=42, tags=["a", "b"], labels={"k": "v"})
    metadata = (("x-forwarded-for", "127.0.0.1"), ("grpcgateway-user-agent", "wrk"))
    result: dict[str, Any] = {}

    async def measure() -> None:
        if transport == "native":
            from pygateway_runtime.native import NativeChannel  # type: ignore[import-not-found]

            channel: Any = NativeChannel(addr)
        else:
            channel = grpc.aio.insecure_channel(addr)
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

        async def caller(n: int, as_gateway: bool, message: Any = request) -> None:
            for _ in range(n):
                call = echo(message, metadata=metadata if as_gateway else None)
                await call
                if as_gateway:
                    await call.initial_metadata()
                    await call.trailing_metadata()

        get = bench_pb2.EchoRequest(id="abc")  # what GET /v1/echo/abc sends
        for key, as_gateway, message in (
            ("unary", False, request), ("unary_as_gateway", True, request), ("unary_get_as_gateway", True, get)
        ):  # fmt: skip
            await asyncio.gather(*(caller(30, as_gateway, message) for _ in range(CALLERS)))
            start = time.process_time()
            await asyncio.gather(*(caller(CALLS, as_gateway, message) for _ in range(CALLERS)))
            result[key] = (time.process_time() - start) * 1e6 / (CALLERS * CALLS)
        start = time.process_time()
        call = stream(bench_pb2.StreamRequest(count=STREAM))
        count = 0
        while (await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
            count += 1
        result["stream"] = (time.process_time() - start) * 1e6 / max(count, 1)
        result["stream_msgs"] = count
        await channel.close(None)

    try:  # the loop the serve command runs on when uvloop is installed
        import uvloop
    except ImportError:
        asyncio.run(measure())
        result["loop"] = "asyncio"
    else:
        uvloop.run(measure())
        result["loop"] = "uvloop"
    result["transport"] = transport
    if transport == "native":
        print(json.dumps(result))
        return 0
    with grpc.insecure_channel(addr) as channel:
        sync_stream = channel.unary_stream(
            "/bench.v1.EchoService/Stream",
            request_serializer=bench_pb2.StreamRequest.SerializeToString,
            response_deserializer=bench_pb2.EchoResponse.FromString,
        )
        start = time.process_time()
        count = sum(1 for _ in sync_stream(bench_pb2.StreamRequest(count=STREAM)))
        result["stream_sync"] = (time.process_time() - start) * 1e6 / max(count, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

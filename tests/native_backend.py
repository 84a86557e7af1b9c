"""A grpc.aio backend for the native transport tests, on raw bytes (no protos): run as a subprocess,
`python -m tests.native_backend --port N [--max-concurrent-streams K] [--tls KEY CERT]`, prints "ready".

Methods (service test.Echo), request bytes read as ASCII commands where they steer the server:
- Unary: replies with the request; request metadata `echo-*` comes back as initial metadata and
  `echo-*-bin` as trailing metadata too.
- Fail: request "CODE:message" -> aborts with that code (trailers-only), the trailing metadata carrying
  `grpc-status-details-bin` = b"details:" + message and `extra-bin` = b"\\x00\\xff".
- Sleep: request "SECONDS" -> sleeps, then replies b"slept"; counts cancellations (see Stats).
- Big: request "N" -> replies N bytes.
- Stats: replies "cancelled=C active=A peak=P calls=N" (N: Unary calls served).
- Deadline: replies the call's time remaining in seconds as the server sees it, or "none".
- ServerStream: request "COUNT:SIZE:DELAY_MS[:CODE]" -> COUNT messages of SIZE bytes (then status CODE).
- ClientStream: replies "COUNT:TOTAL_BYTES" of what it received.
- Bidi: echoes every message; a message b"fail" ends the call with ABORTED.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

STATS = {"cancelled": 0, "active": 0, "peak": 0, "calls": 0}


class _Active:
    def __enter__(self) -> None:
        STATS["active"] += 1
        STATS["peak"] = max(STATS["peak"], STATS["active"])

    def __exit__(self, *exc: object) -> None:
        STATS["active"] -= 1


def _echo_metadata(context: grpc.aio.ServicerContext) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    initial, trailing = [], []
    for key, value in context.invocation_metadata() or ():
        if key.startswith("echo-"):
            initial.append((key, value))
            if key.endswith("-bin"):
                trailing.append((key, value))
    return initial, trailing


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    STATS["calls"] += 1
    initial, trailing = _echo_metadata(context)
    if initial:
        await context.send_initial_metadata(initial)
    if trailing:
        context.set_trailing_metadata(trailing)
    return request


async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    code_text, _, message = request.decode().partition(":")
    code = next(c for c in grpc.StatusCode if c.value[0] == int(code_text))
    context.set_trailing_metadata(
        [("grpc-status-details-bin", b"details:" + message.encode()), ("extra-bin", b"\x00\xff")]
    )
    await context.abort(code, message)
    raise AssertionError("unreachable")


async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    with _Active():
        try:
            await asyncio.sleep(float(request.decode()))
        except asyncio.CancelledError:
            STATS["cancelled"] += 1
            raise
    return b"slept"


async def big(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"b" * int(request.decode())


async def stats(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return " ".join(f"{k}={v}" for k, v in STATS.items()).encode()


async def deadline(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    remaining = context.time_remaining()
    return b"none" if remaining is None else f"{remaining:.3f}".encode()


async def server_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    count, size, delay, *fail = (int(x) for x in request.decode().split(":"))
    complete = False
    with _Active():
        try:
            for i in range(count):
                yield (str(i).encode() + b":").ljust(size, b"s")
                if delay:
                    await asyncio.sleep(delay / 1000)
            complete = True
            if fail:
                await context.abort(
                    next(c for c in grpc.StatusCode if c.value[0] == fail[0]), "failed after the messages"
                )
        finally:  # cancelled: CancelledError, or the generator closed (GeneratorExit)
            if not complete:
                STATS["cancelled"] += 1


async def client_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    count = total = 0
    async for item in requests:
        count += 1
        total += len(item)
    return f"{count}:{total}".encode()


async def bidi(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for item in requests:
        if item == b"fail":
            await context.abort(grpc.StatusCode.ABORTED, "asked to fail")
        yield item


def handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
            "Big": grpc.unary_unary_rpc_method_handler(big),
            "Stats": grpc.unary_unary_rpc_method_handler(stats),
            "Deadline": grpc.unary_unary_rpc_method_handler(deadline),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


async def serve(args: argparse.Namespace) -> None:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
    ]
    if args.max_concurrent_streams:
        options.append(("grpc.max_concurrent_streams", args.max_concurrent_streams))
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((handler(),))
    address = f"{args.host}:{args.port}"
    if args.tls:
        key, cert = (Path(p).read_bytes() for p in args.tls)
        server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await server.stop(args.grace)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-concurrent-streams", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("KEY", "CERT"))
    parser.add_argument("--grace", type=float, default=5.0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

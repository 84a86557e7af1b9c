"""gRPC-Web and Connect calls relayed (`rpc.py` parses and dispatches them): unary or server streaming
in a protocol's framing (`rpcwire.py`), each message flushed as it arrives, the final status last; and
what the observers (metrics, tracing, access log) are told of them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from .errors import ClientDisconnectedError, _pairs
from .lifecycle import _SHUTDOWN_TEXT, _Stop
from .rpcwire import _Failure, _Framing, header_metadata, trailer_metadata
from .streams import _EOF, _cancel_on_disconnect

if TYPE_CHECKING:
    from .asgi import Metadata
    from .observe import Exchange
    from .request import Request
    from .rpc import RpcMethod

Refusal = Callable[["Request", _Framing, "RpcMethod", _Failure], Awaitable[None]]


async def _call(
    request: Request,
    rpc: RpcMethod,
    framing: _Framing,
    payload: bytes,
    codec: str,
    metadata: Metadata,
    timeout: float | None,
    refuse: Refusal,
) -> None:
    """A unary or server-streaming call relayed in `framing`: each message flushed as it arrives, the
    final status last. The client going away cancels the call; a gateway shutdown ends a stream with
    UNAVAILABLE "gateway shutting down"."""
    streaming = rpc.kind == "unary_stream"
    if streaming and request.gateway.shutting_down:
        if request.exchange is not None:
            request.exchange.stream_refused(framing.protocol)
        await refuse(request, framing, rpc, _Failure(code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT))
        return
    exchange = _started(request, "server_stream" if streaming else "unary", metadata)
    call = rpc.raw(payload, metadata=tuple(metadata), timeout=timeout)
    if not streaming:
        await _unary(request, rpc, framing, call, codec, refuse)
        return
    if exchange is not None:
        exchange.stream_opened(framing.protocol)
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, call))
    try:
        with _Stop(request.gateway, call.cancel) as stop:
            await _relay(request, rpc, framing, call, codec, refuse, stop)
    except asyncio.CancelledError:
        if not watcher.done():
            raise
        raise ClientDisconnectedError from None
    finally:
        watcher.cancel()


def _started(request: Request, grpc_type: str, metadata: Metadata) -> Exchange | None:
    """Report the upstream call about to start (and its one request message) to the observers."""
    exchange = request.exchange
    if exchange is not None:
        exchange.call_started(grpc_type, metadata)
        exchange.message_sent()
    return exchange


async def finished_unary(call: Any, exchange: Exchange | None) -> tuple[Any, Any, Any]:
    """A unary call's reply, initial and trailing metadata, its outcome reported to the observers;
    raises the call's AioRpcError (reported too)."""
    try:
        reply = await call
        initial = await call.initial_metadata()
        trailing = await call.trailing_metadata()
    except grpc.aio.AioRpcError as err:
        if exchange is not None:
            exchange.unary_ended(err.code().value[0])
        raise
    if exchange is not None:
        exchange.unary_ended(0)
    return reply, initial, trailing


async def _unary(
    request: Request, rpc: RpcMethod, framing: _Framing, call: Any, codec: str, refuse: Refusal
) -> None:
    try:
        reply, initial, trailing = await finished_unary(call, request.exchange)
    except grpc.aio.AioRpcError as err:
        await refuse(request, framing, rpc, _Failure.of_rpc(err))
        return
    try:
        data = rpc.reply_bytes(reply, codec)
    except Exception:  # noqa: BLE001 - as above: a reply that cannot be printed is this call's INTERNAL
        await refuse(
            request,
            framing,
            rpc,
            _Failure(code_pb2.INTERNAL, f"{rpc.name}: the reply cannot be printed as JSON"),
        )
        return
    headers = [(b"content-type", framing.content_type), *header_metadata(rpc.policy, _pairs(initial))]
    body = framing.message(data) + framing.end(trailer_metadata(rpc.policy, _pairs(trailing)))
    await request.send_response(200, body, headers)


async def _relay(
    request: Request, rpc: RpcMethod, framing: _Framing, call: Any, codec: str, refuse: Refusal, stop: _Stop
) -> None:
    exchange = request.exchange
    rid = request.request_id
    try:
        first = await call.read()
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as err:
        if stop.fired:
            if exchange is not None:
                exchange.stream_ended("shutdown")
            await refuse(request, framing, rpc, _Failure(code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT))
            return
        if isinstance(err, asyncio.CancelledError):
            raise
        if exchange is not None:
            exchange.call_ended(err.code().value[0])
            exchange.stream_ended("upstream_error")
        await refuse(request, framing, rpc, _Failure.of_rpc(err))
        return
    initial = await call.initial_metadata()
    headers = [
        (b"content-type", framing.content_type),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
        *header_metadata(rpc.policy, _pairs(initial)),
    ]
    if rid is not None:
        headers.append((b"x-request-id", rid.encode("latin-1")))
    if exchange is not None:
        exchange.status = 200
    request.started = True
    await request.send({"type": "http.response.start", "status": 200, "headers": headers})
    final: bytes
    try:
        item = first
        while item is not _EOF:
            if exchange is not None:
                exchange.message_received()
            chunk = framing.message(rpc.reply_bytes(item, codec))
            await request.send({"type": "http.response.body", "body": chunk, "more_body": True})
            item = await call.read()
        final = framing.end(trailer_metadata(rpc.policy, _pairs(await call.trailing_metadata())))
        if exchange is not None:
            exchange.call_ended(0)
            exchange.stream_ended("ok")
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as err:
        if stop.fired:
            failure = _Failure(code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT)
            final = framing.error(failure, (), rid)
            outcome = "shutdown"
        elif isinstance(err, asyncio.CancelledError):
            raise
        else:
            failure = _Failure.of_rpc(err)
            final = framing.error(failure, trailer_metadata(rpc.policy, failure.trailing), rid)
            outcome = "upstream_error"
            if exchange is not None:
                exchange.call_ended(failure.code)
        if exchange is not None:
            exchange.answered(failure.code)
            exchange.stream_ended(outcome)
    await request.send({"type": "http.response.body", "body": final, "more_body": False})

"""Client and bidi streams over HTTP: NDJSON body lines (or raw HttpBody chunks) pumped into the call."""

from __future__ import annotations

import asyncio
from collections.abc import (
    Callable,
)
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf import (
    message,
)
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from .asgi import _JSON
from .errors import (
    ClientDisconnectedError,
    HttpError,
)
from .lifecycle import _SHUTDOWN_TEXT, _Stop
from .metadata import (
    request_metadata,
    response_metadata_headers,
)
from .request import _declared_length, _incomplete, _too_large
from .streams import (
    _cancel_on_disconnect,
    _refuse_while_shutting_down,
    _relay,
)

if TYPE_CHECKING:
    from .options import HeaderPolicy
    from .request import Request


class _BodyPump:
    """Feeds an NDJSON request body to a client-streaming call, one message per line, as it arrives."""

    def __init__(self, request: Request, call: Any, build: Callable[[bytes, bool], message.Message]) -> None:
        self.request = request
        self.call = call
        self.build = build
        self.problem: HttpError | None = None
        self.disconnected = False
        self.input_done = False

    async def run(self) -> None:
        try:
            await self._pump()
        except HttpError as err:
            self.problem = err
            self.call.cancel()
            return
        except ClientDisconnectedError:
            self.disconnected = True
            self.call.cancel()
            return
        self.input_done = True
        # Input is complete: keep watching for the client going away while replies flow.
        await _cancel_on_disconnect(self.request, self.call)
        self.disconnected = True

    async def _pump(self) -> None:
        request = self.request
        limit = request.gateway.max_body_bytes
        declared = _declared_length(request, limit)
        size = 0
        pending = b""
        first = True
        while True:
            event = await request.receive()
            if event["type"] == "http.disconnect":
                raise ClientDisconnectedError
            chunk = event.get("body", b"")
            size += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > limit:
                raise _too_large(limit)
            for line in lines:
                if line.strip():
                    await self._write(line, first)
                    first = False
            if not event.get("more_body", False):
                break
        if declared is not None and size != declared:
            raise _incomplete(size, declared)
        if pending.strip():
            await self._write(pending, first)
        elif first:
            # No request message at all: still refuse bad query parameters (they would have applied to
            # the first message) instead of dropping them silently; the stream itself is empty.
            self.build(b"", True)
        await self.call.done_writing()

    async def _write(self, line: bytes, first: bool) -> None:
        await self.call.write(self.build(line, first))
        if self.request.exchange is not None:
            self.request.exchange.message_sent()


#: Largest message a raw (google.api.HttpBody) client stream sends upstream: bigger received chunks are
#: split, smaller ones go as they arrive (never held back to fill a message).
RAW_CHUNK_BYTES = 65536


class _RawBodyPump(_BodyPump):
    """Feeds a raw request body to a client stream of HttpBody messages, as it arrives, in messages of at
    most RAW_CHUNK_BYTES. A body ending short of its Content-Length cancels the call (HttpError)."""

    async def _pump(self) -> None:
        request = self.request
        declared = _declared_length(request, request.gateway.max_body_bytes)
        size = 0
        first = True
        while True:
            event = await request.receive()
            if event["type"] == "http.disconnect":
                raise ClientDisconnectedError
            chunk = event.get("body", b"")
            size += len(chunk)
            for start in range(0, len(chunk), RAW_CHUNK_BYTES):
                await self._write(chunk[start : start + RAW_CHUNK_BYTES], first)
                first = False
            if not event.get("more_body", False):
                break
        if declared is not None and size != declared:
            raise _incomplete(size, declared)
        if first:  # an empty body is an empty stream; its query parameters are still checked
            self.build(b"", True)
        await self.call.done_writing()


async def client_stream_call(
    request: Request,
    method: Any,
    build: Callable[[bytes, bool], message.Message],
    policy: HeaderPolicy,
    encode: Callable[[Any], Any],
    server_streaming: bool,
    encode_reply: Callable[[Any], bytes],
    chunked: bool = False,
) -> None:
    """Client or bidi streaming over HTTP/1.1 or HTTP/2: the NDJSON body streamed upstream as it arrives,
    replies relayed as they come (full duplex where the server and client allow it).

    A gateway shutdown ends bidi streams like server streams; a client stream still sending its body is
    ended with 503 UNAVAILABLE, one whose body is complete finishes like a unary call.

    `chunked`: the body is raw bytes (google.api.HttpBody), sent as messages of at most RAW_CHUNK_BYTES."""
    metadata, timeout = request_metadata(request, policy)
    hooks = request.gateway.hooks
    if hooks is not None and hooks.incoming_metadata is not None:
        metadata = await hooks.incoming(request, policy, metadata)
    if server_streaming and await _refuse_while_shutting_down(request):
        return
    exchange = request.exchange
    if request.gateway.shutting_down:
        if exchange is not None:
            exchange.stream_refused("ndjson")
        raise HttpError(503, code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT)
    if exchange is not None:
        exchange.call_started("bidi_stream" if server_streaming else "client_stream", metadata)
        if not server_streaming:  # bidi streams: opened by the relay, which knows the framing
            exchange.stream_opened("ndjson")
    call = method(metadata=tuple(metadata), timeout=timeout)
    pump = (_RawBodyPump if chunked else _BodyPump)(request, call, build)
    task = asyncio.ensure_future(pump.run())

    def stop_call() -> None:
        if server_streaming or not pump.input_done:
            call.cancel()

    try:
        with _Stop(request.gateway, stop_call) as stop:
            if server_streaming:
                await _relay(request, call, policy, encode, lambda: pump.problem, stop)
                return
            try:
                reply = await call
                initial = await call.initial_metadata()
                trailing = await call.trailing_metadata()
            except grpc.aio.AioRpcError as err:
                if pump.problem is not None:
                    if exchange is not None:
                        exchange.stream_ended("bad_request")
                    raise pump.problem from None
                if exchange is not None:
                    exchange.call_ended(err.code().value[0])
                    exchange.stream_ended("upstream_error")
                await request.send_rpc_error(err, policy, None)
                return
            except asyncio.CancelledError:
                if pump.problem is not None:
                    if exchange is not None:
                        exchange.stream_ended("bad_request")
                    raise pump.problem from None
                if stop.fired and not pump.disconnected:
                    if exchange is not None:
                        exchange.stream_ended("shutdown")
                    raise HttpError(503, code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT) from None
                raise
            if exchange is not None:
                exchange.message_received()
                exchange.call_ended(code_pb2.OK)
                exchange.stream_ended("ok")
            if hooks is not None and hooks.shapes_replies:
                await hooks.send_reply_message(request, policy, reply, encode_reply, initial, trailing)
                return
            headers = [_JSON, *response_metadata_headers(policy, initial or (), trailing or ())]
            await request.send_response(200, encode_reply(reply), headers)
    except asyncio.CancelledError:
        if pump.problem is not None:
            if exchange is not None:
                exchange.stream_ended("bad_request")
            raise pump.problem from None
        if pump.disconnected:
            raise ClientDisconnectedError from None
        raise
    finally:
        task.cancel()

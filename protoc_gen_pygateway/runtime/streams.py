"""Streaming calls over HTTP: NDJSON and SSE framing of server streams, NDJSON client streams."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import (
    Callable,
    Iterable,
    Sequence,
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
    HTTP_STATUS,
    ClientDisconnectedError,
    HttpError,
    _pairs,
    _rpc_error_data,
    _rpc_failure,
    _status_data,
)
from .jsonstyle import dump_json
from .lifecycle import _SHUTDOWN_TEXT, _Stop
from .metadata import (
    _VALID_KEY,
    _printable,
    request_metadata,
    response_metadata_headers,
)
from .request import _declared_length, _incomplete, _too_large

if TYPE_CHECKING:
    from .options import HeaderPolicy
    from .request import Request


_NDJSON = b"application/x-ndjson"


_SSE = b"text/event-stream"


_STREAM_HEADERS = [
    # Proxies must pass each message on at once: no caching, no buffering (nginx honours the latter).
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _trailer_data(trailing: Iterable[tuple[str, str | bytes]], policy: HeaderPolicy) -> dict[str, str]:
    data: dict[str, str] = {}
    for key, value in trailing:
        if policy.blocked(key) or not _VALID_KEY.match(key):
            continue
        data[key] = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
    return data


#: grpc.aio's end-of-stream marker for `call.read()` (absent from the type stubs).
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined,unused-ignore]


class _Framing:
    content_type = _NDJSON

    def message(self, data: Any) -> bytes:
        return dump_json({"result": data}) + b"\n"

    def error(self, status: dict[str, Any], trailers: dict[str, str]) -> bytes:
        # Always with "trailers" (also when empty), as SSE and WebSocket: one shape for clients to parse.
        return dump_json({"error": status, "trailers": trailers}) + b"\n"

    def end(self, trailers: dict[str, str]) -> bytes:
        return b""


class _SseFraming(_Framing):
    content_type = _SSE

    def message(self, data: Any) -> bytes:
        return b"data: " + dump_json(data) + b"\n\n"

    def error(self, status: dict[str, Any], trailers: dict[str, str]) -> bytes:
        return b"event: error\ndata: " + dump_json({"error": status, "trailers": trailers}) + b"\n\n"

    def end(self, trailers: dict[str, str]) -> bytes:
        return b"event: end\ndata: " + dump_json({"trailers": trailers}) + b"\n\n"


_NDJSON_FRAMING = _Framing()


_SSE_FRAMING = _SseFraming()


def _framing(request: Request) -> _Framing:
    """`Accept: text/event-stream` selects SSE; anything else (x-ndjson, json, */*, none) NDJSON."""
    accept = request.header(b"accept")
    return _SSE_FRAMING if accept is not None and b"text/event-stream" in accept.lower() else _NDJSON_FRAMING


def _wants_trailers(request: Request) -> bool:
    te = request.header(b"te")
    extensions = request.scope.get("extensions") or {}
    return te is not None and b"trailers" in te.lower() and "http.response.trailers" in extensions


async def _relay(
    request: Request,
    call: Any,
    policy: HeaderPolicy,
    encode: Callable[[Any], Any],
    failure: Callable[[], HttpError | None],
    stop: _Stop,
) -> None:
    """Send a gRPC response stream as NDJSON or SSE: each message flushed as it arrives.

    Backpressure is end to end: the next message is read from gRPC only after `send` returned, and
    ASGI servers make `send` wait while the client is not reading. A gateway shutdown (`stop` fired)
    ends the stream with UNAVAILABLE "gateway shutting down".
    """
    framing = _framing(request)
    try:
        first = await call.read()
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as err:
        problem = failure()
        if problem is not None:
            raise problem from None
        if stop.fired:
            shutdown = _status_data(code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT)
            await _stream_refusal(request, framing, code_pb2.UNAVAILABLE, shutdown)
            return
        if isinstance(err, asyncio.CancelledError):
            raise
        code, http_status, text, details, failed_trailers = _rpc_failure(err)
        await _stream_refusal(
            request,
            framing,
            code,
            _status_data(code, text, details),
            _trailer_data(failed_trailers, policy),
            response_metadata_headers(policy, _pairs(err.initial_metadata()), ()),
            http_status,
        )
        return
    initial = await call.initial_metadata()
    trailers = _wants_trailers(request)
    headers = [
        (b"content-type", framing.content_type),
        *_STREAM_HEADERS,
        *response_metadata_headers(policy, initial or (), ()),
    ]
    request.started = True
    await request.send(
        {"type": "http.response.start", "status": 200, "headers": headers, "trailers": trailers}
    )
    final = b""
    trailing: list[tuple[str, str | bytes]] = []
    code = code_pb2.OK
    try:
        item = first
        while item is not _EOF:
            await request.send(
                {"type": "http.response.body", "body": framing.message(encode(item)), "more_body": True}
            )
            item = await call.read()
        trailing = _pairs(await call.trailing_metadata())
        final = framing.end(_trailer_data(trailing, policy))
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as err:
        problem = failure()  # a bad request message cancelled the call: report it, not the cancellation
        if problem is not None:
            code = problem.code
            final = framing.error(_status_data(problem.code, problem.message), {})
        elif stop.fired:
            code = code_pb2.UNAVAILABLE
            final = framing.error(_status_data(code, _SHUTDOWN_TEXT), {})
        elif isinstance(err, asyncio.CancelledError):
            raise
        else:
            code, status, trailing = _rpc_error_data(err)
            final = framing.error(status, _trailer_data(trailing, policy))
    # The body ends (more_body False) before the trailers message: the ASGI trailers extension's order,
    # which servers enforce (hypercorn rejects trailers sent while the body is still open).
    await request.send({"type": "http.response.body", "body": final, "more_body": False})
    if trailers:
        # Grpc-Status (the final gRPC code) is always there: it tells a complete stream from a cut one,
        # and an empty trailer block cannot be sent (hypercorn/h2 fail on it, dropping the connection).
        headers = [
            *response_metadata_headers(policy, (), trailing),
            (b"grpc-status", str(code).encode("latin-1")),
        ]
        await request.send({"type": "http.response.trailers", "headers": headers, "more_trailers": False})


async def _stream_refusal(
    request: Request,
    framing: _Framing,
    code: int,
    status: dict[str, Any],
    trailers: dict[str, str] | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    http_status: int | None = None,
) -> None:
    """A stream that failed before its first message: one complete response, status from the gRPC code,
    the body the stream's final error line (or SSE event)."""
    head = [(b"content-type", framing.content_type), *headers]
    if code == code_pb2.UNAUTHENTICATED:
        head.append((b"www-authenticate", _printable(status["message"]).encode("latin-1")))
    body = framing.error(status, trailers or {})
    await request.send_response(http_status or HTTP_STATUS.get(code, 500), body, head)


async def _refuse_while_shutting_down(request: Request) -> bool:
    """Answer a new stream during a gateway shutdown with 503 "gateway shutting down" (True), else False."""
    if not request.gateway.shutting_down:
        return False
    status = _status_data(code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT)
    await _stream_refusal(request, _framing(request), code_pb2.UNAVAILABLE, status)
    return True


async def _cancel_on_disconnect(request: Request, call: Any) -> None:
    """Cancel the upstream call as soon as the HTTP client goes away."""
    while True:
        event = await request.receive()
        if event["type"] == "http.disconnect":
            call.cancel()
            return


async def server_stream_call(
    request: Request,
    method: Any,
    payload: message.Message,
    policy: HeaderPolicy,
    encode: Callable[[Any], Any],
) -> None:
    """A server-streaming call: one request message, the reply stream relayed as NDJSON or SSE."""
    metadata, timeout = request_metadata(request, policy)
    if await _refuse_while_shutting_down(request):
        return
    call = method(payload, metadata=tuple(metadata), timeout=timeout)
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, call))
    try:
        with _Stop(request.gateway, call.cancel) as stop:
            await _relay(request, call, policy, encode, lambda: None, stop)
    except asyncio.CancelledError:
        if not watcher.done():
            raise
        raise ClientDisconnectedError from None  # the watcher cancelled the call: the client left
    finally:
        watcher.cancel()


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


async def client_stream_call(
    request: Request,
    method: Any,
    build: Callable[[bytes, bool], message.Message],
    policy: HeaderPolicy,
    encode: Callable[[Any], Any],
    server_streaming: bool,
    encode_reply: Callable[[Any], bytes],
) -> None:
    """Client or bidi streaming over HTTP/1.1 or HTTP/2: the NDJSON body streamed upstream as it arrives,
    replies relayed as they come (full duplex where the server and client allow it).

    A gateway shutdown ends bidi streams like server streams; a client stream still sending its body is
    ended with 503 UNAVAILABLE, one whose body is complete finishes like a unary call."""
    metadata, timeout = request_metadata(request, policy)
    if server_streaming and await _refuse_while_shutting_down(request):
        return
    if request.gateway.shutting_down:
        raise HttpError(503, code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT)
    call = method(metadata=tuple(metadata), timeout=timeout)
    pump = _BodyPump(request, call, build)
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
                    raise pump.problem from None
                await request.send_rpc_error(err, policy, None)
                return
            except asyncio.CancelledError:
                if pump.problem is not None:
                    raise pump.problem from None
                if stop.fired and not pump.disconnected:
                    raise HttpError(503, code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT) from None
                raise
            headers = [_JSON, *response_metadata_headers(policy, initial or (), trailing or ())]
            await request.send_response(200, encode_reply(reply), headers)
    except asyncio.CancelledError:
        if pump.problem is not None:
            raise pump.problem from None
        if pump.disconnected:
            raise ClientDisconnectedError from None
        raise
    finally:
        task.cancel()

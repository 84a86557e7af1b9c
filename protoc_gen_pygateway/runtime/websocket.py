"""Streaming calls over WebSocket (all three streaming kinds)."""

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
from .errors import HttpError, _pairs, _rpc_error_data, _status_data, error_body
from .jsonstyle import dump_json
from .lifecycle import _SHUTDOWN_TEXT, _Stop
from .metadata import request_metadata
from .observe import request_id_info
from .streams import _trailer_data

if TYPE_CHECKING:
    from .observe import Exchange
    from .options import HeaderPolicy
    from .request import Request


def _close_code(code: int) -> int:
    """WebSocket close code for a final gRPC status: 1000 for OK, 4000 + code otherwise (private range)."""
    return 1000 if code == 0 else 4000 + code


def _close_reason(text: str) -> str:
    # A close frame's reason is at most 123 bytes of UTF-8.
    return text.encode("utf-8")[:120].decode("utf-8", "ignore")


async def websocket_call(
    request: Request,
    method: Any,
    kind: str,
    build: Callable[[bytes, bool], message.Message],
    has_body: bool,
    policy: HeaderPolicy,
    encode: Callable[[Any], Any],
) -> None:
    """A streaming RPC over WebSocket.

    Each text (or binary, UTF-8) message from the client is one JSON request message; path and query
    parameters apply to the first. An empty message or `null` ends client input (half-close). Each reply
    is a `{"result": ...}` text message; the last is `{"end": {"trailers": ...}}` (close 1000) or
    `{"error": <google.rpc.Status>, "trailers": ...}` (close 4000 + gRPC code). A server-streaming route
    with a body waits for its one request message; one without a body starts at once.

    A gateway shutdown ends the stream with `{"error": {"code": 14, "message": "gateway shutting down"}}`
    and close 1001 (Going Away), except a client stream whose input is complete (it finishes like a unary
    call); during a shutdown, handshakes are refused with 503.
    """
    if (await request.receive())["type"] != "websocket.connect":
        return
    try:
        metadata, timeout = request_metadata(request, policy)
        hooks = request.gateway.hooks
        if hooks is not None and hooks.incoming_metadata is not None:
            metadata = await hooks.incoming(request, policy, metadata)
    except HttpError as err:
        await _refuse(request, err.status, err.code, err.message)
        return
    if request.gateway.shutting_down:
        if request.exchange is not None:
            request.exchange.stream_refused("websocket")
        await _refuse(request, 503, code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT)
        return
    await request.send({"type": "websocket.accept", "headers": _id_header(request)})
    request.started = True
    exchange = request.exchange
    if exchange is not None:
        exchange.status = 101
        exchange.call_started(_GRPC_TYPES[kind], metadata)
        exchange.stream_opened("websocket")
    # maxsize=1: a client sending faster than the upstream takes messages is not read further
    # (backpressure through the WebSocket's TCP window instead of gateway memory).
    inbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
    reader = asyncio.ensure_future(_read_websocket(request, inbox))
    problems: list[HttpError] = []
    call: Any = None
    tasks: list[asyncio.Future[None]] = [reader]
    stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def stop_stream() -> None:
        if kind == "stream_unary" and len(tasks) > 1 and tasks[1].done() and not problems:
            return  # input complete: the reply is on its way, as for a unary call
        if not stopped.done():
            stopped.set_result(None)
        if call is not None:
            call.cancel()

    stop = _Stop(request.gateway, stop_stream).__enter__()
    try:
        if kind == "unary_stream":
            line = (await _first_message(inbox, reader, stopped)) if has_body else b""
            if line is None:
                if stopped.done() and not reader.done():
                    if exchange is not None:
                        exchange.stream_ended("shutdown")
                    await _ws_shutdown_error(request)
                return
            call = method(build(line, True), metadata=tuple(metadata), timeout=timeout)
            if exchange is not None:
                exchange.message_sent()
        else:
            call = method(metadata=tuple(metadata), timeout=timeout)
            tasks.append(asyncio.ensure_future(_feed_websocket(inbox, call, build, problems, exchange)))
        if stopped.done():  # shut down while the call was being made
            call.cancel()
        tasks.append(asyncio.ensure_future(_cancel_when(reader, call)))
        if kind == "stream_unary":
            reply = await call
            if exchange is not None:
                exchange.message_received()
            await _ws_send(request, {"result": encode(reply)})
        else:
            async for item in call:
                if exchange is not None:
                    exchange.message_received()
                await _ws_send(request, {"result": encode(item)})
        trailing = _pairs(await call.trailing_metadata())
        if exchange is not None:
            exchange.call_ended(code_pb2.OK)
            exchange.stream_ended("ok")
        await _ws_send(request, {"end": {"trailers": _trailer_data(trailing, policy)}})
        await request.send({"type": "websocket.close", "code": 1000})
    except HttpError as err:
        if call is not None:
            call.cancel()
        if exchange is not None:
            exchange.stream_ended("bad_request")
        await _ws_final_error(request, err.code, _status_data(err.code, err.message), {})
    except grpc.aio.AioRpcError as err:
        if problems:
            if exchange is not None:
                exchange.stream_ended("bad_request")
            await _ws_final_error(
                request, problems[0].code, _status_data(problems[0].code, problems[0].message), {}
            )
        else:
            code, status, trailing = _rpc_error_data(err)
            if exchange is not None:
                exchange.call_ended(code)
                exchange.stream_ended("upstream_error")
            await _ws_final_error(request, code, status, _trailer_data(trailing, policy))
    except asyncio.CancelledError:
        if problems:  # a bad client message cancelled the call
            if exchange is not None:
                exchange.stream_ended("bad_request")
            await _ws_final_error(
                request, problems[0].code, _status_data(problems[0].code, problems[0].message), {}
            )
        elif reader.done():  # the client left
            if exchange is not None:
                exchange.stream_ended("client_gone")
        elif stopped.done():  # the gateway is shutting down
            if exchange is not None:
                exchange.stream_ended("shutdown")
            await _ws_shutdown_error(request)
        else:  # the gateway task itself is being cancelled
            raise
    finally:
        stop.__exit__()
        for task in tasks:
            task.cancel()


#: websocket_call's `kind` -> go-grpc-middleware's grpc_type label.
_GRPC_TYPES = {
    "unary_stream": "server_stream",
    "stream_unary": "client_stream",
    "stream_stream": "bidi_stream",
}


def _id_header(request: Request) -> list[tuple[bytes, bytes]]:
    """The handshake response's X-Request-ID (none when request ids are off)."""
    rid = request.request_id
    return [(b"x-request-id", rid.encode("latin-1"))] if rid is not None else []


async def _ws_send(request: Request, data: Any) -> None:
    await request.send({"type": "websocket.send", "text": dump_json(data).decode("utf-8")})


async def _ws_final_error(
    request: Request, code: int, status: dict[str, Any], trailers: dict[str, str], close: int | None = None
) -> None:
    if request.request_id is not None:
        status["details"].append(request_id_info(request.request_id))
    if request.exchange is not None:
        request.exchange.answered(code)
    try:
        await _ws_send(request, {"error": status, "trailers": trailers})
        close = _close_code(code) if close is None else close
        await request.send(
            {"type": "websocket.close", "code": close, "reason": _close_reason(status["message"])}
        )
    except (OSError, RuntimeError):  # the client is already gone
        pass


async def _ws_shutdown_error(request: Request) -> None:
    """The final message of a WebSocket stream a gateway shutdown ends: close 1001 (Going Away)."""
    await _ws_final_error(
        request, code_pb2.UNAVAILABLE, _status_data(code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT), {}, 1001
    )


async def _read_websocket(request: Request, inbox: asyncio.Queue[bytes | None]) -> None:
    """Client frames into `inbox`; None for end of input. Returns when the client disconnects."""
    ended = False
    while True:
        event = await request.receive()
        if event["type"] == "websocket.disconnect":
            return
        if event["type"] != "websocket.receive" or ended:
            continue
        data = event.get("bytes") or (event.get("text") or "").encode("utf-8")
        if not data.strip() or data.strip() == b"null":
            ended = True
            await inbox.put(None)
        else:
            await inbox.put(data)


async def _first_message(
    inbox: asyncio.Queue[bytes | None], reader: asyncio.Future[None], stopped: asyncio.Future[None]
) -> bytes | None:
    """The client's first message, or None when it ends input, leaves or the gateway stops before one."""
    getter: asyncio.Future[bytes | None] = asyncio.ensure_future(inbox.get())
    try:
        await asyncio.wait([getter, reader, stopped], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var,misc,unused-ignore]
    finally:
        if not getter.done():
            getter.cancel()
    if getter.cancelled():
        return None
    return getter.result()


async def _feed_websocket(
    inbox: asyncio.Queue[bytes | None],
    call: Any,
    build: Callable[[bytes, bool], message.Message],
    problems: list[HttpError],
    exchange: Exchange | None = None,
) -> None:
    """Client messages into a client-streaming call; a bad message cancels the call and is reported."""
    first = True
    while True:
        data = await inbox.get()
        if data is None:
            await call.done_writing()
            return
        try:
            payload = build(data, first)
        except HttpError as err:
            problems.append(err)
            call.cancel()
            return
        first = False
        await call.write(payload)
        if exchange is not None:
            exchange.message_sent()


async def _cancel_when(reader: asyncio.Future[None], call: Any) -> None:
    """Cancel the upstream call when the WebSocket client disconnects."""
    await asyncio.shield(reader)
    call.cancel()


async def _refuse(request: Request, status: int, code: int, text: str) -> None:
    """Refuse a WebSocket handshake as GatewayOptions.websocket_refusal says."""
    if request.exchange is not None:  # accepted then closed, or an HTTP answer
        request.exchange.status = 101 if request.gateway.options.websocket_refusal == "close" else status
    if request.gateway.options.websocket_refusal == "close":
        await request.send({"type": "websocket.accept", "headers": _id_header(request)})
        await _ws_final_error(request, code, _status_data(code, text), {})
    elif "websocket.http.response" in (request.scope.get("extensions") or {}):
        if request.exchange is not None:
            request.exchange.answered(code)
        body = error_body(code, text, (), request.request_id)
        headers = [_JSON, (b"content-length", str(len(body)).encode()), *_id_header(request)]
        await request.send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await request.send({"type": "websocket.http.response.body", "body": body})
    else:
        if request.exchange is not None:
            request.exchange.status = 403  # the server refuses a handshake closed before accepting
        await request.send({"type": "websocket.close", "code": 1008})

"""One native RPC (`_Call`): request headers and message out, response headers, messages, trailers and
resets in, the deadline, and grpc.aio's call API on top (the kinds of call are in multicallable.py)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import grpc

from . import frames as h2
from .hpackcodec import encode_literal
from .rpcwire import (
    _CODES,
    _HTTP_TO_GRPC,
    _MSG_HEAD,
    _NOT_METADATA,
    _RST_TO_GRPC,
    NativeRpcError,
    _decode_metadata,
    _encode_metadata,
    _timeout_header,
)

if TYPE_CHECKING:
    from .channel import NativeChannel
    from .multicallable import _Method
    from .protocol import _Connection

# ---------------------------------------------------------------------------------------------- calls


class _Call:
    """One RPC. Response messages are decoded as they arrive and queued for `read()` (bounded by the
    stream's receive window, which reopens only as they are read)."""

    __slots__ = (
        "_buf",
        "_cancelled",
        "_channel",
        "_client_streaming",
        "_code",
        "_conn",
        "_credit",
        "_deadline",
        "_deserializer",
        "_details",
        "_done_callbacks",
        "_done_waiter",
        "_encoding",
        "_headers",
        "_initial",
        "_initial_waiter",
        "_loop",
        "_max_receive",
        "_max_send",
        "_messages",
        "_method",
        "_read_waiter",
        "_request",
        "_requests_task",
        "_response_started",
        "_serializer",
        "_sid",
        "_start_waiter",
        "_timer",
        "_trailing",
        "_write_waiter",
        "_writes_done",
    )

    def __init__(
        self,
        channel: NativeChannel,
        method: _Method,
        request: Any,
        metadata: Any,
        timeout: float | None,
        client_streaming: bool,
    ) -> None:
        loop = channel._loop_now()
        self._loop = loop
        self._channel = channel
        self._method = method
        self._deserializer = method.deserializer
        self._serializer = method.serializer
        self._client_streaming = client_streaming
        self._max_receive = channel._opts.max_receive
        self._max_send = channel._opts.max_send
        self._conn: _Connection | None = None
        self._sid = 0
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._initial: grpc.aio.Metadata | None = None
        self._trailing: grpc.aio.Metadata | None = None
        self._messages: deque[tuple[Any, int]] = deque()
        self._buf = bytearray()
        self._credit = 0
        self._encoding = ""
        self._response_started = False
        self._cancelled = False
        self._writes_done: bool = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._initial_waiter: asyncio.Future[None] | None = None
        self._done_waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._start_waiter: asyncio.Future[None] | None = None
        self._done_callbacks: list[Callable[[Any], None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._requests_task: asyncio.Task[None] | None = None
        self._request: bytes | None = None
        self._deadline: float | None = None
        block = method.prefix
        if timeout is not None:
            if timeout <= 0:
                self._deadline = loop.time()
                self._headers = b""
                self._finish(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
                return
            self._deadline = loop.time() + timeout
            block += encode_literal(b"grpc-timeout", _timeout_header(timeout))
            self._timer = loop.call_at(self._deadline, self._on_deadline)
        if metadata:
            for key, value in metadata:
                if key.lower() == "grpc-encoding" and value != "identity":
                    self._headers = b""
                    self._finish(
                        grpc.StatusCode.UNIMPLEMENTED,
                        f"grpc-encoding {value!r} refused: the native transport sends identity-encoded"
                        " messages only",
                    )
                    return
            try:
                block += _encode_metadata(metadata)
            except (UnicodeError, AttributeError, TypeError, ValueError) as err:
                self._headers = b""
                self._finish(grpc.StatusCode.INTERNAL, f"invalid metadata: {err}")
                return
        self._headers = block
        if not client_streaming:
            try:
                payload = request if self._serializer is None else self._serializer(request)
            except Exception as err:  # noqa: BLE001 - a serializer's failure, whatever it is, is this call's status
                self._finish(grpc.StatusCode.INTERNAL, f"Exception serializing request: {err}")
                return
            if self._too_big_to_send(len(payload)):
                return
            self._request = _MSG_HEAD.pack(0, len(payload)) + payload
        channel._submit(self)

    # ------------------------------------------------------------------------------------------ start

    def _too_big_to_send(self, size: int) -> bool:
        if 0 <= self._max_send < size:
            self._finish(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Sent message larger than max ({size} vs. {self._max_send})",
            )
            return True
        return False

    def _retryable(self) -> bool:
        """Only a call whose whole request the transport holds and of which nothing was answered."""
        return not self._client_streaming and not self._response_started and self._code is None

    def _start_on(self, conn: _Connection) -> None:
        """Open the stream (HEADERS, then the request message for unary requests) on a ready connection."""
        self._conn = conn
        request = self._request
        sid = conn.core.open_stream(self._headers, False)
        self._sid = sid
        conn.calls[sid] = self
        if request is not None:
            conn.core.send_data(sid, request, True)
        conn.schedule_flush()
        waiter = self._start_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _detach(self) -> None:
        """Forget the stream (the call is going to be retried elsewhere)."""
        if self._conn is not None:
            self._conn.calls.pop(self._sid, None)
        self._conn = None
        self._sid = 0

    # ------------------------------------------------------------------------------------------ events

    def _on_headers(self, headers: list[tuple[str, str]], end_stream: bool) -> None:
        if self._code is not None:
            return
        if not self._response_started:
            self._response_started = True
            status = ""
            content_type = ""
            md = []
            for name, value in headers:
                if name[0] == ":":
                    if name == ":status":
                        status = value
                elif name == "content-type":
                    content_type = value
                elif name == "grpc-encoding":
                    self._encoding = value
                elif name not in _NOT_METADATA:
                    md.append((name, value))
            if status != "200":
                code = _HTTP_TO_GRPC.get(int(status) if status.isdigit() else 0, grpc.StatusCode.UNKNOWN)
                if end_stream and self._trailer_status(headers) is not None:
                    self._end_with_trailers(headers, grpc.aio.Metadata())
                    return
                self._fail_stream(code, f"Received http2 header with status: {status or 'none'}", h2.CANCEL)
                return
            if not content_type.startswith("application/grpc"):
                self._fail_stream(
                    grpc.StatusCode.UNKNOWN, f"unexpected response content-type {content_type!r}", h2.CANCEL
                )
                return
            if end_stream:  # trailers-only response: no initial metadata, everything is trailing
                self._end_with_trailers(headers, grpc.aio.Metadata())
                return
            self._initial = _decode_metadata(md)
            waiter = self._initial_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if not end_stream:
            self._fail_stream(
                grpc.StatusCode.INTERNAL,
                "a second response header block without END_STREAM",
                h2.PROTOCOL_ERROR,
            )
            return
        self._end_with_trailers(headers, self._initial)

    @staticmethod
    def _trailer_status(headers: list[tuple[str, str]]) -> str | None:
        for name, value in headers:
            if name == "grpc-status":
                return value
        return None

    def _end_with_trailers(self, headers: list[tuple[str, str]], initial: grpc.aio.Metadata | None) -> None:
        status: str | None = None
        message = ""
        md = []
        for name, value in headers:
            if name[0] == ":":
                continue
            if name == "grpc-status":
                status = value
            elif name == "grpc-message":
                message = unquote(value, errors="replace")
            elif name not in _NOT_METADATA:
                md.append((name, value))
        self._trailing = _decode_metadata(md)
        if initial is not None:
            self._initial = initial
        if self._buf:
            self._finish(grpc.StatusCode.INTERNAL, "response ended inside a message")
            return
        if status is None or not status.isdigit():
            self._finish(grpc.StatusCode.UNKNOWN, "response trailers without a valid grpc-status")
            return
        code = _CODES.get(int(status), grpc.StatusCode.UNKNOWN)
        if code is grpc.StatusCode.OK and self._method.unary_response and len(self._messages) != 1:
            self._finish(
                grpc.StatusCode.INTERNAL,
                f"unary response with {len(self._messages)} messages",
            )
            return
        self._finish(code, message, from_server=True)

    def _on_data(self, data: bytes, flow: int, end_stream: bool) -> None:
        if self._code is not None:
            return
        buf = self._buf
        buf += data
        held = 0
        while len(buf) >= 5:
            flag, length = _MSG_HEAD.unpack_from(buf)
            if length > self._max_receive:
                self._fail_stream(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"CLIENT: Received message larger than max ({length} vs. {self._max_receive})",
                    h2.CANCEL,
                )
                return
            if flag:
                if flag == 1:
                    text = (
                        f"compressed response message (grpc-encoding {self._encoding or 'unset'!r}) refused: "
                        "the native transport accepts identity encoding only"
                    )
                else:
                    text = f"invalid message flags {flag:#x}"
                self._fail_stream(grpc.StatusCode.INTERNAL, text, h2.CANCEL)
                return
            if len(buf) < 5 + length:
                break
            raw = bytes(buf[5 : 5 + length])
            del buf[: 5 + length]
            try:
                message = raw if self._deserializer is None else self._deserializer(raw)
            except Exception as err:  # noqa: BLE001 - a deserializer's failure is this call's status
                self._fail_stream(
                    grpc.StatusCode.INTERNAL, f"Exception deserializing response: {err}", h2.CANCEL
                )
                return
            self._messages.append((message, 5 + length))
            held += 5 + length
        # Flow control: what was queued for `read()` is given back when read; the rest (a partial message,
        # padding) at once. The balance may go negative when a message completes whose first bytes came
        # (and were credited) earlier; reads pay that back.
        self._credit += flow - held
        if self._credit > 0 and self._conn is not None:
            self._conn.core.consumed(self._sid, self._credit)
            self._credit = 0
        waiter = self._read_waiter
        if waiter is not None and not waiter.done() and self._messages:
            waiter.set_result(None)
        if end_stream:
            self._end_with_trailers([], self._initial)
            if self._code is grpc.StatusCode.UNKNOWN:
                self._code = None
                self._finish(grpc.StatusCode.INTERNAL, "server closed the stream without sending trailers")

    def _on_reset(self, error_code: int, remote: bool, message: str) -> None:
        if self._code is not None:
            return
        if remote:
            if error_code == h2.REFUSED_STREAM and self._retryable():
                self._detach()
                self._channel._retry(self)
                return
            code = _RST_TO_GRPC.get(error_code, grpc.StatusCode.INTERNAL)
            if (
                code is grpc.StatusCode.CANCELLED
                and self._deadline is not None
                and self._loop.time() >= self._deadline - 0.01
            ):
                # The server's timer fired before ours ran (grpc-go resets with CANCEL): as grpc-go's client.
                self._finish(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
                return
            self._finish(code, message)
        else:
            self._finish(grpc.StatusCode.INTERNAL, message)

    def _on_connection_failed(self, code: grpc.StatusCode, details: str) -> None:
        self._finish(code, details)

    def _on_deadline(self) -> None:
        self._timer = None
        self._fail_stream(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", h2.CANCEL)

    def _fail_stream(self, code: grpc.StatusCode, details: str, rst: int) -> None:
        """End the call locally: RST_STREAM to the server (if a stream is open), then the status."""
        if self._code is not None:
            return
        conn = self._conn
        if conn is not None and self._sid:
            conn.core.reset_stream(self._sid, rst)
            conn.schedule_flush()
        self._finish(code, details)

    def _finish(self, code: grpc.StatusCode, details: str, from_server: bool = False) -> None:
        if self._code is not None:
            return
        self._code = code
        self._details = details
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if code is not grpc.StatusCode.OK and not from_server:
            # Ended here (cancel, deadline, a limit, the connection): what was queued is dropped. A status
            # the server sent comes after the messages it sent before, which read() still returns first.
            self._messages.clear()
        if self._credit > 0 and self._conn is not None:
            self._conn.core.consumed(self._sid, self._credit)
        conn = self._conn
        if conn is not None:
            conn.calls.pop(self._sid, None)
            conn.stream_closed()
        else:
            self._channel._forget(self)
        if self._initial is None:
            self._initial = grpc.aio.Metadata()
        if self._trailing is None:
            self._trailing = grpc.aio.Metadata()
        for waiter in (
            self._read_waiter,
            self._initial_waiter,
            self._done_waiter,
            self._write_waiter,
            self._start_waiter,
        ):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if self._requests_task is not None and not self._requests_task.done():
            self._requests_task.cancel()
        callbacks = self._done_callbacks
        self._done_callbacks = []
        for callback in callbacks:
            self._loop.call_soon(callback, self)

    # ------------------------------------------------------------------------------------------ API

    def _error(self) -> BaseException:
        assert self._code is not None
        if self._cancelled:
            return asyncio.CancelledError()
        return NativeRpcError(self._code, self._details, self._initial, self._trailing)

    async def _wait(self, attr: str) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()
        setattr(self, attr, waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # As grpc.aio: the task awaiting the call was cancelled, so the call is cancelled.
            self.cancel()
            raise

    def cancel(self) -> bool:
        if self._code is not None:
            return False
        self._cancelled = True
        self._fail_stream(grpc.StatusCode.CANCELLED, "Locally cancelled by application!", h2.CANCEL)
        return True

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._code is not None

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._loop.time())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._code is not None:
            self._loop.call_soon(callback, self)
        else:
            self._done_callbacks.append(callback)

    async def initial_metadata(self) -> grpc.aio.Metadata:
        if self._initial is None:
            await self._wait("_initial_waiter")
        assert self._initial is not None
        return self._initial

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        if self._code is None:
            await self._wait("_done_waiter")
        assert self._trailing is not None
        return self._trailing

    async def code(self) -> grpc.StatusCode:
        if self._code is None:
            await self._wait("_done_waiter")
        assert self._code is not None
        return self._code

    async def details(self) -> str:
        if self._code is None:
            await self._wait("_done_waiter")
        return self._details

    async def wait_for_connection(self) -> None:
        if self._sid == 0 and self._code is None:
            await self._wait("_start_waiter")

    def __repr__(self) -> str:
        return f"<native call {self._method.path} stream={self._sid} code={self._code}>"

"""The native gRPC client: `NativeChannel`, HTTP/2 on an `asyncio.Protocol` in the running loop.

Why it exists: grpcio's aio client completes every operation on its poller thread and hops to the event
loop (grpc/grpc#22258), several context switches per call. Here frames are parsed in `data_received` on
the loop itself, writes are coalesced per loop iteration, and no thread is involved (measured in
bench/native_client.py and docs/native-transport.md).

The channel quacks like `grpc.aio.Channel` for what the gateway runtime uses: `unary_unary`,
`unary_stream`, `stream_unary`, `stream_stream` return multicallables; their calls behave as grpc.aio's
(`await call`, `read()` -> `EOF`, `async for`, `write`, `done_writing`, `initial_metadata()`,
`trailing_metadata()`, `code()`, `details()`, `cancel()`), failures raise `NativeRpcError`, a subclass
of `grpc.aio.AioRpcError`, and a locally cancelled call raises `asyncio.CancelledError`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import random
import socket
import ssl
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote

import grpc

from . import connection as h2
from .hpackcodec import encode_literal

__all__ = ["NativeChannel", "NativeRpcError"]

_log = logging.getLogger("pygateway.native")

#: grpc.aio's end-of-stream marker for `read()` (absent from the type stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined,unused-ignore]

_CODES = {code.value[0]: code for code in grpc.StatusCode}
_MSG_HEAD = struct.Struct(">BL")
_USER_AGENT = b"grpc-python-pygateway-native/0.1"

#: Response headers that are HTTP/2 or gRPC framing, never metadata (as grpcio leaves them out).
_NOT_METADATA = frozenset(
    {
        "content-type",
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-status",
        "grpc-message",
        "te",
        "content-length",
    }
)
#: Request metadata keys the transport owns; a caller's value for them is dropped.
_RESERVED = frozenset(
    {
        "content-type",
        "te",
        "grpc-timeout",
        "grpc-accept-encoding",
        "user-agent",
        "host",
        "connection",
        "transfer-encoding",
        "upgrade",
        "keep-alive",
        "proxy-connection",
    }
)

#: HTTP status of a response without grpc-status -> gRPC code (gRPC's http-grpc-status-mapping.md).
_HTTP_TO_GRPC = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    429: grpc.StatusCode.UNAVAILABLE,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.UNAVAILABLE,
}

#: RST_STREAM error code -> gRPC code (as grpc-go maps them).
_RST_TO_GRPC = {
    h2.CANCEL: grpc.StatusCode.CANCELLED,
    h2.REFUSED_STREAM: grpc.StatusCode.UNAVAILABLE,
    h2.ENHANCE_YOUR_CALM: grpc.StatusCode.RESOURCE_EXHAUSTED,
    h2.INADEQUATE_SECURITY: grpc.StatusCode.PERMISSION_DENIED,
}


class NativeRpcError(grpc.aio.AioRpcError):
    """A failed native call: a `grpc.aio.AioRpcError`, so code written for grpc.aio handles it."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        initial_metadata: grpc.aio.Metadata | None = None,
        trailing_metadata: grpc.aio.Metadata | None = None,
    ) -> None:
        super().__init__(
            code,
            initial_metadata if initial_metadata is not None else grpc.aio.Metadata(),
            trailing_metadata if trailing_metadata is not None else grpc.aio.Metadata(),
            details,
            None,
        )


# ---------------------------------------------------------------------------------------------- helpers


def _timeout_header(timeout: float) -> bytes:
    """grpc-timeout (at most 8 digits, the finest unit that fits; rounded up so the server never sees a
    later deadline than ours... and never a zero one)."""
    micros = max(1, int(timeout * 1_000_000 + 0.999999))
    for unit, scale in (
        (b"u", 1),
        (b"m", 1000),
        (b"S", 1_000_000),
        (b"M", 60_000_000),
        (b"H", 3_600_000_000),
    ):
        value = -(-micros // scale)
        if value < 100_000_000:
            return str(value).encode() + unit
    return b"99999999H"


def _encode_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> bytes:
    if not metadata:
        return b""
    out = []
    for key, value in metadata:
        name = key.lower()
        if name in _RESERVED or name.startswith(":"):
            continue
        if name.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode("utf-8")
            encoded = base64.b64encode(raw).rstrip(b"=")
        elif isinstance(value, bytes):
            encoded = value
        else:
            encoded = value.encode("latin-1")
        out.append(encode_literal(name.encode("ascii"), encoded))
    return b"".join(out)


def _decode_metadata(pairs: Iterable[tuple[str, str]]) -> grpc.aio.Metadata:
    md = grpc.aio.Metadata()
    for key, value in pairs:
        if key.endswith("-bin"):
            try:
                md.add(key, base64.b64decode(value + "=" * (-len(value) % 4)))
            except (binascii.Error, ValueError):
                continue  # as grpcio: an undecodable binary value is dropped
        else:
            md.add(key, value)
    return md


#: grpc-go servers answer pings more often than every 5 minutes (with no data sent in between) with
#: GOAWAY too_many_pings (their default EnforcementPolicy.MinTime): the native client never pings more
#: often, and only while calls are open (PermitWithoutStream defaults to false there).
KEEPALIVE_FLOOR = 300.0


class _Options:
    """The grpc channel options the native transport understands (others are ignored)."""

    def __init__(self, options: Sequence[tuple[str, Any]]) -> None:
        o = dict(options)
        self.max_receive = int(o.get("grpc.max_receive_message_length", 4 * 1024 * 1024))
        self.max_send = int(o.get("grpc.max_send_message_length", -1))
        # Keepalive pings at most every KEEPALIVE_FLOOR seconds; <= 0 turns them off.
        keepalive = int(o.get("grpc.keepalive_time_ms", 300_000)) / 1000
        self.keepalive = max(keepalive, KEEPALIVE_FLOOR) if keepalive > 0 else 0.0
        self.keepalive_timeout = int(o.get("grpc.keepalive_timeout_ms", 20_000)) / 1000
        self.initial_backoff = int(o.get("grpc.initial_reconnect_backoff_ms", 1000)) / 1000
        self.max_backoff = int(o.get("grpc.max_reconnect_backoff_ms", 120_000)) / 1000
        self.connect_timeout = int(o.get("grpc.min_reconnect_backoff_ms", 20_000)) / 1000
        self.authority = o.get("grpc.default_authority")
        self.server_name = o.get("grpc.ssl_target_name_override")
        self.dns_refresh = float(o.get("pygateway.native.dns_refresh_s", 30.0))
        self.stream_window = int(o.get("pygateway.native.stream_window", 1 << 20))
        self.connection_window = int(o.get("pygateway.native.connection_window", 16 << 20))
        self.max_header_list = int(o.get("grpc.max_metadata_size", 16384))
        self.write_buffer = int(o.get("pygateway.native.write_buffer", 256 * 1024))


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


class _UnaryResponse(_Call):
    __slots__ = ()

    def __await__(self) -> Any:
        if self._code is None:
            yield from self._wait("_done_waiter").__await__()
        if self._code is not grpc.StatusCode.OK:
            raise self._error()
        return self._messages[0][0]


class _StreamResponse(_Call):
    __slots__ = ()

    async def read(self) -> Any:
        while True:
            messages = self._messages
            if messages:
                message, size = messages.popleft()
                if self._conn is not None and self._code is None:
                    self._credit += size
                    if self._credit > 0:
                        self._conn.core.consumed(self._sid, self._credit)
                        self._credit = 0
                        self._conn.schedule_flush()
                return message
            if self._code is not None:
                if self._code is grpc.StatusCode.OK:
                    return EOF
                raise self._error()
            await self._wait("_read_waiter")

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            message = await self.read()
            if message is EOF:
                return
            yield message


class _Writer:
    """`write()` / `done_writing()` of client-streaming calls (a mixin for _Call subclasses)."""

    __slots__ = ()

    async def write(self: Any, request: Any) -> None:
        if self._code is not None:
            if self._code is grpc.StatusCode.OK:
                raise asyncio.InvalidStateError("RPC already finished.")
            raise self._error()
        if self._writes_done:
            raise asyncio.InvalidStateError("write() after done_writing()")
        if self._sid == 0:
            await self._wait("_start_waiter")
            if self._code is not None:
                raise self._error()
        payload = request if self._serializer is None else self._serializer(request)
        if self._too_big_to_send(len(payload)):
            raise self._error()
        conn = self._conn
        conn.core.send_data(self._sid, _MSG_HEAD.pack(0, len(payload)) + payload)
        conn.schedule_flush()
        # Bounded memory for a writer faster than the server: wait while the stream's unsent bytes (held
        # back by flow control) exceed the write buffer, or while the socket's buffer is full.
        while self._code is None and (conn.core.buffered(self._sid) > conn.write_buffer or conn.paused):
            conn.writers.add(self)
            await self._wait("_write_waiter")
        if self._code is not None and self._code is not grpc.StatusCode.OK:
            raise self._error()

    async def done_writing(self: Any) -> None:
        if self._code is not None or self._writes_done:
            return
        self._writes_done = True
        if self._sid == 0:
            await self._wait("_start_waiter")
            if self._code is not None:
                return
        self._conn.core.send_data(self._sid, b"", True)
        self._conn.schedule_flush()

    def _consume_requests(self: Any, requests: Any) -> None:
        async def pump() -> None:
            try:
                if hasattr(requests, "__aiter__"):
                    async for item in requests:
                        await self.write(item)
                else:
                    for item in requests:
                        await self.write(item)
                await self.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass
            except Exception as err:  # noqa: BLE001 - the iterator's failure cancels the call, as grpc.aio does
                self._fail_stream(grpc.StatusCode.UNKNOWN, f"request iterator failed: {err!r}", h2.CANCEL)

        self._requests_task = self._loop.create_task(pump())


class UnaryUnaryCall(_UnaryResponse):
    __slots__ = ()


class UnaryStreamCall(_StreamResponse):
    __slots__ = ()


class StreamUnaryCall(_Writer, _UnaryResponse):
    __slots__ = ()


class StreamStreamCall(_Writer, _StreamResponse):
    __slots__ = ()


# ---------------------------------------------------------------------------------------------- methods


class _Method:
    __slots__ = ("channel", "deserializer", "path", "prefix", "serializer", "unary_response")

    def __init__(
        self,
        channel: NativeChannel,
        path: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
        unary_response: bool,
    ) -> None:
        self.channel = channel
        self.path = path
        self.serializer = serializer
        self.deserializer = deserializer
        self.unary_response = unary_response
        self.prefix = b"".join(
            (
                b"\x83",  # :method POST (static index 3)
                b"\x87" if channel._tls else b"\x86",  # :scheme https / http
                encode_literal(b":path", path.encode("ascii")),
                encode_literal(b":authority", channel._authority.encode("ascii")),
                encode_literal(b"content-type", b"application/grpc"),
                encode_literal(b"te", b"trailers"),
                encode_literal(b"grpc-accept-encoding", b"identity"),
                encode_literal(b"user-agent", _USER_AGENT),
            )
        )

    @staticmethod
    def _check(compression: Any) -> None:
        if compression not in (None, grpc.Compression.NoCompression):
            raise ValueError(
                "the native transport sends identity-encoded messages only (compression refused)"
            )


class UnaryUnaryMultiCallable(_Method):
    __slots__ = ()

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> UnaryUnaryCall:
        self._check(compression)
        return UnaryUnaryCall(self.channel, self, request, metadata, timeout, False)


class UnaryStreamMultiCallable(_Method):
    __slots__ = ()

    def __call__(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> UnaryStreamCall:
        self._check(compression)
        return UnaryStreamCall(self.channel, self, request, metadata, timeout, False)


class StreamUnaryMultiCallable(_Method):
    __slots__ = ()

    def __call__(
        self,
        request_iterator: Any = None,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> StreamUnaryCall:
        self._check(compression)
        call = StreamUnaryCall(self.channel, self, None, metadata, timeout, True)
        if request_iterator is not None and not call.done():
            call._consume_requests(request_iterator)
        return call


class StreamStreamMultiCallable(_Method):
    __slots__ = ()

    def __call__(
        self,
        request_iterator: Any = None,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> StreamStreamCall:
        self._check(compression)
        call = StreamStreamCall(self.channel, self, None, metadata, timeout, True)
        if request_iterator is not None and not call.done():
            call._consume_requests(request_iterator)
        return call


# ---------------------------------------------------------------------------------------------- connection


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: the sans-I/O core driven from `data_received`, writes coalesced per loop
    iteration (`schedule_flush`)."""

    def __init__(self, channel: NativeChannel, address: tuple[Any, ...]) -> None:
        opts = channel._opts
        self.channel = channel
        self.address = address
        self.loop = channel._loop_now()
        self.core = h2.ClientConnection(
            stream_window=opts.stream_window,
            connection_window=opts.connection_window,
            max_header_list_size=opts.max_header_list,
        )
        self.calls: dict[int, _Call] = {}
        self.writers: set[Any] = set()
        self.write_buffer = opts.write_buffer
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.paused = False
        self.closed = False
        self.draining = False
        self._flush_pending = False
        self._activity = False
        self._keepalive: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self.failure: tuple[grpc.StatusCode, str] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances (no isinstance check), same interface.
        self.transport = transport  # type: ignore[assignment]
        self.core.initiate()
        transport.write(self.core.data_to_send())  # type: ignore[attr-defined]
        if self.channel._opts.keepalive:
            self._keepalive = self.loop.call_later(self.channel._opts.keepalive, self._on_keepalive)

    def data_received(self, data: bytes) -> None:
        self._activity = True
        calls = self.calls
        for ev in self.core.receive(data):
            kind = type(ev)
            if kind is h2.Data:
                call = calls.get(ev.stream_id)  # type: ignore[attr-defined]
                if call is not None:
                    call._on_data(ev.data, ev.flow, ev.end_stream)  # type: ignore[attr-defined]
            elif kind is h2.Headers:
                call = calls.get(ev.stream_id)  # type: ignore[attr-defined]
                if call is not None:
                    call._on_headers(ev.headers, ev.end_stream)  # type: ignore[attr-defined]
            elif kind is h2.WindowOpened:
                self._wake_writers()
            elif kind is h2.StreamReset:
                call = calls.get(ev.stream_id)  # type: ignore[attr-defined]
                if call is not None:
                    call._on_reset(ev.error_code, ev.remote, ev.message)  # type: ignore[attr-defined]
            elif kind is h2.Settings:
                if ev.first and not self.ready.done():  # type: ignore[attr-defined]
                    self.ready.set_result(None)
                self.channel._pump()
            elif kind is h2.PingAck:
                if self._ping_timer is not None:
                    self._ping_timer.cancel()
                    self._ping_timer = None
            elif kind is h2.GoAway:
                self._on_goaway(ev)  # type: ignore[arg-type]
            elif kind is h2.ConnectionTerminated:
                self._fail(grpc.StatusCode.INTERNAL, f"HTTP/2 protocol error from the server: {ev.message}")  # type: ignore[attr-defined]
        self.flush()
        if self.core.terminated and self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool | None:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        text = f"connection to {self._peer()} lost" + (f": {exc}" if exc else "")
        self._fail(grpc.StatusCode.UNAVAILABLE, text)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_writers()

    # helpers

    def _peer(self) -> str:
        host = self.address[0]
        return f"[{host}]:{self.address[1]}" if ":" in str(host) else f"{host}:{self.address[1]}"

    def schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        out = self.core.out
        if out and self.transport is not None and not self.closed:
            self.transport.write(bytes(out))
            out.clear()

    def _wake_writers(self) -> None:
        if not self.writers:
            return
        for call in list(self.writers):
            if call._code is not None or (
                self.core.buffered(call._sid) <= self.write_buffer and not self.paused
            ):
                self.writers.discard(call)
                waiter = call._write_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def available(self) -> bool:
        return self.ready.done() and not self.closed and not self.draining and self.core.can_open()

    def stream_closed(self) -> None:
        if self.draining and not self.calls:
            self.close()
        self.channel._pump()

    def _on_goaway(self, ev: h2.GoAway) -> None:
        self.draining = True
        if ev.error_code == h2.ENHANCE_YOUR_CALM and ev.debug == b"too_many_pings":
            _log.warning("upstream %s sent GOAWAY too_many_pings", self._peer())
        retry = [call for sid, call in self.calls.items() if sid > ev.last_stream_id]
        for call in retry:
            # The server says it never processed these streams: safe to send elsewhere when the request is
            # held whole; otherwise the call fails UNAVAILABLE.
            if call._retryable():
                call._detach()
                self.channel._retry(call)
            else:
                call._finish(
                    grpc.StatusCode.UNAVAILABLE,
                    f"connection to {self._peer()} going away before the call was processed",
                )
        self.channel._connection_draining(self)
        if not self.calls:
            self.close()

    def _on_keepalive(self) -> None:
        self._keepalive = None
        if self.closed:
            return
        if self.calls and not self._activity and self._ping_timer is None:
            self.core.ping(os.urandom(8))
            self.flush()
            self._ping_timer = self.loop.call_later(
                self.channel._opts.keepalive_timeout, self._on_ping_timeout
            )
        self._activity = False
        self._keepalive = self.loop.call_later(self.channel._opts.keepalive, self._on_keepalive)

    def _on_ping_timeout(self) -> None:
        self._ping_timer = None
        self._fail(grpc.StatusCode.UNAVAILABLE, f"keepalive ping to {self._peer()} not acknowledged")

    def close(self) -> None:
        """Graceful end: GOAWAY, then close the socket."""
        if self.closed:
            return
        self.core.close()
        self.flush()
        self._fail(grpc.StatusCode.UNAVAILABLE, f"connection to {self._peer()} closed")

    def _fail(self, code: grpc.StatusCode, details: str) -> None:
        """End the connection: every call on it ends with `code` (calls the server has not seen and whose
        request is held are retried only on a GOAWAY/REFUSED_STREAM, never here)."""
        if self.closed:
            return
        self.closed = True
        self.failure = (code, details)
        for timer in (self._keepalive, self._ping_timer):
            if timer is not None:
                timer.cancel()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(details))
            self.ready.exception()  # retrieved: the connector reads `failure`
        calls = list(self.calls.values())
        self.calls.clear()
        for call in calls:
            call._conn = None
            call._finish(code, details)
        self.writers.clear()
        if self.transport is not None:
            if self.core.out:
                self.transport.write(bytes(self.core.out))
                self.core.out.clear()
            self.transport.close()
        self.channel._connection_closed(self)


# ---------------------------------------------------------------------------------------------- channel


def _parse_target(target: str) -> tuple[str, int]:
    for prefix in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(prefix):
            target = target[len(prefix) :]
            break
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else 443
    host, sep, port = target.rpartition(":")
    if not sep:
        return target, 443
    return host, int(port)


class _Address:
    """One resolved upstream address: its connection and reconnect backoff."""

    __slots__ = ("backoff", "conn", "connecting", "last_error", "next_attempt", "sockaddr")

    def __init__(self, sockaddr: tuple[Any, ...], initial_backoff: float) -> None:
        self.sockaddr = sockaddr
        self.conn: _Connection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.backoff = initial_backoff
        self.next_attempt = 0.0
        self.last_error = ""


class NativeChannel:
    """A gRPC channel to `target` ("host:port", "dns:///host:port", "[v6]:port"): one HTTP/2 connection
    per resolved address, calls spread round-robin over the ready ones.

    - Calls beyond every connection's MAX_CONCURRENT_STREAMS wait in a FIFO queue (bounded by their
      deadline), never fail.
    - Connection failures back off per address (`grpc.initial_reconnect_backoff_ms` growing 1.6x, 20%
      jitter, up to `grpc.max_reconnect_backoff_ms`; one attempt lasts at most
      `grpc.min_reconnect_backoff_ms`). While no address can be tried, calls fail at once UNAVAILABLE
      (grpc's behaviour without wait_for_ready).
    - DNS is resolved again on every connection loss, on GOAWAY and every `pygateway.native.dns_refresh_s`
      (30 s) while calls are made.
    - `ssl_context` turns on TLS; ALPN "h2" is set on it and required of the server.

    Build it inside the event loop that will use it (it belongs to that loop).
    """

    def __init__(
        self,
        target: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._opts = _Options(options)
        self._host, self._port = _parse_target(target)
        self._tls = ssl_context is not None
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2"])
        self._ssl = ssl_context
        host = self._host if ":" not in self._host else f"[{self._host}]"
        self._authority = self._opts.authority or f"{host}:{self._port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._addresses: list[_Address] = []
        self._resolved_at = -1e9
        self._resolving: asyncio.Task[None] | None = None
        self._rr = 0
        self._waiting: deque[_Call] = deque()
        self._ended_waiting = 0
        self._closed = False
        self._resolve_error = ""

    def _loop_now(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # multicallables (grpc.aio.Channel's signatures)

    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> UnaryUnaryMultiCallable:
        return UnaryUnaryMultiCallable(self, method, request_serializer, response_deserializer, True)

    def unary_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> UnaryStreamMultiCallable:
        return UnaryStreamMultiCallable(self, method, request_serializer, response_deserializer, False)

    def stream_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> StreamUnaryMultiCallable:
        return StreamUnaryMultiCallable(self, method, request_serializer, response_deserializer, True)

    def stream_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> StreamStreamMultiCallable:
        return StreamStreamMultiCallable(self, method, request_serializer, response_deserializer, False)

    async def __aenter__(self) -> NativeChannel:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        """Close: with `grace`, calls in flight get that long to finish; then every call left is
        cancelled and the connections end with GOAWAY."""
        self._closed = True
        self._loop_now()
        if grace:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (
                self._waiting or any(a.conn and a.conn.calls for a in self._addresses)
            ):
                await asyncio.sleep(0.01)
        for call in list(self._waiting):
            call._finish(grpc.StatusCode.CANCELLED, "Channel closed!")
        self._waiting.clear()
        for address in self._addresses:
            if address.connecting is not None:
                address.connecting.cancel()
            if address.conn is not None:
                for call in list(address.conn.calls.values()):
                    call._fail_stream(grpc.StatusCode.CANCELLED, "Channel closed!", h2.CANCEL)
                address.conn.close()
        if self._resolving is not None:
            self._resolving.cancel()
        await asyncio.sleep(0)

    async def channel_ready(self) -> None:
        """Wait until a connection is ready (raises NativeRpcError UNAVAILABLE if none can be made)."""
        while True:
            if any(a.conn is not None and a.conn.available() for a in self._addresses):
                return
            await self._connect_some(wait=True)
            if not any(a.conn is not None and a.conn.available() for a in self._addresses):
                raise NativeRpcError(grpc.StatusCode.UNAVAILABLE, self._unavailable_text())

    # call placement

    def _submit(self, call: _Call) -> None:
        if self._closed:
            call._finish(grpc.StatusCode.CANCELLED, "Channel closed!")
            return
        if not self._waiting:
            conn = self._pick()
            if conn is not None:
                call._start_on(conn)
                self._maybe_refresh()
                return
        self._waiting.append(call)
        self._ensure_connecting()

    def _retry(self, call: _Call) -> None:
        """A call the server never processed (GOAWAY / REFUSED_STREAM): queued again, at the front."""
        self._waiting.appendleft(call)
        self._loop_now().call_soon(self._pump)
        self._ensure_connecting()

    def _forget(self, call: _Call) -> None:
        """A queued call ended (deadline, cancel): O(1) — `_pump` skips ended calls; the queue is compacted
        once they are half of it (10,000 queued calls timing out together must not cost 10,000 scans)."""
        waiting = self._waiting
        if waiting and waiting[-1] is call:
            waiting.pop()
        elif waiting and waiting[0] is call:
            waiting.popleft()
        elif waiting:
            self._ended_waiting += 1
            if self._ended_waiting * 2 > len(waiting):
                self._waiting = deque(c for c in waiting if c._code is None)
                self._ended_waiting = 0

    def _pick(self) -> _Connection | None:
        addresses = self._addresses
        n = len(addresses)
        for i in range(n):
            address = addresses[(self._rr + i) % n]
            conn = address.conn
            if conn is not None and conn.available():
                self._rr = (self._rr + i + 1) % n
                return conn
        return None

    def _pump(self) -> None:
        waiting = self._waiting
        while waiting:
            call = waiting[0]
            if call._code is not None:
                waiting.popleft()
                self._ended_waiting = max(0, self._ended_waiting - 1)
                continue
            conn = self._pick()
            if conn is None:
                break
            waiting.popleft()
            call._start_on(conn)
        if waiting:
            self._ensure_connecting()

    def _maybe_refresh(self) -> None:
        loop = self._loop_now()
        if loop.time() - self._resolved_at > self._opts.dns_refresh and self._resolving is None:
            self._resolving = loop.create_task(self._resolve())

    def _unavailable_text(self) -> str:
        errors = [a.last_error for a in self._addresses if a.last_error]
        if self._resolve_error and not self._addresses:
            return f"DNS resolution of {self._host} failed: {self._resolve_error}"
        last = errors[-1] if errors else "no connection"
        return f"failed to connect to all addresses of {self._host}:{self._port}; last error: {last}"

    def _ensure_connecting(self) -> None:
        loop = self._loop_now()
        if self._resolving is None and loop.time() - self._resolved_at > self._opts.dns_refresh:
            self._resolving = loop.create_task(self._resolve())
        if self._resolving is not None and not self._addresses:
            return  # the first resolution starts the connections
        self._start_connections()

    def _start_connections(self) -> None:
        """Connect every address without a connection whose backoff has passed; if no connection is
        usable or coming, the waiting calls fail UNAVAILABLE now."""
        loop = self._loop_now()
        now = loop.time()
        coming = False
        for address in self._addresses:
            conn = address.conn
            if conn is not None and not conn.closed and not conn.draining:
                coming = True  # ready (perhaps at its stream limit: calls wait) or still handshaking
                continue
            if address.connecting is not None:
                coming = True
                continue
            if now >= address.next_attempt:
                address.connecting = loop.create_task(self._connect(address))
                coming = True
        if not coming and self._resolving is None:
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        text = self._unavailable_text()
        waiting = list(self._waiting)
        self._waiting.clear()
        self._ended_waiting = 0
        for call in waiting:
            call._finish(grpc.StatusCode.UNAVAILABLE, text)

    async def _connect_some(self, wait: bool) -> None:
        loop = self._loop_now()
        if self._resolving is None and (
            not self._addresses or loop.time() - self._resolved_at > self._opts.dns_refresh
        ):
            self._resolving = loop.create_task(self._resolve())
        if self._resolving is not None:
            await asyncio.shield(self._resolving)
        self._start_connections()
        tasks = [a.connecting for a in self._addresses if a.connecting is not None]
        if wait and tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)

    async def _resolve(self) -> None:
        loop = self._loop_now()
        try:
            infos = await loop.getaddrinfo(
                self._host, self._port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
            sockaddrs: list[tuple[Any, ...]] = []
            for family, _, _, _, sockaddr in infos:
                if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[:2] not in [
                    s[:2] for s in sockaddrs
                ]:
                    sockaddrs.append(sockaddr)
            self._resolve_error = ""
        except Exception as err:  # noqa: BLE001 - whatever the resolver raises, waiting calls must end (UNAVAILABLE)
            sockaddrs = []
            self._resolve_error = str(err) or type(err).__name__
        finally:
            self._resolving = None
        self._resolved_at = loop.time()
        if not sockaddrs:
            if not self._addresses:
                self._fail_waiting()
            return  # keep the addresses we had: a failed lookup is not an empty service
        known = {a.sockaddr[:2]: a for a in self._addresses}
        backoff = self._opts.initial_backoff
        fresh = [known.pop(s[:2]) if s[:2] in known else _Address(s, backoff) for s in sockaddrs]
        for gone in known.values():  # no longer in DNS: drain its connection
            if gone.connecting is not None:
                gone.connecting.cancel()
            if gone.conn is not None:
                gone.conn.draining = True
                if not gone.conn.calls:
                    gone.conn.close()
        self._addresses = fresh
        if self._waiting or any(a.conn is not None for a in fresh):
            self._start_connections()

    async def _connect(self, address: _Address) -> None:
        loop = self._loop_now()
        conn = _Connection(self, address.sockaddr)
        try:
            try:
                await asyncio.wait_for(self._open(conn, address), self._opts.connect_timeout)
            except asyncio.TimeoutError:
                raise ConnectionError(
                    f"connection attempt timed out after {self._opts.connect_timeout:g}s"
                ) from None
        except Exception as err:  # noqa: BLE001 - any failure to connect is this address's failure: back off, go on
            if conn.transport is not None:
                conn.transport.abort()
            conn.closed = True
            text = conn.failure[1] if conn.failure is not None else (str(err) or type(err).__name__)
            address.last_error = f"{conn._peer()}: {text}"
            jitter = 1 + random.uniform(-0.2, 0.2)
            address.next_attempt = loop.time() + address.backoff * jitter
            address.backoff = min(address.backoff * 1.6, self._opts.max_backoff)
            address.connecting = None
            address.conn = None
            self._resolved_at = -1e9  # resolve again before the next attempt
            self._start_connections()
            return
        address.connecting = None
        address.backoff = self._opts.initial_backoff
        address.last_error = ""
        if self._closed:
            conn.close()
            return
        address.conn = conn
        self._pump()

    async def _open(self, conn: _Connection, address: _Address) -> None:
        loop = self._loop_now()
        host, port = address.sockaddr[0], address.sockaddr[1]
        if self._ssl is not None:
            name = self._opts.server_name or self._host
            await loop.create_connection(lambda: conn, host, port, ssl=self._ssl, server_hostname=name)
            assert conn.transport is not None
            ssl_object = conn.transport.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                raise ConnectionError("the server did not select HTTP/2 (ALPN h2)")
        else:
            await loop.create_connection(lambda: conn, host, port)
        await conn.ready  # the server's SETTINGS: it speaks HTTP/2, streams may start
        if conn.closed:  # ... and then failed in the same read
            raise ConnectionError(conn.failure[1] if conn.failure else "connection closed")

    def _connection_draining(self, conn: _Connection) -> None:
        self._resolved_at = -1e9
        self._start_connections_soon()

    def _connection_closed(self, conn: _Connection) -> None:
        for address in self._addresses:
            if address.conn is conn:
                address.conn = None
        self._resolved_at = -1e9
        if not self._closed:
            self._start_connections_soon()

    def _start_connections_soon(self) -> None:
        if self._waiting:
            self._loop_now().call_soon(self._ensure_connecting)

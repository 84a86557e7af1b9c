"""The kinds of native call (unary or streaming response, with or without `write()`) and the
multicallables `NativeChannel.unary_unary` & co. return."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc

from . import frames as h2
from .call import _Call
from .hpackcodec import encode_literal
from .rpcwire import _MSG_HEAD, _USER_AGENT, EOF

if TYPE_CHECKING:
    from .channel import NativeChannel


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

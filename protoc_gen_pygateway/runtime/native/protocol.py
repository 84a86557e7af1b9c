"""The `asyncio.Protocol` of one native HTTP/2 connection (`_Connection`): the sans-I/O core of
connection.py driven from `data_received`, its events dispatched to the calls, keepalive pings, GOAWAY."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

import grpc

from . import frames as h2
from .connection import ClientConnection

if TYPE_CHECKING:
    from .call import _Call
    from .pool import _Pool

_log = logging.getLogger("pygateway.native")

# ---------------------------------------------------------------------------------------------- connection


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: the sans-I/O core driven from `data_received`, writes coalesced per loop
    iteration (`schedule_flush`)."""

    def __init__(self, channel: _Pool, address: tuple[Any, ...]) -> None:
        opts = channel._opts
        self.channel = channel
        self.address = address
        self.loop = channel._loop_now()
        self.core = ClientConnection(
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

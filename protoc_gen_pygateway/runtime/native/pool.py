"""Where the native channel's calls go: the target's addresses (DNS, refreshed), one connection per
address with reconnect backoff, round-robin placement and the queue of calls waiting for a stream
(`_Pool`, the base of `NativeChannel`)."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any

import grpc

from .options import _Options
from .protocol import _Connection

if TYPE_CHECKING:
    from .call import _Call


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


class _Pool:
    """The connections of a `NativeChannel` and the placement of its calls on them (see its docstring)."""

    def __init__(self, host: str, port: int, opts: _Options, ssl_context: ssl.SSLContext | None) -> None:
        self._opts = opts
        self._host, self._port = host, port
        self._ssl = ssl_context
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
            except asyncio.TimeoutError:  # noqa: UP041, RUF100 - 3.10: not the builtin TimeoutError
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

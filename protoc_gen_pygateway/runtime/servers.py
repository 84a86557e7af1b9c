"""The two servers the serve command runs the gateway on (serve.py chooses): uvicorn, with the gateway's
HTTP protocol, and granian, embedded. Imported only when serving: uvicorn and granian are serving
dependencies, never needed by the generated modules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

from .asgi import Receive, Scope, Send
from .errors import error_body
from .observe import new_request_id
from .serve import GatewayApp, with_openapi
from .serve_ops import drain, drain_first


class _QuietUpgrades:
    """Drop uvicorn's per-request warnings about `Upgrade` headers it ignores.

    Ingresses send `Upgrade`/`Connection: upgrade` on many requests; the gateway answers them as plain
    HTTP on purpose, so a warning per request would only flood the logs.
    """

    def filter(self, record: object) -> bool:
        text = str(getattr(record, "msg", ""))
        return "Unsupported upgrade request" not in text and "No supported WebSocket library" not in text


def _is_handshake(scope: Any) -> bool:
    """Whether an HTTP/1.1 request carrying `Upgrade: websocket` + `Connection: upgrade` is a WebSocket
    handshake the server should take over: a GET with a `Sec-WebSocket-Key` (RFC 6455 §4.1). Anything else
    (a POST through an ingress that writes `Connection: upgrade` on every request with an `Upgrade`, a
    keyless probe) is a plain HTTP request, as Go's net/http serves it."""
    return scope["method"] == "GET" and any(name == b"sec-websocket-key" for name, _ in scope["headers"])


class _CoalescedWrites:
    """The connection's transport, with the writes of one event-loop iteration sent as one.

    zttp writes a response's head, its body and its end as separate `transport.write` calls, and uvloop
    sends each at once: two write syscalls and two TCP segments per unary response (seen with strace),
    where Go's net/http sends one. Buffered here and flushed by a `call_soon` (so a head is never held
    past the iteration that wrote it, and stream messages go out as promptly as before); measured with
    bench/composition.py. Everything else is the real transport's.
    """

    __slots__ = ("_loop", "_parts", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._parts:
            self._loop.call_soon(self._flush)
        self._parts.append(data)

    def _flush(self) -> None:
        parts, self._parts = self._parts, []
        if parts and not self._transport.is_closing():
            self._transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._parts = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._parts))

    def __getattr__(self, name: str) -> Any:  # get_extra_info, is_closing, pause_reading, set_protocol...
        return getattr(self._transport, name)


def _uvicorn_http(websocket: bool) -> tuple[Any, str]:
    """uvicorn's HTTP protocol for the gateway, and its parser's name.

    zttp when installed (its HTTP/2 protocol serves cleartext HTTP/2 with prior knowledge, detected from
    the connection preface; an `Upgrade: h2c` never switches), else h11. Both hand a request to the
    WebSocket protocol only when `_is_handshake`: uvicorn's own classes hand over every request with
    `Upgrade: websocket` + `Connection: upgrade`, and wsproto answers those without a key with 400 and a
    closed connection before the gateway runs (the Upgrade matrix's cells c2 and d). They also log nothing
    for the other `Upgrade` requests they serve as plain HTTP (uvicorn warns on each).

    A subclass overriding uvicorn's `_should_upgrade` (uvicorn 0.55); tests/test_upgrade_matrix.py
    re-measures it with the installed versions.
    """
    try:
        from uvicorn.protocols.http.auto_zttp_impl import AutoZttpProtocol
        from uvicorn.protocols.http.zttp_impl import ZttpProtocol
    except ImportError:  # zttp (or a uvicorn with its protocols) is not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol

        class GatewayH11Protocol(H11Protocol):
            def _should_upgrade(self) -> bool:
                upgrade = self._get_upgrade()
                return websocket and upgrade == b"websocket" and _is_handshake(self.scope)

        return GatewayH11Protocol, "h11"

    import zttp

    class GatewayZttpProtocol(ZttpProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            coalesced: Any = _CoalescedWrites(transport, self.loop)
            super().connection_made(coalesced)

        def data_received(self, data: bytes) -> None:
            # uvicorn's own version answers every parse error with a text/plain 400. zttp refuses a head
            # over 16 KiB or with more than 100 header fields (fixed limits; granian's hyper has the same
            # field limit): say so as the gateway would, 414/431 with a google.rpc.Status body
            # (RESOURCE_EXHAUSTED).
            self._unset_keepalive_if_required()
            try:
                self.handle_events(self.conn.receive_event(data))
            except zttp.RemoteProtocolError as err:
                if "size limit" not in str(err):
                    self.handle_remote_protocol_error()
                    return
                line_too_long = b"\r\n" not in data[: 16 * 1024 + 16]
                status = 414 if line_too_long else 431
                what = (
                    "request target longer than 16 KiB"
                    if line_too_long
                    else "request head over 16 KiB or 100 header fields"
                )
                # A new request id (the head that would carry one is what was refused), as for any error.
                request_id = new_request_id()
                body = error_body(8, f"{what} (the HTTP server's limit)", request_id=request_id)
                headers = [
                    (b"content-type", b"application/json"),
                    (b"x-request-id", request_id.encode("ascii")),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"connection", b"close"),
                ]
                self.conn.send_response(status, headers)
                self.conn.send_data(body)
                self.conn.end_message()
                self.transport.write(self.conn.data_to_send())
                self.transport.close()

        def _should_upgrade(self) -> bool:
            upgrade = self.conn.upgrade()
            is_ws = upgrade is not None and upgrade.lower() == b"websocket"
            return websocket and is_ws and _is_handshake(self.scope)

    class GatewayHttpProtocol(AutoZttpProtocol):
        """HTTP/2 with prior knowledge when a connection starts with the HTTP/2 preface, else HTTP/1.1."""

        def _switch(self, http2: bool, initial_data: bytes = b"") -> None:
            if http2:
                super()._switch(http2, initial_data)
                return
            protocol = GatewayZttpProtocol(
                config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop
            )
            self.transport.set_protocol(protocol)
            protocol.connection_made(self.transport)
            if initial_data:
                protocol.data_received(initial_data)

    return GatewayHttpProtocol, "zttp"


class _WorkerHeader:
    """`--worker-header`: every HTTP response carries `X-Gateway-Worker: <pid>` (which worker served it)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.value = str(os.getpid()).encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (b"x-gateway-worker", self.value)],
                }
            await send(message)

        await self.app(scope, receive, tagged)


def _served(app: GatewayApp, config: dict[str, Any]) -> Any:
    """The app to hand to the server: the gateway, `--openapi`'s document, `--worker-header`."""
    served = with_openapi(app, config)
    return _WorkerHeader(served) if config.get("worker_header") else served


def _stop_signals(config: dict[str, Any]) -> tuple[int, ...]:
    """The signals that start a graceful shutdown. A worker of `--workers` ignores SIGINT: Ctrl-C reaches
    the whole process group, and the parent passes it on as SIGTERM (uvicorn would take a second signal
    for an immediate exit)."""
    if config.get("parent_pid"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return (signal.SIGTERM,)
    return (signal.SIGINT, signal.SIGTERM)


def _watch_parent(config: dict[str, Any]) -> None:
    """A worker of `--workers`: drain as on SIGTERM once the supervising parent is gone."""
    parent = config.get("parent_pid")
    if parent:
        from .workers import parent_watch

        orphaned = parent_watch(parent, lambda: os.kill(os.getpid(), signal.SIGTERM))
        asyncio.get_running_loop().call_later(1.0, orphaned)


async def serve_uvicorn(config: dict[str, Any], host: str, port: int, websocket: bool) -> None:
    import uvicorn  # a serving dependency, only needed by this command

    http, _ = _uvicorn_http(websocket)
    sock = config.get("socket")
    loop = asyncio.get_running_loop()
    app = GatewayApp(config)
    app.build()

    class Server(uvicorn.Server):
        """uvicorn, plus: a shutdown signal also ends the gateway's streams at once (uvicorn would wait
        for them to end by themselves), and the process exits 0 after a graceful shutdown."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            if drain_first(app, loop, lambda: self.handle_exit(sig, frame)):  # --drain-seconds
                return
            loop.call_soon_threadsafe(app.begin_shutdown)
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # uvicorn's own shutdown closes WebSocket connections at once (close 1012): first stop
            # accepting, and let the streams `begin_shutdown` ended send their final status and close
            # (1001), bounded by the grace period.
            for listener in self.servers:
                listener.close()
            await app.streams_ended()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's own version re-raises the signal once shut down, ending the process by SIGTERM.
            for signum in _stop_signals(config):
                loop.add_signal_handler(signum, self.handle_exit, signum, None)
            try:
                yield
            finally:
                for signum in _stop_signals(config):
                    loop.remove_signal_handler(signum)

    server = Server(
        uvicorn.Config(
            _served(app, config),
            host=host,
            port=port,
            http=http,
            ws="wsproto" if websocket else "none",
            lifespan="off",
            root_path=config["root_path"],
            log_level=config["log_level"],
            access_log=False,  # the gateway's own JSON access log instead (--access-log)
            server_header=False,
            # The gateway itself appends the peer to X-Forwarded-For; uvicorn must not replace the peer
            # with a client-supplied X-Forwarded-For first (it trusts loopback proxies by default).
            proxy_headers=False,
            # A backstop: GatewayApp cancels what still runs after the grace period itself.
            timeout_graceful_shutdown=math.ceil(config["grace_period"]) + 5,
        )
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietUpgrades())
    _watch_parent(config)
    try:
        await server.serve(sockets=[sock] if sock is not None else None)
    finally:
        await app.close()


class _RootPath:
    """`--root-path` under granian with uvicorn's meaning: the proxy in front strips the prefix, and the
    app sees it in `root_path` (and in front of `path`/`raw_path`, as the ASGI spec has it). granian's
    own `url_path_prefix` expects the prefix in the request instead."""

    def __init__(self, app: Any, root: str) -> None:
        self.app = app
        self.root = root
        self.raw_root = root.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            scope["root_path"] = self.root
            scope["path"] = self.root + scope["path"]
            raw = scope.get("raw_path")
            if raw is not None:
                scope["raw_path"] = self.raw_root + raw
        await self.app(scope, receive, send)


async def serve_granian(config: dict[str, Any], host: str, port: int, websocket: bool) -> None:
    # A serving dependency, only needed by this command. Embedded (granian.server.embed, which granian
    # calls experimental) rather than granian's own process manager: in this loop the gateway ends its
    # streams on SIGTERM before granian stops connection I/O, so each stream's final status (and a
    # WebSocket's close 1001) reaches the client; granian's command stops I/O first.
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    loop = asyncio.get_running_loop()
    app = GatewayApp(config)
    app.build()
    served = _served(app, config)
    server: Any = Server(
        _RootPath(served, config["root_path"]) if config["root_path"] else served,
        address=host,
        port=port,
        interface=Interfaces.ASGINL,  # no lifespan: the app is built above and closed below
        # HTTP/1.1 only: granian's `auto` (HTTP/2 by prior knowledge) resets the connection after its own
        # 400 to a malformed request, so the client often loses that answer (tests/test_bad_input.py).
        http=HTTPModes.http1,
        websockets=websocket,
        # granian's command defaults (embedded, both are 128): a full accept queue drops connection
        # attempts (the client retries after a second), and `backpressure` is how many requests and
        # streams run at once (the others wait unserved): long-lived streams need room.
        backlog=1024,
        backpressure=4096,
        log_level=LogLevels(config["log_level"]),
        log_access=False,  # the gateway's own JSON access log instead (--access-log)
    )
    stopping: list[asyncio.Task[None]] = []

    async def stop() -> None:
        # Streams end at once (their final status goes out); then granian stops accepting, lets the
        # requests in flight finish and returns from serve(); GatewayApp cancels what still runs after
        # the grace period.
        await drain(app)  # --drain-seconds: /readyz answers 503 for that long first
        app.begin_shutdown()
        await app.streams_ended()
        server.stop()

    def on_signal() -> None:
        if not stopping:
            stopping.append(loop.create_task(stop()))

    for signum in _stop_signals(config):
        loop.add_signal_handler(signum, on_signal)
    _watch_parent(config)
    try:
        await server.serve()
    finally:
        await app.close()

"""Serve generated gateway modules against a gRPC upstream: `python -m pygateway_serve --upstream HOST:PORT`
(or `python -m pygateway_runtime.serve ...`).

Needs an ASGI server at run time (granian, or uvicorn with h11), never protoc-gen-pygateway. With no
module names it serves every `*_pb2_gateway_*.py` module below this file's directory.

Default serving configuration, chosen from measurements of ASGI servers under `Upgrade: h2c`,
`Upgrade: websocket` and `Connection: upgrade` requests (docs/upgrade-matrix.md in the generator's
repository) and of their CPU cost per request: granian, HTTP/1.1, embedded in this process's event loop
(uvloop when installed), with WebSocket on only when a served module has WebSocket routes. Every cell is
plain HTTP except a malformed WebSocket handshake with WebSocket on, which granian refuses itself with
400; a valid handshake to a route without WebSocket is accepted and closed at once with the gateway's
`{"error": Status}` message and close code 4000 + the gRPC code (granian would add `Upgrade` headers to
an HTTP refusal). Without granian, or with `--server uvicorn`: uvicorn with `http="h11"` (and
`ws="wsproto"` when WebSocket is on), which refuses such handshakes with a complete HTTP 404 instead.
Never httptools: it silently empties the bodies of requests carrying `Upgrade` and loses pipelined
requests that follow them.

SIGTERM (or SIGINT) shuts down gracefully with either server: new connections are refused, open streams
end at once with UNAVAILABLE "gateway shutting down" (`Gateway.shutdown()`), calls in flight finish, and
whatever still runs after `--grace-period` seconds is cancelled; the process then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .app import Gateway, combine
from .asgi import Receive, Scope, Send
from .errors import error_body
from .native.interface import Channel
from .options import GatewayOptions
from .transport import TRANSPORTS, default_transport, open_channel


def discover(root: Path) -> list[str]:
    """Module names of the gateway modules below `root`, sorted."""
    found = []
    for path in sorted(root.rglob("*_pb2_gateway_*.py")):
        relative = path.relative_to(root).with_suffix("")
        found.append(".".join(relative.parts))
    return found


def _split_host_port(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    return host.strip("[]"), int(port)


#: Reconnection after upstream failures. grpc's defaults back off up to 120 s between connection attempts,
#: and calls fail at once with UNAVAILABLE meanwhile (wait_for_ready stays off), so a restarted upstream
#: could stay unreachable for two minutes. Here attempts start 1 s after a failure and are at most 2 s
#: apart (plus grpc's 20% jitter); `min_reconnect_backoff_ms` is grpc's minimum time given to one
#: connection attempt (default 20 s), so a silent (firewalled) upstream fails calls within 2 s instead of
#: holding them. grpc's transparent retries (`grpc.enable_retries`, on by default) retry only calls that
#: never reached the upstream.
RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 1000),
    ("grpc.min_reconnect_backoff_ms", 2000),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def _channel(config: dict[str, Any]) -> Channel:
    """The upstream channel over `--transport`: grpc.aio, or the native transport (which takes the same
    options; it never pings more often than every 5 minutes, grpc-go's default enforcement)."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", config["max_receive_bytes"]),
        ("grpc.keepalive_time_ms", 30000),
        *RECONNECT_OPTIONS,
    ]
    return open_channel(
        config["upstream"],
        config["transport"],
        tls=config["upstream_tls"],
        ca=config["upstream_ca"],
        options=options,
    )


class GatewayApp:
    """The combined gateway of the configured modules, built inside the serving event loop.

    grpc.aio channels belong to the loop they are created in: the serve command builds it in its serving
    loop before serving; under another ASGI server it is built on `lifespan.startup` (or the first
    request when the server runs no lifespan) and closed on `lifespan.shutdown`.

    `begin_shutdown()` starts a graceful shutdown: `Gateway.shutdown()` ends the open streams, and the
    exchanges still running `grace_period` seconds later are cancelled.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.channel: Channel | None = None
        self.app: Gateway | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopping = False

    def build(self) -> Gateway:
        if self.app is None:
            self.channel = _channel(self.config)
            apps = [importlib.import_module(name).create_app(self.channel) for name in self.config["modules"]]
            options = GatewayOptions(
                max_body_bytes=self.config["max_body_bytes"],
                default_timeout=self.config["default_timeout"],
                websocket_refusal=self.config["websocket_refusal"],
                transport=self.config["transport"],
            )
            self.app = combine(*apps, options=options)
        return self.app

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close(None)

    def begin_shutdown(self) -> None:
        """End open streams now and cancel what still runs after the grace period (on the serving loop)."""
        if self.stopping:
            return
        self.stopping = True
        logging.getLogger("pygateway").info(
            "shutting down: ending open streams, %d exchange(s) in flight, grace period %ss",
            len(self.tasks),
            self.config["grace_period"],
        )
        if self.app is not None:
            self.app.shutdown()
        asyncio.get_running_loop().call_later(self.config["grace_period"], self._cancel_rest)

    async def streams_ended(self) -> None:
        """Wait until the streams `begin_shutdown` ended have sent their final status, at most the grace
        period."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config["grace_period"]
        while self.app is not None and self.app.open_streams() and loop.time() < deadline:
            await asyncio.sleep(0.005)

    def _cancel_rest(self) -> None:
        if self.tasks:
            logging.getLogger("pygateway").warning(
                "grace period over: cancelling %d exchange(s)", len(self.tasks)
            )
        for task in list(self.tasks):
            task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            task = asyncio.current_task()
            if task is None:  # not run as an asyncio task: nothing to cancel after the grace period
                await self.build()(scope, receive, send)
                return
            self.tasks.add(task)
            try:
                await self.build()(scope, receive, send)
            finally:
                self.tasks.discard(task)
            return
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                self.build()
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


class OpenApiDocument:
    """`--openapi FILE`: `GET <root path>/openapi.json` answers with that OpenAPI document (HEAD with its
    headers; other methods 405), every other request goes to the gateway. With a root path, a document
    without `servers` gets `[{"url": <root path>}]`, so its paths resolve below it."""

    PATH = "/openapi.json"

    def __init__(self, app: Any, document: str, root_path: str) -> None:
        self.app = app
        data = json.loads(Path(document).read_text("utf-8"))
        if root_path and isinstance(data, dict) and "servers" not in data:
            data["servers"] = [{"url": root_path}]
        self.body = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        root = scope.get("root_path") or ""
        if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
            path = path[len(root) :]
        if path != self.PATH:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json")]
        if scope["method"] in ("GET", "HEAD"):
            status, body = 200, self.body
        else:
            text = f"method {scope['method']} not allowed for {self.PATH} (allowed: GET, HEAD)"
            status, body = 405, error_body(12, text)  # 12: UNIMPLEMENTED, as the gateway's own 405
            headers.append((b"allow", b"GET, HEAD"))
        headers.append((b"content-length", str(len(body)).encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def with_openapi(app: GatewayApp, config: dict[str, Any]) -> Any:
    """The app to serve: `app`, behind OpenApiDocument when `--openapi` names a document."""
    if not config.get("openapi"):
        return app
    return OpenApiDocument(app, config["openapi"], config["root_path"])


class _QuietUpgrades:
    """Drop uvicorn's per-request warnings about `Upgrade` headers it ignores.

    Ingresses send `Upgrade`/`Connection: upgrade` on many requests; the gateway answers them as plain
    HTTP on purpose, so a warning per request would only flood the logs.
    """

    def filter(self, record: object) -> bool:
        text = str(getattr(record, "msg", ""))
        return "Unsupported upgrade request" not in text and "No supported WebSocket library" not in text


async def _serve_uvicorn(config: dict[str, Any], host: str, port: int, websocket: bool) -> None:
    import uvicorn  # a serving dependency, only needed by this command

    loop = asyncio.get_running_loop()
    app = GatewayApp(config)
    app.build()

    class Server(uvicorn.Server):
        """uvicorn, plus: a shutdown signal also ends the gateway's streams at once (uvicorn would wait
        for them to end by themselves), and the process exits 0 after a graceful shutdown."""

        def handle_exit(self, sig: int, frame: Any) -> None:
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
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.handle_exit, signum, None)
            try:
                yield
            finally:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)

    server = Server(
        uvicorn.Config(
            with_openapi(app, config),
            host=host,
            port=port,
            http="h11",
            ws="wsproto" if websocket else "none",
            lifespan="off",
            root_path=config["root_path"],
            log_level=config["log_level"],
            access_log=config["access_log"],
            server_header=False,
            # The gateway itself appends the peer to X-Forwarded-For; uvicorn must not replace the peer
            # with a client-supplied X-Forwarded-For first (it trusts loopback proxies by default).
            proxy_headers=False,
            # A backstop: GatewayApp cancels what still runs after the grace period itself.
            timeout_graceful_shutdown=math.ceil(config["grace_period"]) + 5,
        )
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietUpgrades())
    try:
        await server.serve()
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


async def _serve_granian(config: dict[str, Any], host: str, port: int, websocket: bool) -> None:
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
    served = with_openapi(app, config)
    server: Any = Server(
        _RootPath(served, config["root_path"]) if config["root_path"] else served,
        address=host,
        port=port,
        interface=Interfaces.ASGINL,  # no lifespan: the app is built above and closed below
        http=HTTPModes.http1,
        websockets=websocket,
        # granian's command defaults (embedded, both are 128): a full accept queue drops connection
        # attempts (the client retries after a second), and `backpressure` is how many requests and
        # streams run at once (the others wait unserved): long-lived streams need room.
        backlog=1024,
        backpressure=4096,
        log_level=LogLevels(config["log_level"]),
        log_access=config["access_log"],
    )
    stopping: list[asyncio.Task[None]] = []

    async def stop() -> None:
        # Streams end at once (their final status goes out); then granian stops accepting, lets the
        # requests in flight finish and returns from serve(); GatewayApp cancels what still runs after
        # the grace period.
        app.begin_shutdown()
        await app.streams_ended()
        server.stop()

    def on_signal() -> None:
        if not stopping:
            stopping.append(loop.create_task(stop()))

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        await server.serve()
    finally:
        await app.close()


def _run(main: Any, loop: str) -> None:
    """Run the coroutine `main` on uvloop when installed (`--loop auto`) or asked for, else asyncio's loop.

    uvloop takes about a fifth off the gateway's CPU per request (make bench in the generator's repository).
    """
    if loop != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def _choose_server(wanted: str) -> str:
    """granian when installed (safe in every cell of the Upgrade matrix and the cheapest per request),
    else uvicorn with h11."""
    if wanted != "auto":
        return wanted
    try:
        import granian  # noqa: F401
    except ImportError:
        return "uvicorn"
    return "granian"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pygateway_serve", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="gateway modules to serve (default: all found)")
    parser.add_argument("--upstream", required=True, help="gRPC server HOST:PORT")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on")
    parser.add_argument("--upstream-tls", action="store_true", help="use TLS to the upstream")
    parser.add_argument("--upstream-ca", default=None, help="PEM roots for the upstream (default: system)")
    parser.add_argument("--root-path", default="", help="path prefix the gateway is served under")
    parser.add_argument("--max-body-bytes", type=int, default=None, help="largest request body")
    parser.add_argument(
        "--max-receive-bytes", type=int, default=4 * 1024 * 1024, help="largest upstream reply"
    )
    parser.add_argument(
        "--default-timeout", type=float, default=None, help="deadline (s) without Grpc-Timeout"
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=10.0,
        help="on SIGTERM/SIGINT: seconds calls in flight may take to finish before they are cancelled "
        "(open streams end at once)",
    )
    parser.add_argument(
        "--websocket",
        choices=("auto", "on", "off"),
        default="auto",
        help="WebSocket support: auto = on when a module has WebSocket routes; off keeps every request plain "
        "HTTP (a WebSocket-enabled server answers keyless `Upgrade: websocket` requests itself with 400)",
    )
    parser.add_argument(
        "--server",
        choices=("auto", "granian", "uvicorn"),
        default="auto",
        help="ASGI server: auto = granian when installed, else uvicorn (h11)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: auto = uvloop when installed, else asyncio's",
    )
    parser.add_argument(
        "--openapi",
        default=None,
        metavar="FILE",
        help="serve this OpenAPI document (protoc-gen-pygateway's openapi=true output, merged for several "
        "files) at GET /openapi.json; off by default",
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=default_transport(),
        help="gRPC client: grpcio (grpc.aio) or native (HTTP/2 on the event loop; needs hpack); "
        "default $PYGATEWAY_TRANSPORT, else grpcio",
    )
    parser.add_argument("--log-level", default=os.environ.get("PYGATEWAY_LOG_LEVEL", "info"))
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (off by default: ~15%% more CPU per request)",
    )
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent  # the output tree: this package sits at its root
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    modules = args.modules or discover(root)
    if not modules:
        parser.error(f"no gateway modules given or found below {root}")
    # WebSocket only when some route speaks it (streaming methods): a WebSocket-enabled server answers
    # malformed handshakes itself, so without WebSocket routes every request stays plain HTTP.
    websocket = any(getattr(importlib.import_module(name), "WEBSOCKET_ROUTES", False) for name in modules)
    if args.websocket != "auto":
        websocket = args.websocket == "on"
    server = _choose_server(args.server)
    openapi = None
    if args.openapi:
        try:
            json.loads(Path(args.openapi).read_text("utf-8"))
        except (OSError, ValueError) as err:
            parser.error(f"--openapi {args.openapi}: {err}")
        openapi = str(Path(args.openapi).resolve())
    config = {
        "modules": modules,
        "upstream": args.upstream,
        "upstream_tls": args.upstream_tls,
        "upstream_ca": args.upstream_ca,
        "transport": args.transport,
        "root_path": args.root_path,
        "max_body_bytes": args.max_body_bytes,
        "max_receive_bytes": args.max_receive_bytes,
        "default_timeout": args.default_timeout,
        "grace_period": args.grace_period,
        "log_level": args.log_level,
        "access_log": args.access_log,
        "openapi": openapi,
        # granian adds `Upgrade` headers to HTTP refusals of WebSocket handshakes: refuse by a close.
        "websocket_refusal": "close" if server == "granian" else "http",
    }
    host, port = _split_host_port(args.listen, 8080)
    serve = _serve_granian if server == "granian" else _serve_uvicorn
    _run(serve(config, host, port, websocket), args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())

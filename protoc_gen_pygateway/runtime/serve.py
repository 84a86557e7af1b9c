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
import importlib
import importlib.util
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from . import observe
from .app import Gateway, combine
from .asgi import Receive, Scope, Send
from .errors import error_body
from .native.interface import Channel
from .options import GatewayOptions
from .serve_ops import add_ops_arguments, gateway_ops, ops_config
from .transport import TRANSPORTS, default_transport, native_available, open_channel
from .workers import bind_listener, parse_workers, supervise


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
        # Mutual TLS (`--upstream-cert`/`--upstream-key`): the client certificate for meshes without
        # sidecars; both None otherwise.
        cert=config["upstream_cert"],
        key=config["upstream_key"],
        options=options,
    )


def _check_pem(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The PEM files of --upstream-ca/--upstream-cert/--upstream-key are readable before serving (a bad path
    is a usage error naming it, not a failure of the first call)."""
    if (args.upstream_cert is None) != (args.upstream_key is None):
        parser.error("--upstream-cert and --upstream-key go together (the client certificate and its key)")
    if not args.upstream_tls and (args.upstream_cert or args.upstream_ca):
        parser.error("--upstream-ca, --upstream-cert and --upstream-key need --upstream-tls")
    for name, path in (("ca", args.upstream_ca), ("cert", args.upstream_cert), ("key", args.upstream_key)):
        if path is None:
            continue
        try:
            Path(path).read_bytes()
        except OSError as err:
            parser.error(f"--upstream-{name} {path}: {err.strerror or err}")


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
        self.metrics = observe.serve_metrics(config)  # --metrics, else None

    def build(self) -> Gateway:
        if self.app is None:
            self.channel = _channel(self.config)
            apps = [importlib.import_module(name).create_app(self.channel) for name in self.config["modules"]]
            options = GatewayOptions(
                max_body_bytes=self.config["max_body_bytes"],
                default_timeout=self.config["default_timeout"],
                websocket_refusal=self.config["websocket_refusal"],
                metrics=self.metrics,
                metrics_path="/metrics" if self.metrics is not None else None,
                tracing=bool(self.config.get("tracing")),
                access_log=bool(self.config.get("access_log")),
                **gateway_ops(self.config),
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
    """The app to serve: `app`, behind OpenApiDocument (`--openapi`). (GET /metrics, `--metrics`, is
    served by the gateway itself: GatewayOptions.metrics_path.)"""
    if config.get("openapi"):
        return OpenApiDocument(app, config["openapi"], config["root_path"])
    return app


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


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


#: What to install for each server (none of it is needed by the generated modules themselves).
INSTALL = {
    "granian": "pip install granian uvloop",
    "uvicorn": "pip install uvicorn zttp wsproto uvloop",
}


def _choose_server(wanted: str, websocket: bool) -> tuple[str, str | None]:
    """(server, problem): the server to run, or a message naming what to install.

    auto: with WebSocket routes uvicorn (zttp, else h11) + wsproto, whose gateway protocol serves every
    request that is not a real handshake as plain HTTP (every Upgrade-matrix cell); granian would answer
    keyless `Upgrade: websocket` requests itself with 400 (its Rust core decides before the app runs, and
    no setting changes that). Without WebSocket routes granian, plain HTTP in every cell and the cheapest
    per request; either falls back on the other when it is not installed.
    """
    needs = {"granian": ["granian"], "uvicorn": ["uvicorn", *(["wsproto"] if websocket else [])]}
    usable = [name for name in ("granian", "uvicorn") if all(_installed(module) for module in needs[name])]
    if wanted != "auto":
        if wanted in usable:
            return wanted, None
        missing = ", ".join(module for module in needs[wanted] if not _installed(module))
        return wanted, f"--server {wanted} needs {missing}: {INSTALL[wanted]}"
    preferred = ["uvicorn", "granian"] if websocket else ["granian", "uvicorn"]
    for name in preferred:
        if name in usable:
            return name, None
    return "", (
        "no ASGI server is installed to serve the gateway: "
        + " or ".join(f"`{INSTALL[name]}`" for name in preferred)
        + " (the generated modules need only grpcio, protobuf and googleapis-common-protos)"
    )


def main(argv: list[str] | None = None) -> int:
    # The usage line names the command as it was typed (`python gen/pygateway_serve.py`), which works from
    # anywhere; `python -m pygateway_serve` would need the output directory on sys.path.
    script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else "pygateway_serve.py"
    parser = argparse.ArgumentParser(prog=f"python {script}", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="gateway modules to serve (default: all found)")
    parser.add_argument("--upstream", required=True, help="gRPC server HOST:PORT")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT to listen on")
    parser.add_argument("--upstream-tls", action="store_true", help="use TLS to the upstream")
    parser.add_argument("--upstream-ca", default=None, help="PEM roots for the upstream (default: system)")
    parser.add_argument(
        "--upstream-cert", default=None, help="PEM client certificate chain: mutual TLS (with --upstream-key)"
    )
    parser.add_argument("--upstream-key", default=None, help="PEM private key of --upstream-cert")
    parser.add_argument(
        "--workers",
        default="1",
        help="worker processes sharing the port (each with its own loop and upstream channel), supervised "
        "and restarted when they die: N, or auto = the usable cores (default 1)",
    )
    parser.add_argument(
        "--worker-socket",
        choices=("auto", "reuseport", "shared"),
        default="auto",
        help="how workers share the port: reuseport = one SO_REUSEPORT socket each (the kernel spreads "
        "connections; a dying worker drops what waited in its queue), shared = one listening socket "
        "inherited by all (one queue); auto = reuseport on Linux, else shared",
    )
    parser.add_argument(
        "--worker-header",
        action="store_true",
        help="add `X-Gateway-Worker: <pid>` to every response (to see how requests spread over workers)",
    )
    parser.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)  # set for workers
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # set for workers
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
        help="ASGI server: auto = uvicorn (zttp, else h11; wsproto) with WebSocket routes, else granian; "
        "either when the other is not installed",
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
        help="gRPC client: native (HTTP/2 on the event loop; needs hpack) or grpcio (grpc.aio: for what "
        "native does not do, e.g. compression, xDS); default $PYGATEWAY_TRANSPORT, else native when hpack "
        "is installed, else grpcio",
    )
    parser.add_argument("--log-level", default=os.environ.get("PYGATEWAY_LOG_LEVEL", "info"))
    observe.serve_arguments(parser)  # --access-log, --metrics, --tracing
    add_ops_arguments(parser)  # --cors-*, health, --drain-seconds
    args = parser.parse_args(argv)
    observe.serve_setup(parser, args)
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
    server, problem = _choose_server(args.server, websocket)
    if problem:
        parser.error(problem)
    if websocket and server == "granian" and args.server == "auto":
        logging.getLogger("pygateway").warning(
            "uvicorn/wsproto not installed: granian serves WebSocket, and answers `Upgrade: websocket` "
            "requests without a key with its own 400 (%s to serve them)",
            INSTALL["uvicorn"],
        )
    _check_pem(parser, args)
    if args.transport == "native" and not native_available():
        parser.error("--transport native needs the hpack package: pip install hpack (or --transport grpcio)")
    try:
        workers = parse_workers(args.workers)
    except ValueError:
        parser.error(f"--workers: N (at least 1) or auto, not {args.workers!r}")
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
        "upstream_cert": args.upstream_cert,
        "upstream_key": args.upstream_key,
        "transport": args.transport,
        "root_path": args.root_path,
        "max_body_bytes": args.max_body_bytes,
        "max_receive_bytes": args.max_receive_bytes,
        "default_timeout": args.default_timeout,
        "grace_period": args.grace_period,
        "log_level": args.log_level,
        "access_log": args.access_log,
        "metrics": args.metrics,
        "tracing": args.tracing,
        "openapi": openapi,
        # granian adds `Upgrade` headers to HTTP refusals of WebSocket handshakes: refuse by a close.
        "websocket_refusal": "close" if server == "granian" else "http",
        **ops_config(args, parser),
        "worker_header": args.worker_header,
        "parent_pid": args.parent_pid,
    }
    host, port = _split_host_port(args.listen, 8080)
    if workers > 1:
        return supervise(parser, args, argv, server, host, port, workers)
    if args.listen_fd is not None:  # a worker sharing its parent's listening socket
        config["socket"] = socket.socket(fileno=args.listen_fd)
    elif args.parent_pid is not None and server == "uvicorn":  # a worker on its own SO_REUSEPORT socket
        config["socket"] = bind_listener(host, port, reuse_port=True, listen=True)
    from .servers import serve_granian, serve_uvicorn

    serve = serve_granian if server == "granian" else serve_uvicorn
    _run(serve(config, host, port, websocket), args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())

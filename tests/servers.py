"""The generated gateway under several ASGI server configurations, and an ingress-like nginx in front.

Each configuration is a subprocess on a free loopback port, stopped by its PID (its process group, which
it leads) in teardown. Every configuration except `default` is started from this module's own entry point
(`python -m tests.servers CONFIG ...`), which imports every generated gateway module of the tree, combines
them with `pygateway_runtime.combine` and serves the result; the grpc.aio channel is created inside the
server's event loop on the first request (`LazyGateway`), so the same app works under uvicorn, hypercorn
and granian (which imports `tests.servers:lazy_app` in its worker process). `default` is the shipped serve
command itself, `python GEN/pygateway_serve.py`.

Only the standard library is imported at module level: the subprocesses import this module too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV_GEN = "PYGATEWAY_MATRIX_GEN"
ENV_UPSTREAM = "PYGATEWAY_MATRIX_UPSTREAM"
START_TIMEOUT = 30.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: name -> (server, options). `default` runs `gen/pygateway_serve.py`; the others `python -m tests.servers`.
CONFIGS: dict[str, tuple[str, dict[str, str]]] = {
    "default": ("serve-command", {}),
    # The serve command told not to speak WebSocket: it then chooses granian (HTTP/1.1, no WebSocket).
    "default-no-ws": ("serve-command", {"websocket": "off"}),
    "uvicorn-h11-none": ("uvicorn", {"http": "h11", "ws": "none"}),
    "uvicorn-h11-wsproto": ("uvicorn", {"http": "h11", "ws": "wsproto"}),
    "uvicorn-httptools-none": ("uvicorn", {"http": "httptools", "ws": "none"}),
    "uvicorn-httptools-wsproto": ("uvicorn", {"http": "httptools", "ws": "wsproto"}),
    "granian": ("granian", {"http": "1", "ws": "off"}),
    "granian-ws": ("granian", {"http": "1", "ws": "on"}),
    # `--server granian` for modules with WebSocket routes: granian embedded in its own loop, WebSocket
    # on, handshakes to routes without WebSocket refused by accept + error message + close.
    "granian-embedded-ws": ("serve-command", {"server": "granian", "websocket": "on"}),
    # What the serve command runs for modules with WebSocket routes: uvicorn in its own loop with the
    # gateway's HTTP protocol (zttp, HTTP/2 by prior knowledge; only a GET with Sec-WebSocket-Key becomes
    # a WebSocket, every other `Upgrade: websocket` request is plain HTTP) and wsproto.
    "uvicorn-embedded-ws": ("serve-command", {"server": "uvicorn", "websocket": "on"}),
    "hypercorn": ("hypercorn", {}),
}


def describe(config: str) -> str:
    """How configuration `config` serves the app, for the docs."""
    server, options = CONFIGS[config]
    if server == "serve-command":
        flags = "".join(f" --{key} {value}" for key, value in options.items())
        return f"`python gen/pygateway_serve.py{flags}` (the shipped serve command)"
    if server == "uvicorn":
        return (
            f'uvicorn `http="{options["http"]}"`, `ws="{options["ws"]}"` (`uvicorn.Server` in `asyncio.run`)'
        )
    if server == "granian":
        ws = "--ws" if options["ws"] == "on" else "--no-ws"
        return f"`granian --interface asgi --http {options['http']} {ws} --loop asyncio`"
    return "hypercorn, asyncio worker, cleartext (h11 + h2c; h2c cannot be turned off)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_http(port: int, timeout: float = 1.0) -> bool:
    """Whether something on `port` answers `GET /` with an HTTP/1.x status line (any status)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: ready.test\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


class _Process:
    """A subprocess leading its own process group (granian and nginx fork workers); stopped by PID."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        self.pid = self.process.pid

    def wait_ready(self, port: int, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if answers_http(port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer on port {port} within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the process group this process leads (its id is our child's PID), then reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(5)
        # Workers of a parent that exited first (granian): same group, killed by the group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class GatewayProcess(_Process):
    """The generated gateway of `gen` served by configuration `config` (a key of CONFIGS)."""

    def __init__(self, config: str, gen: Path, upstream: str, workdir: Path) -> None:
        server, options = CONFIGS[config]
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(gen), str(ROOT)]),
            ENV_GEN: str(gen),
            ENV_UPSTREAM: upstream,
            "PYTHONUNBUFFERED": "1",
        }
        listen = f"127.0.0.1:{self.port}"
        if server == "serve-command":
            argv = [
                sys.executable,
                str(gen / "pygateway_serve.py"),
                "--upstream",
                upstream,
                "--listen",
                listen,
            ]
            argv += ["--log-level", "warning"]
            argv += [f"--{key}={value}" for key, value in options.items()]
        elif server == "granian":
            argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--http", options["http"]]
            argv += ["--ws" if options["ws"] == "on" else "--no-ws", "--loop", "asyncio", "--workers", "1"]
            argv += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
            argv += ["--no-access-log", "--workers-kill-timeout", "1", "tests.servers:lazy_app"]
        else:
            argv = [sys.executable, "-m", "tests.servers", server, "--listen", listen]
            argv += [f"--{key}={value}" for key, value in options.items()]
        super().__init__(config, argv, env, workdir / f"{config}.log")


def start_gateways(configs: list[str], gen: Path, upstream: str, workdir: Path) -> dict[str, GatewayProcess]:
    """Start every configuration at once, then wait for all; on any failure stop them all and raise."""
    started: dict[str, GatewayProcess] = {}
    try:
        for config in configs:
            started[config] = GatewayProcess(config, gen, upstream, workdir)
        for process in started.values():
            process.wait_ready(process.port)
    except BaseException:
        for process in started.values():
            process.stop()
        raise
    return started


# ------------------------------------------------------------------------------------------------ nginx

NGINX_CONF = """\
# {title}
worker_processes 1;
error_log {tmp}/error.log;
{user}
events {{ worker_connections 256; }}

http {{
    # $request_id: nginx's own 32-hex request id, also sent upstream as X-Request-ID when `request_id`.
    log_format gateway '$remote_addr "$request" $status request_id=$request_id';
    access_log {tmp}/access.log gateway;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    upstream gateway {{
        server 127.0.0.1:{upstream_port};
        {keepalive}
    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
{location}
            proxy_pass http://gateway;
        }}
    }}
}}
"""


INGRESS_MANIFEST = ROOT / "deploy" / "kubernetes" / "ingress-nginx.yaml"
"""The one source of the ingress settings: the matrix's ingress-like nginx runs this Ingress's annotations."""

#: ingress-nginx annotation -> the nginx directive its controller writes into the location (value as is,
#: or with `s` for the timeouts, which the annotations give in seconds).
INGRESS_ANNOTATION_DIRECTIVES: dict[str, tuple[str, str]] = {
    "proxy-http-version": ("proxy_http_version", ""),
    "proxy-buffering": ("proxy_buffering", ""),
    "proxy-request-buffering": ("proxy_request_buffering", ""),
    "proxy-read-timeout": ("proxy_read_timeout", "s"),
    "proxy-send-timeout": ("proxy_send_timeout", "s"),
    "proxy-connect-timeout": ("proxy_connect_timeout", "s"),
    "proxy-body-size": ("client_max_body_size", ""),
}
INGRESS_PREFIX = "nginx.ingress.kubernetes.io/"

#: What ingress-nginx's template writes into every location whatever the annotations (its
#: `$connection_upgrade` map is in NGINX_CONF).
INGRESS_BASE_DIRECTIVES = [
    "proxy_set_header Upgrade $http_upgrade",
    "proxy_set_header Connection $connection_upgrade",
    "proxy_set_header Host $host",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
]

#: nginx.org's WebSocket proxying snippet, copied into countless configurations: `Connection: upgrade` on
#: every request (also plain ones), buffering left at nginx's default (on).
FIXED_UPGRADE_DIRECTIVES = [
    "proxy_http_version 1.1",
    "proxy_set_header Upgrade $http_upgrade",
    'proxy_set_header Connection "upgrade"',
    "proxy_set_header Host $host",
]


def ingress_annotations(path: Path = INGRESS_MANIFEST) -> dict[str, str]:
    """The `nginx.ingress.kubernetes.io/*` annotations of the Ingress in `path`, prefix removed."""
    import yaml  # not at module level: the server subprocesses import this module with the stdlib only

    for document in yaml.safe_load_all(path.read_text()):
        if isinstance(document, dict) and document.get("kind") == "Ingress":
            annotations = document.get("metadata", {}).get("annotations", {}) or {}
            return {
                key[len(INGRESS_PREFIX) :]: str(value)
                for key, value in annotations.items()
                if key.startswith(INGRESS_PREFIX)
            }
    raise ValueError(f"{path}: no Ingress")


def ingress_directives(path: Path = INGRESS_MANIFEST) -> list[str]:
    """The location directives ingress-nginx writes for the Ingress in `path`: its base ones, then one per
    annotation. An annotation without a known translation is an error, so the matrix cannot silently run
    other settings than the ones deployed."""
    directives = list(INGRESS_BASE_DIRECTIVES)
    for name, value in sorted(ingress_annotations(path).items()):
        if name not in INGRESS_ANNOTATION_DIRECTIVES:
            raise ValueError(f"{path}: annotation {INGRESS_PREFIX}{name} has no nginx translation here")
        directive, unit = INGRESS_ANNOTATION_DIRECTIVES[name]
        directives.append(f"{directive} {value}{unit}")
    return directives


def nginx_binary() -> str | None:
    """The nginx executable (PATH, then the Debian location), or None."""
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None
    )


def nginx_version(binary: str) -> tuple[int, ...]:
    """`nginx -v` as a tuple, (0,) when it cannot be read."""
    try:
        text = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return (0,)
    match = re.search(r"nginx/(\d+(?:\.\d+)*)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else (0,)


class Nginx(_Process):
    """nginx in the foreground in front of `upstream_port`: config, pid, logs and temp files in `tmp`."""

    def __init__(
        self,
        binary: str,
        upstream_port: int,
        tmp: Path,
        *,
        keepalive: int = 0,
        variant: str = "ingress",
        request_id: bool = False,
    ) -> None:
        """`variant`: "ingress" (deploy/kubernetes/ingress-nginx.yaml's settings, as ingress-nginx writes
        them) or "fixed-upgrade" (the common `Connection "upgrade"` snippet). `request_id`: nginx also
        sends its `$request_id` upstream as X-Request-ID (replacing the client's), as ingress-nginx does
        with `generate-request-id`; the access log always shows it."""
        tmp.mkdir(parents=True, exist_ok=True)
        if variant == "ingress":
            title = f"Ingress-nginx-like reverse proxy: ingress-nginx's location for {INGRESS_MANIFEST.name}."
            directives = ingress_directives()
        else:
            title = 'nginx with the common WebSocket snippet (proxy_set_header Connection "upgrade").'
            directives = FIXED_UPGRADE_DIRECTIVES
        if request_id:
            directives = [*directives, "proxy_set_header X-Request-ID $request_id"]
        self.directives = directives
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        # As root nginx would drop its workers to `nobody`, who cannot use a private temp dir.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        conf = NGINX_CONF.format(
            title=title,
            location="\n".join(f"            {directive};" for directive in directives),
            user=user,
            tmp=tmp,
            port=self.port,
            upstream_port=upstream_port,
            keepalive=f"keepalive {keepalive};" if keepalive else "",
        )
        (tmp / "nginx.conf").write_text(conf)
        argv = [binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf")]
        if nginx_version(binary) >= (1, 19, 5):  # -e: no attempt at the default /var/log/nginx/error.log
            argv += ["-e", str(tmp / "error.log")]
        argv += ["-g", f"daemon off; pid {tmp / 'nginx.pid'};"]
        super().__init__("nginx", argv, dict(os.environ), tmp / "nginx.stderr.log")
        try:
            self.wait_ready(self.port)
        except BaseException:
            self.stop()
            raise

    def log_tail(self, lines: int = 40) -> str:
        tails = [super().log_tail(lines)]
        with contextlib.suppress(OSError):
            tails.append(
                "\n".join((self.tmp / "error.log").read_text(errors="replace").splitlines()[-lines:])
            )
        return "\n".join(tails)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        super().stop(sig)

    def access_log(self) -> list[str]:
        """The access log's lines so far (`<peer> "<request line>" <status> request_id=<id>`)."""
        with contextlib.suppress(OSError):
            return (self.tmp / "access.log").read_text(errors="replace").splitlines()
        return []


# ------------------------------------------------------------------------------------------ the app side


class LazyGateway:
    """ASGI app: every gateway module of $PYGATEWAY_MATRIX_GEN combined, built on the first request inside
    the serving event loop (grpc.aio channels belong to the loop that creates them); lifespan handled here.
    """

    def __init__(self) -> None:
        self._app: Any = None
        self._lock: asyncio.Lock | None = None

    async def _build(self) -> Any:
        if self._app is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._app is None:
                    gen = Path(os.environ[ENV_GEN])
                    if str(gen) not in sys.path:
                        sys.path.insert(0, str(gen))
                    runtime = importlib.import_module("pygateway_runtime")
                    serve = importlib.import_module("pygateway_runtime.serve")
                    # $PYGATEWAY_TRANSPORT picks grpcio (default) or the native transport.
                    channel = runtime.open_channel(os.environ[ENV_UPSTREAM])
                    apps = [importlib.import_module(name).create_app(channel) for name in serve.discover(gen)]
                    self._app = runtime.combine(*apps)
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        app = await self._build()
        await app(scope, receive, send)


lazy_app = LazyGateway()
"""The target granian imports (`tests.servers:lazy_app`)."""


async def _serve_uvicorn(host: str, port: int, http: str, ws: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        lazy_app,
        host=host,
        port=port,
        http=http,
        ws=ws,
        lifespan="off",
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=1,
    )
    await uvicorn.Server(config).serve()


async def _serve_hypercorn(host: str, port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.loglevel = "WARNING"
    config.graceful_timeout = 1
    await serve(lazy_app, config, mode="asgi")  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers", description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=["uvicorn", "hypercorn"])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--http", default="h11")
    parser.add_argument("--ws", default="none")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if args.server == "uvicorn":
        asyncio.run(_serve_uvicorn(host, int(port), args.http, args.ws))
    else:
        asyncio.run(_serve_hypercorn(host, int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

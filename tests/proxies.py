"""Real reverse proxies for the Upgrade matrix, each configured the way people configure it for WebSocket
pass-through, in front of a gateway port, with a wire tap between the proxy and the gateway.

Every proxy is the Debian package's binary, run in the foreground by the test as a subprocess leading its
own process group, unprivileged-friendly: configuration, pid file, logs and any state in a temp directory,
a free loopback port, stopped by its PID (tests/servers.py's `_Process`). The configurations:

* `nginx-fixed`: nginx with the snippet found in most WebSocket how-tos (and nginx.org's own WebSocket
  page): `proxy_http_version 1.1`, `proxy_set_header Upgrade $http_upgrade`, `proxy_set_header Connection
  "upgrade"` — `Connection: upgrade` on every request, whatever the client sent; buffering left on.
* `haproxy`: HAProxy in `mode http` with its defaults (it passes WebSocket upgrades by itself), `timeout
  tunnel 1h` for long-lived WebSockets, `option forwardfor`; `haproxy-nodelay`: the same plus `option
  http-no-delay`.
* `caddy`: Caddy's `reverse_proxy` with nothing else (it passes WebSocket upgrades by itself).
* `apache`: Apache httpd's mod_proxy_http, `ProxyPass / http://… upgrade=websocket` (httpd ≥ 2.4.47).
* `apache-wstunnel`: the classic recipe: mod_rewrite sends `Upgrade: websocket` requests to
  `ws://` (mod_proxy_wstunnel), everything else goes through `ProxyPass / http://…` (mod_proxy_http).

The wire tap (`WireTap`) is a plain TCP relay in this process between the proxy and the gateway: it records
the bytes the proxy sends, so a cell can say which `Connection`/`Upgrade` headers reached the gateway.

Only the standard library is imported here.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.servers import Nginx, _Process, free_port, nginx_binary


def _binary(name: str, *dirs: str) -> str | None:
    return shutil.which(name) or next(
        (f"{d}/{name}" for d in dirs if os.access(f"{d}/{name}", os.X_OK)), None
    )


# ------------------------------------------------------------------------------------------- the wire tap


class WireTap:
    """A TCP relay from a free loopback port to `target_port` that records what clients send through it.

    One thread accepts; each connection is relayed by one thread with select() (both directions, half
    closes passed on with shutdown(SHUT_WR)). `requests()` parses the recorded client bytes into request
    heads. Stopped by `close()` (the listening socket and every relayed connection are closed)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self._lock = threading.Lock()
        self._streams: list[_Record] = []
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="wiretap", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        # A timeout, so that close() is seen at once (closing a socket does not wake a blocked accept()).
        self.listener.settimeout(0.1)
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            record = _Record()
            with self._lock:
                self._streams.append(record)
                self._sockets += [client, upstream]
            threading.Thread(target=self._relay, args=(client, upstream, record), daemon=True).start()

    @staticmethod
    def _relay(client: socket.socket, upstream: socket.socket, record: _Record) -> None:
        peers = {client: upstream, upstream: client}
        open_reads = {client, upstream}
        try:
            while open_reads:
                readable, _, _ = select.select(list(open_reads), [], [], 60)
                if not readable:
                    return
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        open_reads.discard(sock)
                        with contextlib.suppress(OSError):
                            peers[sock].shutdown(socket.SHUT_WR)
                        continue
                    if sock is client:
                        record.add(data)
                    peers[sock].sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def reset(self) -> None:
        """Forget what was recorded (connections kept open by the proxy keep being recorded, from now)."""
        with self._lock:
            for record in self._streams:
                record.clear()

    def requests(self) -> list[ForwardedRequest]:
        """The request heads recorded since the last reset, in the order they arrived (a proxy may send
        a request on a new upstream connection while an older one carries the next)."""
        with self._lock:
            streams = [(bytes(record.data), list(record.arrivals)) for record in self._streams]
        found: list[tuple[float, ForwardedRequest]] = []
        for data, arrivals in streams:
            for offset, request in parse_requests(data):
                arrived = max((t for start, t in arrivals if start <= offset), default=0.0)
                found.append((arrived, request))
        return [request for _, request in sorted(found, key=lambda item: item[0])]

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        self._thread.join(5)


class _Record:
    """The bytes a client sent on one relayed connection, with when each chunk came (its offset, time)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.arrivals: list[tuple[int, float]] = []

    def add(self, chunk: bytes) -> None:
        self.arrivals.append((len(self.data), time.monotonic()))
        self.data += chunk

    def clear(self) -> None:
        self.data.clear()
        self.arrivals.clear()


@dataclass
class ForwardedRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


def parse_requests(data: bytes) -> list[tuple[int, ForwardedRequest]]:
    """(offset, request head) of the HTTP/1.1 requests in a client byte stream, skipping bodies
    (Content-Length or chunked); stops at anything unparseable or after a WebSocket handshake (the rest is
    frames)."""
    found: list[tuple[int, ForwardedRequest]] = []
    total = len(data)
    while data:
        offset = total - len(data)
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            break
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers.append((name.strip().lower(), value.strip()))
        request = ForwardedRequest(parts[0], parts[1], headers)
        found.append((offset, request))
        if any(v.lower() == "websocket" for v in request.values("upgrade")) and request.values(
            "sec-websocket-key"
        ):
            break
        if "chunked" in ",".join(request.values("transfer-encoding")).lower():
            while True:
                size_line, sep, rest = rest.partition(b"\r\n")
                if not sep:
                    return found
                size = int(size_line.split(b";")[0] or b"0", 16)
                rest = rest[size + 2 :]
                if size == 0:
                    break
        else:
            length = request.values("content-length")
            rest = rest[int(length[0]) :] if length and length[0].isdigit() else rest
        data = rest
    return found


def forwarded_token(request: ForwardedRequest | None) -> str:
    """`Connection`/`Upgrade`/`HTTP2-Settings` as the gateway received them, for the docs: `C: upgrade ·
    U: h2c`, `-` when neither came, `none` when the request never reached the gateway."""
    if request is None:
        return "none"
    parts = []
    for name, short in (("connection", "C"), ("upgrade", "U"), ("http2-settings", "S")):
        values = request.values(name)
        if values:
            parts.append(f"{short}: {', '.join(values)}" if name != "http2-settings" else "S")
    return " · ".join(parts) or "-"


# ------------------------------------------------------------------------------------------------ proxies


class _Proxy(_Process):
    """A proxy in the foreground with everything in `tmp`; `extra_logs` are tailed on failure."""

    extra_logs: tuple[str, ...] = ()

    def __init__(self, name: str, argv: list[str], env: dict[str, str], tmp: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.tmp = tmp
        super().__init__(name, argv, env, tmp / f"{name}.stderr.log")
        try:
            self.wait_ready(port)
        except BaseException:
            self.stop()
            raise

    def log_tail(self, lines: int = 40) -> str:
        tails = [super().log_tail(lines)]
        for name in self.extra_logs:
            with contextlib.suppress(OSError):
                tails.append("\n".join((self.tmp / name).read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)


HAPROXY_CFG = """\
# HAProxy as commonly set up in front of an HTTP + WebSocket service (HAProxy passes upgrades itself).
global
    maxconn 256
    log stderr format raw local0 warning

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h

frontend gateway_in
    bind 127.0.0.1:{port}
{options}    default_backend gateway

backend gateway
    server gateway1 127.0.0.1:{upstream_port}
"""


class HAProxy(_Proxy):
    def __init__(self, binary: str, upstream_port: int, tmp: Path, *, no_delay: bool = False) -> None:
        """`no_delay`: `option http-no-delay` (HAProxy otherwise merges small response chunks, holding
        stream messages back for up to 200 ms)."""
        tmp.mkdir(parents=True, exist_ok=True)
        port = free_port()
        options = "    option http-no-delay\n" if no_delay else ""
        cfg = HAPROXY_CFG.format(port=port, upstream_port=upstream_port, options=options)
        (tmp / "haproxy.cfg").write_text(cfg)
        # -db: foreground, no daemon; -p: our own pid file.
        argv = [binary, "-db", "-f", str(tmp / "haproxy.cfg"), "-p", str(tmp / "haproxy.pid")]
        super().__init__("haproxy", argv, dict(os.environ), tmp, port)


CADDYFILE = """\
# Caddy's reverse_proxy as documented: it passes WebSocket upgrades itself, nothing else to set.
{{
    admin off
    auto_https off
    storage file_system {tmp}/data
}}

# Any Host (clients and ingresses send their own); listening on loopback only.
http://:{port} {{
    bind 127.0.0.1
    reverse_proxy 127.0.0.1:{upstream_port}
}}
"""


class Caddy(_Proxy):
    def __init__(self, binary: str, upstream_port: int, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        port = free_port()
        (tmp / "Caddyfile").write_text(CADDYFILE.format(tmp=tmp, port=port, upstream_port=upstream_port))
        argv = [binary, "run", "--config", str(tmp / "Caddyfile"), "--adapter", "caddyfile"]
        argv += ["--pidfile", str(tmp / "caddy.pid")]
        # Caddy keeps its state under $HOME / $XDG_*: a private directory, nothing shared between runs.
        env = {**os.environ, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp), "XDG_DATA_HOME": str(tmp)}
        super().__init__("caddy", argv, env, tmp, port)


APACHE_MODULES = "/usr/lib/apache2/modules"
APACHE_CONF = """\
# Apache httpd reverse proxy for an HTTP + WebSocket service: {title}.
ServerRoot "{tmp}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{tmp}/httpd.pid"
DefaultRuntimeDir "{tmp}"
ErrorLog "{tmp}/error.log"
LogLevel warn
{user}
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_http_module {modules}/mod_proxy_http.so
LoadModule proxy_wstunnel_module {modules}/mod_proxy_wstunnel.so
LoadModule rewrite_module {modules}/mod_rewrite.so
StartServers 1
ServerLimit 1
ThreadsPerChild 25
MaxRequestWorkers 25
LogFormat "%h \\"%r\\" %>s %b" short
CustomLog "{tmp}/access.log" short
ProxyRequests Off
ProxyPreserveHost On
ProxyTimeout 60
{proxying}
"""

APACHE_VARIANTS = {
    # httpd >= 2.4.47: mod_proxy_http handles the upgrade itself when told which protocols.
    "apache": (
        "mod_proxy_http with upgrade=websocket",
        "ProxyPass / http://127.0.0.1:{upstream_port}/ upgrade=websocket\n"
        "ProxyPassReverse / http://127.0.0.1:{upstream_port}/",
    ),
    # The recipe of countless answers: WebSocket-looking requests rewritten to ws:// (mod_proxy_wstunnel).
    "apache-wstunnel": (
        "mod_rewrite to ws:// (mod_proxy_wstunnel) for Upgrade: websocket, mod_proxy_http for the rest",
        "RewriteEngine On\n"
        "RewriteCond %{{HTTP:Upgrade}} websocket [NC]\n"
        "RewriteCond %{{HTTP:Connection}} upgrade [NC]\n"
        'RewriteRule ^/?(.*) "ws://127.0.0.1:{upstream_port}/$1" [P,L]\n'
        "ProxyPass / http://127.0.0.1:{upstream_port}/\n"
        "ProxyPassReverse / http://127.0.0.1:{upstream_port}/",
    ),
}


class Apache(_Proxy):
    extra_logs = ("error.log",)

    def __init__(self, binary: str, upstream_port: int, tmp: Path, variant: str = "apache") -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        port = free_port()
        title, proxying = APACHE_VARIANTS[variant]
        # httpd refuses to run its children as root: as root they run as nobody (nothing in tmp is needed
        # after start-up: logs and the pid file are opened by the parent).
        user = ""
        if os.geteuid() == 0:
            group = "nogroup" if _group_exists("nogroup") else "nobody"
            user = f"User nobody\nGroup {group}"
        conf = APACHE_CONF.format(
            title=title,
            tmp=tmp,
            port=port,
            user=user,
            modules=APACHE_MODULES,
            proxying=proxying.format(upstream_port=upstream_port),
        )
        (tmp / "httpd.conf").write_text(conf)
        argv = [binary, "-f", str(tmp / "httpd.conf"), "-DFOREGROUND"]
        # Debian's apache2 reads these from /etc/apache2/envvars when started by apache2ctl; not here.
        env = {**os.environ, "APACHE_RUN_DIR": str(tmp), "APACHE_LOG_DIR": str(tmp)}
        super().__init__(variant, argv, env, tmp, port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        # SIGTERM: httpd stops at once (SIGWINCH would be its graceful stop).
        super().stop(sig)


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


# ------------------------------------------------------------------------------------------ the registry

#: proxy -> (Debian package, binary finder, one line for the docs).
PROXIES: dict[str, tuple[str, str]] = {
    "nginx-fixed": (
        "nginx-light",
        "nginx with the common WebSocket snippet: `proxy_http_version 1.1`, `proxy_set_header Upgrade "
        '$http_upgrade`, `proxy_set_header Connection "upgrade"` (every request, whatever the client sent), '
        "buffering left on",
    ),
    "haproxy": (
        "haproxy",
        "HAProxy 2.x `mode http`, defaults (it passes WebSocket upgrades itself), `timeout tunnel 1h`, "
        "`option forwardfor`",
    ),
    "haproxy-nodelay": (
        "haproxy",
        "the same HAProxy plus `option http-no-delay` in the frontend",
    ),
    "caddy": ("caddy", "Caddy 2 `reverse_proxy` with nothing else (it passes WebSocket upgrades itself)"),
    "apache": (
        "apache2",
        "Apache httpd 2.4 mod_proxy_http: `ProxyPass / http://gateway/ upgrade=websocket`",
    ),
    "apache-wstunnel": (
        "apache2",
        "Apache httpd 2.4, the classic recipe: `RewriteCond %{HTTP:Upgrade} websocket [NC]` + "
        '`RewriteCond %{HTTP:Connection} upgrade [NC]` + `RewriteRule ^/?(.*) "ws://gateway/$1" [P,L]` '
        "(mod_proxy_wstunnel), `ProxyPass / http://gateway/` for the rest",
    ),
}


def proxy_binary(proxy: str) -> str | None:
    if proxy == "nginx-fixed":
        return nginx_binary()
    if proxy.startswith("haproxy"):
        return _binary("haproxy", "/usr/sbin", "/usr/local/sbin")
    if proxy == "caddy":
        return _binary("caddy", "/usr/bin", "/usr/local/bin")
    return _binary("apache2", "/usr/sbin") or _binary("httpd", "/usr/sbin")


def start_proxy(proxy: str, binary: str, upstream_port: int, tmp: Path) -> Nginx | _Proxy:
    if proxy == "nginx-fixed":
        return Nginx(binary, upstream_port, tmp, variant="fixed-upgrade")
    if proxy.startswith("haproxy"):
        return HAProxy(binary, upstream_port, tmp, no_delay=proxy == "haproxy-nodelay")
    if proxy == "caddy":
        return Caddy(binary, upstream_port, tmp)
    return Apache(binary, upstream_port, tmp, variant=proxy)


__all__ = ["PROXIES", "WireTap", "forwarded_token", "proxy_binary", "start_proxy"]

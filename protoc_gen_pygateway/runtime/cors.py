"""CORS (`GatewayOptions(cors=CorsPolicy(...))`, serve `--cors-origin`): browsers on other origins.

- A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed origin is
  answered 204 by the gateway itself, never forwarded upstream, with `Access-Control-Allow-Methods` the
  methods the generated route table has for that path and `Access-Control-Allow-Headers` the requested
  headers the header policy allows (a requested header it does not allow is left out, so the browser
  refuses the request); a path without routes gets 404, a disallowed origin 403, neither with CORS headers
  beyond `Vary`.
- Actual requests from an allowed origin get `Access-Control-Allow-Origin` (and `-Credentials`,
  `-Expose-Headers`); from any other origin no CORS headers at all. Every response carries
  `Vary: Origin` so that caches never serve one origin's answer to another.
- `*` is allowed only without credentials; an origin is never reflected unless it is on the list.
- With CORS configured, WebSocket handshakes carrying an `Origin` that is not allowed are refused (403):
  browsers apply no CORS to WebSocket, and a handshake carries the user's cookies (cross-site WebSocket
  hijacking). Handshakes without `Origin` (non-browser clients) are not affected.

Requests without CORS configured never reach this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from .asgi import _JSON
from .errors import error_body
from .metadata import _VALID_KEY, HOP_BY_HOP
from .observe import request_id_of
from .routing import _split_path

if TYPE_CHECKING:
    from .app import Gateway
    from .asgi import Event, Receive, Scope, Send
    from .options import HeaderPolicy


#: Request headers a preflight may always ask for: the CORS-safelisted names (their values may still need
#: a preflight, e.g. `Content-Type: application/json`) and the headers the gateway reads itself.
_ALWAYS_ALLOWED = frozenset({"accept", "accept-language", "content-language", "content-type", "grpc-timeout"})
#: Never allowed, whatever the configuration (browsers do not let scripts set most of them anyway).
_HOP_BY_HOP = HOP_BY_HOP | {"host"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(text: str) -> str:
    """`scheme://host[:port]` as browsers serialize it (lowercase, no default port, no path), or `*`.

    ValueError for anything else, naming it: `null` (what sandboxed documents and redirects send, so any
    site can produce it), paths, user info, queries.
    """
    text = text.strip()
    if text == "*":
        return text
    if text.lower() == "null":
        raise ValueError("CORS origin 'null' cannot be allowed: any sandboxed page sends it")
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"CORS origin {text!r} is not scheme://host[:port] (http or https)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"CORS origin {text!r} must be scheme://host[:port] only (no path, query or user)")
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    return (
        f"{scheme}://{host}"
        if port is None or port == _DEFAULT_PORTS[scheme]
        else f"{scheme}://{host}:{port}"
    )


@dataclass(frozen=True)
class CorsPolicy:
    """Which browser origins may call the gateway, and with what.

    `allow_origins`: exact origins (`https://app.example.com`, `http://localhost:3000`) or `"*"` (any
    origin; only with `allow_credentials=False`). `allow_credentials`: cookies and HTTP authentication on
    cross-origin requests (`fetch(..., {credentials: "include"})`). `allow_headers`: request headers
    allowed beyond those the generated header policy forwards (`Authorization`, `Grpc-Metadata-*`, the
    forwarded permanent headers, `forward_header` names) and `Grpc-Timeout`/`Content-Type` — e.g. a header
    an `incoming_metadata` hook reads. `expose_headers`: response headers scripts may read (e.g.
    `grpc-metadata-x-total`). `max_age`: seconds a browser may cache a preflight (None: not sent).
    """

    allow_origins: Sequence[str]
    allow_credentials: bool = False
    allow_headers: Sequence[str] = ()
    expose_headers: Sequence[str] = ()
    max_age: int | None = 600

    def __post_init__(self) -> None:
        if isinstance(self.allow_origins, str):
            raise TypeError("CorsPolicy.allow_origins is a list of origins, not one string")
        origins = tuple(dict.fromkeys(normalize_origin(origin) for origin in self.allow_origins))
        if not origins:
            raise ValueError("CorsPolicy.allow_origins is empty: name the origins allowed, or '*'")
        if "*" in origins and self.allow_credentials:
            raise ValueError("CORS origin '*' cannot be combined with allow_credentials: list the origins")
        headers = tuple(name.strip().lower() for name in self.allow_headers)
        for name in headers:
            if name in _HOP_BY_HOP or not name or not all(c.isalnum() or c in "-_." for c in name):
                raise ValueError(f"CORS allow_headers: {name!r} cannot be allowed")
        exposed = tuple(name.strip().lower() for name in self.expose_headers)
        if "*" in exposed and self.allow_credentials:
            raise ValueError(
                "CORS expose_headers '*' is ignored by browsers with credentials: list the names"
            )
        if self.max_age is not None and self.max_age < 0:
            raise ValueError("CORS max_age must be >= 0")
        object.__setattr__(self, "allow_origins", origins)
        object.__setattr__(self, "allow_headers", headers)
        object.__setattr__(self, "expose_headers", exposed)


def _header(scope: Scope, name: bytes) -> bytes | None:
    found = None
    for key, value in scope["headers"]:
        if key == name:
            if found is not None:
                return b""  # twice: no valid origin
            found = bytes(value)
    return found


class Cors:
    """A Gateway's CORS handling (built when `GatewayOptions.cors` is set)."""

    def __init__(self, policy: CorsPolicy) -> None:
        self.policy = policy
        self.any_origin = "*" in policy.allow_origins
        self.origins = frozenset(policy.allow_origins)
        self.extra_headers = frozenset(policy.allow_headers)
        common: list[tuple[bytes, bytes]] = []
        if policy.allow_credentials:
            common.append((b"access-control-allow-credentials", b"true"))
        self.common = common
        self.expose = (
            [(b"access-control-expose-headers", ", ".join(policy.expose_headers).encode("latin-1"))]
            if policy.expose_headers
            else []
        )
        #: Origin -> the headers its actual requests get (built once per allowed origin).
        self._extras: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self.max_age = (
            [(b"access-control-max-age", str(policy.max_age).encode("latin-1"))]
            if policy.max_age is not None
            else []
        )

    def allowed(self, origin: bytes | None) -> bool:
        if not origin:
            return False
        return self.any_origin or origin.decode("latin-1") in self.origins

    def _allow_origin(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        # `*` literally when any origin is allowed without credentials; else the (listed) origin itself.
        value = b"*" if self.any_origin else origin
        return [(b"access-control-allow-origin", value), *self.common]

    def websocket_allowed(self, scope: Scope) -> bool:
        """A WebSocket handshake may proceed: no Origin (not a browser), or an allowed one."""
        origin = _header(scope, b"origin")
        return origin is None or self.allowed(origin)

    async def http(self, gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _header(scope, b"origin")
        if origin is None:
            await gateway._http(scope, receive, _with_headers(send, _VARY))
            return
        allowed = self.allowed(origin)
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method") is not None:
            await self._preflight(gateway, scope, send, origin, allowed)
            return
        extra = self._extras.get(origin) if allowed else _VARY
        if extra is None:  # first request from this (listed, or any with `*`) origin
            extra = [*_VARY, *self._allow_origin(origin), *self.expose]
            if len(self._extras) < 1024:
                self._extras[origin] = extra
        await gateway._http(scope, receive, _with_headers(send, extra))

    async def _preflight(
        self, gateway: Gateway, scope: Scope, send: Send, origin: bytes, allowed: bool
    ) -> None:
        from .app import _route_path  # app imports this module

        vary = (b"vary", b"Origin")
        # Refusals carry a request id as every error answer does (observe.py); a 204 needs none.
        rid = request_id_of(scope["headers"]) if gateway.request_ids else None
        rid_head = [(b"x-request-id", rid.encode("latin-1"))] if rid is not None else []
        if not allowed:
            text = f"CORS: origin {origin.decode('latin-1')!r} is not allowed"
            body = error_body(code_pb2.PERMISSION_DENIED, text, request_id=rid)
            await _answer(send, 403, [_JSON, vary, *rid_head], body)
            return
        methods, policies = _path_routes(gateway, _route_path(scope))
        head = [vary, *self._allow_origin(origin)]
        if not methods:
            text = f"no route for {scope.get('path', '')}"
            body = error_body(code_pb2.NOT_FOUND, text, request_id=rid)
            await _answer(send, 404, [_JSON, *head, *rid_head], body)
            return
        requested = (_header(scope, b"access-control-request-headers") or b"").decode("latin-1")
        names = [n.strip().lower() for n in requested.split(",") if n.strip()]
        granted = [n for n in dict.fromkeys(names) if self._header_allowed(n, policies)]
        head.append((b"access-control-allow-methods", ", ".join(sorted(methods)).encode("latin-1")))
        if granted:
            head.append((b"access-control-allow-headers", ", ".join(granted).encode("latin-1")))
        head += self.max_age
        await _answer(send, 204, head, b"")

    def _header_allowed(self, name: str, policies: Iterable[HeaderPolicy | None]) -> bool:
        """Whether a request may carry header `name` to these routes: never hop-by-hop or stripped;
        yes for what the routes' header policy forwards (or the gateway reads) and the configured extras."""
        if name in _HOP_BY_HOP:
            return False
        known = [policy for policy in policies if policy is not None]
        if any(name in policy.forbidden for policy in known):
            return False
        if name in _ALWAYS_ALLOWED or name in self.extra_headers:
            return True
        if name.startswith("grpc-metadata-"):
            key = name[14:]
            if not _VALID_KEY.match(key) or key.startswith(("grpc-", ":")):
                return False
            return not known or any(not policy.blocked(key) for policy in known)
        return any(name in policy.forwarded for policy in known)


def _path_routes(gateway: Gateway, path: str) -> tuple[set[str], list[HeaderPolicy | None]]:
    """The methods the route table has for `path` and those routes' header policies."""
    if not path.startswith("/"):
        return set(), []
    parts, verbless, verb = _split_path(path)
    methods: set[str] = set()
    policies: list[HeaderPolicy | None] = []
    for route in gateway.routes:
        values = route.match(verbless, verb) if route.verb is not None and verbless is not None else None
        if values is None:
            values = route.match(parts, None)
        if values is not None:
            methods.add(route.method)
            policies.append(getattr(route, "policy", None))
    return methods, policies


#: What every response gets with CORS on (first in every `extra` list below).
_VARY = [(b"vary", b"Origin")]


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """`send` adding `extra` (`Vary: Origin` first) to the response's headers (a `Vary` already there
    is extended)."""

    async def sending(event: Event) -> None:
        if event["type"] == "http.response.start":
            headers = list(event.get("headers", ()))
            for index, (key, present) in enumerate(headers):
                if key.lower() == b"vary":  # set by a hook: extended, not doubled
                    headers[index] = (key, bytes(present) + b", Origin")
                    headers += extra[1:]
                    break
            else:
                headers += extra
            event = {**event, "headers": headers}
        await send(event)

    return sending


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    head: list[Any] = [*headers]
    if status != 204:
        head.append((b"content-length", str(len(body)).encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})

"""The ASGI app: the one routing loop over every route, 404/405, lifespan, combine()."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    Iterable,
)
from typing import TYPE_CHECKING
from urllib.parse import quote

import grpc
import grpc.aio
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from .asgi import logger
from .errors import ClientDisconnectedError, HttpError
from .lifecycle import _SHUTDOWN_TEXT
from .options import GatewayOptions
from .request import Request
from .routing import LITERAL, _index_by_first_literal, _split_path
from .rpc import RpcMethod, choose
from .websocket import _refuse

if TYPE_CHECKING:
    from .asgi import Receive, Scope, Send
    from .lifecycle import _Stop
    from .options import GatewayOptions
    from .routing import Route


class Gateway:
    """The ASGI app: one routing loop over every route, 404/405 from what matched partially."""

    def __init__(
        self,
        routes: Iterable[Route],
        max_body_bytes: int,
        options: GatewayOptions | None = None,
        rpc_methods: Iterable[RpcMethod] = (),
    ) -> None:
        options = options or GatewayOptions()
        self.options = options
        self.max_body_bytes = options.max_body_bytes or max_body_bytes
        # Generation computed each route's rank: literal before `*` before `**`, verbs first. Stable
        # sort keeps declaration order among equals.
        self.routes: tuple[Route, ...] = tuple(sorted(routes, key=lambda r: r.rank))
        seen: dict[tuple[object, ...], Route] = {}
        for route in self.routes:
            # Same method, segments and verb: one route would silently shadow the other.
            key = (route.method, tuple((k, v if k == LITERAL else "") for k, v in route.segments), route.verb)
            if key in seen:
                other = seen[key]
                raise ValueError(
                    f"route {route.method} {route.template} of {route.name} conflicts with "
                    f"{other.method} {other.template} of {other.name}"
                )
            seen[key] = route
        self._by_first = _index_by_first_literal(self.routes)
        #: gRPC-Web / Connect methods by path (`/pkg.Service/Method`); see rpc.py for the dispatch rule.
        self.rpc: dict[str, RpcMethod] = {}
        for rpc in rpc_methods:
            if rpc.path in self.rpc:
                raise ValueError(f"method {rpc.path} is served by two modules")
            self.rpc[rpc.path] = rpc
        #: True once `shutdown()` ran: open streams were ended, new ones are refused with 503.
        self.shutting_down = False
        self._stops: set[_Stop] = set()
        self._linked: list[Gateway] = []  # combine()d with this one: they shut down together

    def shutdown(self) -> None:
        """Begin a graceful shutdown: every open stream ends now with UNAVAILABLE "gateway shutting down"
        (NDJSON error line, SSE `event: error`, WebSocket error message and close 1001) and new streams are
        refused the same way (503); unary calls carry on, bounded by the server's grace period.

        Thread-safe and idempotent; each stream is ended on its own event loop. Shutting down a
        `combine()`d app shuts down its parts and the other way round.
        """
        if self.shutting_down:
            return
        self.shutting_down = True
        for stop in list(self._stops):
            with contextlib.suppress(RuntimeError):  # that loop is closed: nothing left to end
                stop.loop.call_soon_threadsafe(stop.fire)
        for other in self._linked:
            other.shutdown()

    def open_streams(self) -> int:
        """Streams (and WebSocket exchanges) still open on this app and the apps `combine()`d with it.

        A server shutting down waits for this to reach 0 after `shutdown()` before it closes connections,
        so that every ended stream has sent its final status.
        """
        return len(self._stops) + sum(len(other._stops) for other in self._linked)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    def resolve(self, method: str | None, path: str) -> tuple[Route, list[str]] | list[str]:
        """The route and raw captures for a request, or the methods the path allows (empty: 404).

        `method=None` asks for the WebSocket route of the path (any HTTP method; streaming RPCs only).
        """
        if not path.startswith("/"):  # e.g. `OPTIONS *` or an absolute-form target: no route
            return []
        parts, verbless, verb = _split_path(path)
        routes = self.routes
        # Literal prefix dispatch: only routes whose first segment can be this one (a percent-encoded
        # segment, or a single one that may carry a `:verb`, goes through every route).
        if parts and "%" not in parts[0] and (verbless is None or len(parts) > 1):
            routes = self._by_first.get(parts[0], self._by_first[""])
        allowed: list[str] = []
        for route in routes:
            if method is None and route.websocket is None:
                continue
            values = route.match(verbless, verb) if route.verb is not None and verbless is not None else None
            if values is None:
                values = route.match(parts, None)
            if values is None:
                continue
            if method is None or route.method == method:
                return route, values
            if route.method not in allowed:
                allowed.append(route.method)
        return allowed

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send, self)
        try:
            path = _route_path(scope)
            rpc = self.rpc.get(path) if self.rpc else None
            if rpc is not None:  # gRPC-Web or Connect, unless the REST route at this path is meant
                handler = choose(request, rpc, lambda verb: not isinstance(self.resolve(verb, path), list))
                if handler is not None:
                    await handler(request, rpc)
                    return
            found = self.resolve(scope["method"], path)
            if isinstance(found, list):
                if found:
                    allow = ", ".join(sorted(found))
                    raise HttpError(
                        405,
                        code_pb2.UNIMPLEMENTED,
                        f"method {scope['method']} not allowed for {scope['path']} (allowed: {allow})",
                        [(b"allow", allow.encode("latin-1"))],
                    )
                raise HttpError(404, code_pb2.NOT_FOUND, f"no route for {scope['method']} {scope['path']}")
            route, request.captures = found
            request.route = route
            await route.handler(request)
        except HttpError as err:
            await request.send_error(err.status, err.code, err.message, extra=err.headers)
        except ClientDisconnectedError:
            return
        except asyncio.CancelledError:
            # The server cancels what runs past its shutdown grace period: a clean 503, not its own 500.
            if not self.shutting_down or request.started:
                raise
            await request.send_error(503, code_pb2.UNAVAILABLE, f"{_SHUTDOWN_TEXT}: grace period over")
        except grpc.aio.AioRpcError as err:  # raised outside a call helper: still a gRPC status
            await request.send_rpc_error(err, None, None)
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            await request.send_error(500, code_pb2.INTERNAL, "internal gateway error")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send, self)
        found = self.resolve(None, _route_path(scope))
        if isinstance(found, list):
            # Not a streaming route: one complete HTTP refusal, never a half-streamed response.
            if (await receive())["type"] == "websocket.connect":
                await _refuse(
                    request, 404, code_pb2.NOT_FOUND, f"no WebSocket route at {scope.get('path', '')}"
                )
            return
        route, request.captures = found
        request.route = route
        assert route.websocket is not None
        try:
            await route.websocket(request)
        except Exception:
            logger.exception("unhandled error in WebSocket %s", scope.get("path"))
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": 1011})


def _route_path(scope: Scope) -> str:
    """The still-encoded path below root_path (Starlette mounts and `--root-path` set it)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"], safe="/:@!$&'()*+,;=%")
    root = scope.get("root_path") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :] or "/"
    return path


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message_ = await receive()
        if message_["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message_["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def combine(*apps: Gateway, options: GatewayOptions | None = None) -> Gateway:
    """One app serving the routes of several generated gateways (each built by its `create_app`)."""
    if not apps:
        raise ValueError("combine() needs at least one gateway")
    routes = [route for app in apps for route in app.routes]
    max_body = max(app.max_body_bytes for app in apps)
    rpc_methods = [rpc for app in apps for rpc in app.rpc.values()]
    combined = Gateway(routes, max_body, options or apps[0].options, rpc_methods)
    for app in apps:  # one shutdown for all: the parts' routes are served by `combined` now
        combined._linked.append(app)
        app._linked.append(combined)
    return combined

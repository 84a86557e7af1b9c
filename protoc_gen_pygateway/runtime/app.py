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
from .channels import LazyChannel
from .cors import Cors
from .errors import ClientDisconnectedError, HttpError
from .health import Health, unshadowed
from .hooks import ROUTING_STATUSES, Hooks
from .lifecycle import _SHUTDOWN_TEXT
from .observe import Exchange, Observers, _now, request_id_of
from .options import GatewayOptions
from .request import Request
from .routing import LITERAL, _index_by_first_literal, _split_path
from .rpc import RpcMethod, choose
from .websocket import _refuse

if TYPE_CHECKING:
    from .asgi import Handler, Receive, Scope, Send
    from .lifecycle import _Stop
    from .options import HeaderPolicy
    from .routing import Route


class Gateway:
    """The ASGI app: one routing loop over every route, 404/405 from what matched partially."""

    def __init__(
        self,
        routes: Iterable[Route],
        max_body_bytes: int,
        options: GatewayOptions | None = None,
        policy: HeaderPolicy | None = None,
        *,
        channels: Iterable[grpc.aio.Channel] = (),
        rpc_methods: Iterable[RpcMethod] = (),
    ) -> None:
        options = options or GatewayOptions()
        #: The channels the routes call: the LazyChannels among them (create_app("host:port") or a
        #: function) are opened on lifespan.startup and closed on lifespan.shutdown; channels passed in
        #: by the caller stay the caller's.
        unique: list[grpc.aio.Channel] = []
        for channel in channels:  # by identity: channels need not be hashable
            if not any(channel is seen for seen in unique):
                unique.append(channel)
        self.channels: tuple[grpc.aio.Channel, ...] = tuple(unique)
        self.options = options
        self.max_body_bytes = options.max_body_bytes or max_body_bytes
        #: The upstream channel the health endpoint checks (the first of `channels`).
        self.channel = self.channels[0] if self.channels else None
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
        if policy is not None:  # the generated module's policy, for CORS preflights
            for route in self.routes:
                if route.policy is None:
                    route.policy = policy
        self._by_first = _index_by_first_literal(self.routes)
        self.request_ids = options.request_id
        #: Metrics, tracing, access log: None when all are off (a request then costs one test).
        self.observers = Observers.build(options)
        #: Hooks, CORS, health endpoints (docs/operations.md): None when not configured, so that a plain
        #: gateway pays one attribute check each (CORS, hooks) or nothing (health: after a 404 only).
        self.hooks = Hooks.of(options)
        self.cors = Cors(options.cors) if options.cors is not None else None
        local: dict[str, Handler] = {}
        if options.health is not None:
            local.update(Health(options.health, self.channel).handlers(self))
        path, metrics = options.metrics_path, options.metrics
        if metrics is not None and path is not None and unshadowed(self, path, "metrics endpoint"):
            local[path] = metrics.scrape
        #: The gateway's own endpoints (health, metrics), consulted only after no route matched.
        self._local: dict[str, Handler] | None = local or None
        #: True from the start of a drain (serve `--drain-seconds`) before a shutdown: /readyz is 503.
        self.draining = False
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
            if self.cors is None:
                await self._http(scope, receive, send)
            else:
                await self.cors.http(self, scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send, [c for c in self.channels if isinstance(c, LazyChannel)])

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
        if self.request_ids:
            request.request_id = request_id_of(scope["headers"])
        exchange = None
        observers = self.observers
        tally = None
        if observers is not None:
            tally = observers.tally
            if tally is not None:  # metrics alone: tallied unless it needs an Exchange (observe.py)
                request.start = _now()
            else:
                exchange = request.exchange = Exchange(observers, scope, receive, send, request.request_id)
                if exchange.counting:
                    request.receive, request.send = exchange.receive, exchange.send
        try:
            path = _route_path(scope)
            rpc = self.rpc.get(path) if self.rpc else None
            if rpc is not None:  # gRPC-Web or Connect, unless the REST route at this path is meant
                if request.start:
                    exchange = self._exchange_of(request)
                handler = choose(request, rpc, lambda verb: not isinstance(self.resolve(verb, path), list))
                if handler is not None:
                    await handler(request, rpc)
                    return
            found = self.resolve(scope["method"], path)
            if isinstance(found, list):
                if not found and self._local is not None and path in self._local:
                    await self._local[path](request)  # /healthz, /readyz, /metrics: where no route matched
                    return
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
            if request.start and not route.unary:
                exchange = self._exchange_of(request)
            if exchange is not None:
                exchange.routed(route)
            await route.handler(request)
        except HttpError as err:
            if self.hooks is not None and err.status in ROUTING_STATUSES and not request.started:
                await self.hooks.routing_error(request, err)
                return
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
        except Exception:  # noqa: BLE001 - a bug of ours: logged with its traceback, the client gets a 500
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            await request.send_error(500, code_pb2.INTERNAL, "internal gateway error")
        finally:
            if exchange is not None:
                exchange.finish()
            elif tally is not None and request.start:  # not when left out (a scrape of the metrics)
                tally.tallied(request)

    def _exchange_of(self, request: Request) -> Exchange:
        """The Exchange of a tallied request that needs one after all (see observe.py)."""
        assert self.observers is not None
        return Exchange.of_tallied(self.observers, request)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send, self)
        if self.request_ids:
            request.request_id = request_id_of(scope["headers"])
        exchange = None
        if self.observers is not None:
            exchange = request.exchange = Exchange(self.observers, scope, receive, send, request.request_id)
            if exchange.counting:
                request.receive, request.send = exchange.receive, exchange.send
        try:
            if self.cors is not None and not self.cors.websocket_allowed(scope):
                # Browsers apply no CORS to WebSocket, and a handshake carries the user's cookies.
                if (await request.receive())["type"] == "websocket.connect":
                    origin = (_header_value(scope, b"origin") or b"").decode("latin-1")
                    await _refuse(
                        request, 403, code_pb2.PERMISSION_DENIED, f"CORS: origin {origin!r} is not allowed"
                    )
                return
            found = self.resolve(None, _route_path(scope))
            if isinstance(found, list):
                # Not a streaming route: one complete HTTP refusal, never a half-streamed response.
                if (await request.receive())["type"] == "websocket.connect":
                    await _refuse(
                        request, 404, code_pb2.NOT_FOUND, f"no WebSocket route at {scope.get('path', '')}"
                    )
                return
            route, request.captures = found
            request.route = route
            if exchange is not None:
                exchange.routed(route)
            assert route.websocket is not None
            try:
                await route.websocket(request)
            except Exception:  # noqa: BLE001 - a bug of ours: logged with its traceback, the client gets 1011
                logger.exception("unhandled error in WebSocket %s", scope.get("path"))
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": 1011})
        finally:
            if exchange is not None:
                exchange.finish()


def _header_value(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _route_path(scope: Scope) -> str:
    """The still-encoded path below root_path (Starlette mounts and `--root-path` set it)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"], safe="/:@!$&'()*+,;=%")
    root = scope.get("root_path") or ""
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :] or "/"
    return path


async def _lifespan(receive: Receive, send: Send, lazy: list[LazyChannel]) -> None:
    while True:
        message_ = await receive()
        if message_["type"] == "lifespan.startup":
            for channel in lazy:  # opened in the serving loop, before the first request
                channel.channel()
            await send({"type": "lifespan.startup.complete"})
        elif message_["type"] == "lifespan.shutdown":
            for channel in lazy:
                await channel.close(None)
            await send({"type": "lifespan.shutdown.complete"})
            return


def combine(*apps: Gateway, options: GatewayOptions | None = None) -> Gateway:
    """One app serving the routes of several generated gateways (each built by its `create_app`)."""
    if not apps:
        raise ValueError("combine() needs at least one gateway")
    routes = [route for app in apps for route in app.routes]
    max_body = max(app.max_body_bytes for app in apps)
    channels = [channel for app in apps for channel in app.channels]
    rpc_methods = [rpc for app in apps for rpc in app.rpc.values()]
    combined = Gateway(
        routes, max_body, options or apps[0].options, channels=channels, rpc_methods=rpc_methods
    )
    for app in apps:  # one shutdown for all: the parts' routes are served by `combined` now
        combined._linked.append(app)
        app._linked.append(combined)
    return combined

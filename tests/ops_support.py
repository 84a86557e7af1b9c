"""Helpers of the issue-14 tests (hooks, CORS, health): a real uvicorn (h11) serving an app built inside
its own event loop on a thread of the test process (so that hooks written in the test run in the
gateway), and a real grpc.aio backend that also serves grpc.health.v1.Health (grpcio-health-checking)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import grpc.aio

from tests.conftest import free_port

ASGIApp = Callable[[Any, Any, Any], Any]


class LazyApp:
    """ASGI app built by `build(channel)` on the first event inside the serving loop (grpc.aio channels
    belong to the loop that creates them); handles lifespan itself."""

    def __init__(self, build: Callable[[grpc.aio.Channel], ASGIApp], upstream: str) -> None:
        self.build = build
        self.upstream = upstream
        self.app: Any = None
        self.channel: grpc.aio.Channel | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    if self.channel is not None:
                        await self.channel.close(None)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.app is None:
            # The transport of $PYGATEWAY_TRANSPORT (grpcio by default; `make test` runs these tests on both).
            runtime = importlib.import_module("pygateway_runtime")
            self.channel = runtime.open_channel(self.upstream)
            self.app = self.build(self.channel)
        await self.app(scope, receive, send)


class ThreadedUvicorn:
    """uvicorn (`http="h11"`, `ws="wsproto"`) on a free loopback port, on a thread of this process."""

    def __init__(self, app: ASGIApp) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            http="h11",
            ws="wsproto",
            lifespan="on",
            log_level="warning",
            proxy_headers=False,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextlib.contextmanager
def serve_app(build: Callable[[grpc.aio.Channel], ASGIApp], upstream: str) -> Iterator[ThreadedUvicorn]:
    server = ThreadedUvicorn(LazyApp(build, upstream))
    try:
        yield server
    finally:
        server.stop()


class HealthBackend:
    """A grpc.aio server on its own thread serving only grpc.health.v1.Health (grpcio-health-checking's
    servicer, or `servicer` when given), statuses settable from the test thread."""

    def __init__(self, servicer: Any = None, health: bool = True) -> None:
        self.servicer_override = servicer
        self.health = health
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.servicer: Any = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="health", daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self) -> None:
        from grpc_health.v1 import health, health_pb2_grpc

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self.servicer = self.servicer_override or health.aio.HealthServicer()
        if self.health:  # else a gRPC server without any service (every method UNIMPLEMENTED)
            health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop(0)

    def set(self, service: str, status: str) -> None:
        """Set `service`'s serving status by name (SERVING, NOT_SERVING, ...)."""
        from grpc_health.v1 import health_pb2

        assert self.loop is not None
        value = health_pb2.HealthCheckResponse.ServingStatus.Value(status)
        asyncio.run_coroutine_threadsafe(self.servicer.set(service, value), self.loop).result(5)

    def __enter__(self) -> HealthBackend:
        self.thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("health backend did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

"""Health and readiness (issue 14 §3): `GET /healthz` calls the upstream's grpc.health.v1.Health/Check (a
real grpcio-health-checking servicer on a real grpc.aio server), `GET /readyz` turns 503 when a graceful
shutdown (or the drain before it) begins. Through the shipped serve command (embedded granian, and
uvicorn) and through `create_app(..., GatewayOptions(health=HealthOptions()))` under uvicorn."""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from tests.conftest import GatewayServer, free_port
from tests.e2e_support import error_body
from tests.ops_support import HealthBackend, serve_app

pytestmark = pytest.mark.timeout(90)

SERVERS = {"default": [], "uvicorn": ["--server", "uvicorn"]}


@pytest.fixture(scope="module")
def health_backend() -> Any:
    with HealthBackend() as backend:
        yield backend


@pytest.mark.parametrize("server", SERVERS)
def test_healthz_follows_the_upstream_health_servicer(
    gen_dir: Path, health_backend: Any, server: str
) -> None:
    gateway = GatewayServer(gen_dir, health_backend.port, SERVERS[server])
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            health_backend.set("", "SERVING")
            response = client.get("/healthz")
            assert response.status_code == 200, response.text
            assert response.json() == {"status": "SERVING"}
            assert response.headers["content-type"] == "application/json"
            assert response.headers["cache-control"] == "no-store"
            assert client.head("/healthz").status_code == 200

            health_backend.set("", "NOT_SERVING")
            body = error_body(client.get("/healthz"), 503, 14)
            assert "NOT_SERVING" in body["message"]

            # ?service= names the service checked.
            health_backend.set("shop.v1.ShopService", "SERVING")
            assert client.get("/healthz", params={"service": "shop.v1.ShopService"}).json() == {
                "status": "SERVING"
            }
            health_backend.set("shop.v1.ShopService", "NOT_SERVING")
            body = error_body(client.get("/healthz", params={"service": "shop.v1.ShopService"}), 503, 14)
            assert "shop.v1.ShopService" in body["message"]
            # A service the servicer does not know: its NOT_FOUND status, still 503.
            body = error_body(client.get("/healthz", params={"service": "no.such.Service"}), 503, 5)

            error_body(client.get("/healthz", params={"other": "1"}), 400, 3)
            response = client.post("/healthz", json={})
            error_body(response, 405, 12)
            assert response.headers["allow"] == "GET, HEAD"

            assert client.get("/readyz").json() == {"status": "READY"}
    finally:
        gateway.stop()


def test_demo_backend_serves_health(gen_dir: Path, gateway: GatewayServer) -> None:
    """The demo backend registers grpcio-health-checking's servicer (every service SERVING)."""
    assert httpx.get(gateway.url + "/healthz", timeout=10).json() == {"status": "SERVING"}
    answer = httpx.get(gateway.url + "/healthz", params={"service": "shop.v1.FeedService"}, timeout=10)
    assert answer.json() == {"status": "SERVING"}


@pytest.fixture(scope="module")
def bare_backend() -> Any:
    with HealthBackend(health=False) as backend:
        yield backend


def test_healthz_without_the_health_service(gen_dir: Path, bare_backend: Any) -> None:
    """An upstream without grpc.health.v1.Health: 503 UNIMPLEMENTED by default, saying so;
    `--health-unimplemented serving` answers 200 instead (the upstream did answer)."""
    backend = bare_backend
    gateway = GatewayServer(gen_dir, backend.port)
    try:
        body = error_body(httpx.get(gateway.url + "/healthz", timeout=10), 503, 12)
        assert "does not implement grpc.health.v1.Health" in body["message"]
    finally:
        gateway.stop()
    gateway = GatewayServer(gen_dir, backend.port, ["--health-unimplemented", "serving"])
    try:
        response = httpx.get(gateway.url + "/healthz", timeout=10)
        assert response.status_code == 200 and response.json() == {"status": "SERVING"}
    finally:
        gateway.stop()


def test_healthz_when_the_upstream_is_down_or_slow(gen_dir: Path) -> None:
    gateway = GatewayServer(gen_dir, free_port())  # nothing listens there
    try:
        started = time.monotonic()
        error_body(httpx.get(gateway.url + "/healthz", timeout=10), 503, 14)
        assert time.monotonic() - started < 3
        assert (
            httpx.get(gateway.url + "/readyz", timeout=10).status_code == 200
        )  # not the upstream's business
    finally:
        gateway.stop()

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    class Slow(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
        async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802
            await asyncio.sleep(2)
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    with HealthBackend(Slow()) as slow:
        gateway = GatewayServer(gen_dir, slow.port, ["--health-timeout", "0.3"])
        try:
            started = time.monotonic()
            error_body(httpx.get(gateway.url + "/healthz", timeout=10), 503, 4)  # DEADLINE_EXCEEDED
            assert time.monotonic() - started < 1.5
        finally:
            gateway.stop()


def test_no_health_turns_the_endpoints_off(gen_dir: Path, health_backend: Any) -> None:
    gateway = GatewayServer(gen_dir, health_backend.port, ["--no-health"])
    try:
        error_body(httpx.get(gateway.url + "/healthz", timeout=10), 404, 5)
        error_body(httpx.get(gateway.url + "/readyz", timeout=10), 404, 5)
    finally:
        gateway.stop()


@pytest.mark.parametrize("server", SERVERS)
def test_readyz_is_503_from_the_start_of_a_shutdown(gen_dir: Path, backend: Any, server: str) -> None:
    """With `--drain-seconds 1.5`, SIGTERM turns /readyz to 503 at once while everything else is still
    served (load balancers see it and stop sending); then the graceful shutdown proceeds and exits 0."""
    gateway = GatewayServer(gen_dir, backend.port, [*SERVERS[server], "--drain-seconds", "1.5"])
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            assert client.get("/readyz").status_code == 200
            gateway.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 1.0
            while client.get("/readyz").status_code == 200:
                assert time.monotonic() < deadline, "readyz still 200 after SIGTERM"
                time.sleep(0.02)
            body = error_body(client.get("/readyz"), 503, 14)
            assert body["message"] == "gateway shutting down"
            # Still serving everything else during the drain.
            assert client.get("/v1/shelves/fiction/books/dune").status_code == 200
        assert gateway.process.wait(15) == 0
    finally:
        gateway.stop()


def test_create_app_with_health_options(
    gen_dir: Path, health_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """In your own app: health on when asked; `Gateway.shutdown()` turns readyz to 503; a generated route
    on the same path wins, with a warning."""
    rt = importlib.import_module("pygateway_runtime")
    shop = importlib.import_module("shop.v1.shop_pb2_gateway_shop_service")
    built: list[Any] = []

    def build(channel: grpc.aio.Channel) -> Any:
        app = shop.create_app(channel, rt.GatewayOptions(health=rt.HealthOptions(timeout=0.5)))
        built.append(app)
        return app

    health_backend.set("", "SERVING")
    with (
        serve_app(build, health_backend.target) as server,
        httpx.Client(base_url=server.url, timeout=10) as c,
    ):
        assert c.get("/healthz").json() == {"status": "SERVING"}
        assert c.get("/readyz").status_code == 200
        built[0].shutdown()
        error_body(c.get("/readyz"), 503, 14)

    # Without the option: no endpoints.
    with serve_app(lambda ch: shop.create_app(ch), health_backend.target) as server:
        error_body(httpx.get(server.url + "/healthz", timeout=10), 404, 5)

    async def own_health(request: Any) -> None:
        await request.send_response(200, b'{"own":true}', [(b"content-type", b"application/json")])

    def build_shadowed(channel: grpc.aio.Channel) -> Any:
        route = rt.Route(
            method="GET",
            template="/healthz",
            segments=rt.segments("healthz"),
            verb=None,
            captures=(),
            rank=(0,),
            handler=own_health,
            name="test.Own.Health",
        )
        app = shop.create_app(channel)
        return rt.Gateway(
            [*app.routes, route], shop.MAX_BODY_BYTES, rt.GatewayOptions(health=rt.HealthOptions())
        )

    shadowed = serve_app(build_shadowed, health_backend.target)
    with caplog.at_level(logging.WARNING, logger="pygateway"), shadowed as server:
        assert httpx.get(server.url + "/healthz", timeout=10).json() == {"own": True}
        assert httpx.get(server.url + "/readyz", timeout=10).json() == {"status": "READY"}
    assert any("/healthz not served" in record.getMessage() for record in caplog.records)


PROBE_PROTO = """
syntax = "proto3";
package probe.v1;
import "google/api/annotations.proto";
import "google/protobuf/empty.proto";
service Probe {
  rpc Health(google.protobuf.Empty) returns (google.protobuf.Empty) {
    option (google.api.http) = {get: "/healthz"};
  }
}
"""


def test_a_generated_route_on_healthz_wins(
    gen_dir: Path, health_backend: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A service binding GET /healthz itself: its route is served (here: the upstream has no such method,
    so its 501), not the health endpoint, and building the app warns about it."""
    import sys

    from tests.protoc_support import generate_tree

    protos = tmp_path / "protos"
    (protos / "probe" / "v1").mkdir(parents=True)
    (protos / "probe" / "v1" / "probe.proto").write_text(PROBE_PROTO)
    out = tmp_path / "gen"
    generate_tree(out, ["probe/v1/probe.proto"], include=protos)
    sys.path.append(str(out))  # after gen_dir: the one pygateway_runtime (same version) stays in use
    try:
        rt = importlib.import_module("pygateway_runtime")
        probe = importlib.import_module("probe.v1.probe_pb2_gateway_probe")
        with caplog.at_level(logging.WARNING, logger="pygateway"):
            build = lambda channel: probe.create_app(channel, rt.GatewayOptions(health=rt.HealthOptions()))  # noqa: E731
            with serve_app(build, health_backend.target) as server:
                error_body(httpx.get(server.url + "/healthz", timeout=10), 501, 12)
                assert httpx.get(server.url + "/readyz", timeout=10).json() == {"status": "READY"}
        warnings = [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
        assert warnings == [
            "health endpoint /healthz not served: the generated route GET /healthz of "
            "probe.v1.Probe.Health matches it"
        ]
    finally:
        sys.path.remove(str(out))

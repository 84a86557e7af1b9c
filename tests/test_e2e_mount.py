"""End to end, mounting: both generated modules' `create_app`, merged with `pygateway_runtime.combine`,
mounted under a prefix in Starlette and served by uvicorn (h11) in-process; and the serve command's
`--root-path`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc.aio
import httpx
import pytest

from tests.conftest import GatewayServer, free_port, wait_http
from tests.e2e_support import error_body

BOOK = "/v1/shelves/fiction/books/dune"


class MountedServer:
    """Starlette app with the combined gateway under `/api`, served by uvicorn on a background loop."""

    def __init__(self, backend_target: str, root_path: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root_path = root_path
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(backend_target,), daemon=True)
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise RuntimeError(f"mounted server did not start: {self._error!r}")

    def _run(self, target: str) -> None:
        try:
            asyncio.run(self._serve(target))
        except BaseException as exc:  # reported to __init__
            self._error = exc
            self._ready.set()

    async def _serve(self, target: str) -> None:
        import pygateway_runtime  # type: ignore[import-not-found]
        import uvicorn
        from shop.v1 import (  # type: ignore[import-not-found]
            shop_pb2_gateway_shelf_admin_service,
            shop_pb2_gateway_shop_service,
        )
        from starlette.applications import Starlette
        from starlette.routing import Mount

        channel = grpc.aio.insecure_channel(target)
        gateway = pygateway_runtime.combine(
            shop_pb2_gateway_shop_service.create_app(channel),
            shop_pb2_gateway_shelf_admin_service.create_app(channel),
        )
        app = Starlette(routes=[Mount("/api", app=gateway)])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            http="h11",
            ws="none",
            lifespan="off",
            root_path=self.root_path,
            log_level="warning",
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        serving = asyncio.ensure_future(self._server.serve())
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.02)
        self._ready.set()
        try:
            await serving
        finally:
            await channel.close(None)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(10)


@pytest.fixture(scope="module", params=["", "/gw"], ids=["no-root-path", "root-path"])
def mounted(request: pytest.FixtureRequest, gen_dir: Path, backend: Any) -> Iterator[MountedServer]:
    server = MountedServer(backend.target, root_path=request.param)
    yield server
    server.stop()


@pytest.fixture
def mounted_client(mounted: MountedServer, backend: Any) -> Iterator[httpx.Client]:
    backend.reset()
    with httpx.Client(base_url=mounted.url, timeout=10.0) as c:
        yield c


def test_mounted_routes_of_both_services(mounted_client: httpx.Client, backend: Any) -> None:
    response = mounted_client.get(f"/api{BOOK}")
    assert response.status_code == 200
    assert response.json()["title"] == "Dune"
    assert backend.recorder.last("GetBook").request.name == "shelves/fiction/books/dune"
    shelf = mounted_client.get("/api/v1/shelves/fiction")
    assert shelf.json() == {"name": "shelves/fiction", "theme": "Fiction"}
    assert backend.recorder.methods() == [
        "/shop.v1.ShopService/GetBook",
        "/shop.v1.ShelfAdminService/GetShelf",
    ]


def test_mounted_path_decoding_uses_raw_path(mounted_client: httpx.Client, backend: Any) -> None:
    response = mounted_client.get("/api/v1/books/shelves%2Ffiction%2Fbooks%2Fdune")
    assert response.status_code == 200
    assert backend.recorder.last("GetBook").request.name == "shelves/fiction/books/dune"
    response = mounted_client.get("/api/v1/shelves/s1/files/a%2Fb%20c.png")
    assert response.json()["path"] == "shelves/s1/files/a%2Fb c.png"


def test_mounted_body_query_and_verbs(mounted_client: httpx.Client, backend: Any) -> None:
    response = mounted_client.put("/api/v1/shelves/fiction/books:create", json={"book": {"title": "Mounted"}})
    assert response.status_code == 200
    assert response.json()["name"] == "shelves/fiction/books/mounted"
    response = mounted_client.get("/api/v1/shelves/fiction/books?pageSize=1")
    assert backend.recorder.last("ListBooks").request.page_size == 1


def test_mounted_errors(mounted_client: httpx.Client, backend: Any) -> None:
    response = mounted_client.put(f"/api{BOOK}")
    error_body(response, 405, 12)
    assert response.headers["allow"] == "DELETE, GET, PATCH"
    error_body(mounted_client.get("/api/v1/nope"), 404, 5)
    # Outside the mount: Starlette's own 404, the gateway is not involved.
    response = mounted_client.get(BOOK)
    assert response.status_code == 404
    assert backend.recorder.calls == []


@pytest.fixture(scope="module")
def rooted(gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    server = GatewayServer(gen_dir, backend.port, extra=["--root-path", "/gw"])
    yield server
    server.stop()


def test_serve_root_path(rooted: GatewayServer, backend: Any) -> None:
    """uvicorn's root_path: a proxy in front strips `/gw`; the app sees it in scope["root_path"]."""
    backend.reset()
    wait_http(rooted.url + "/", rooted.process)
    with httpx.Client(base_url=rooted.url, timeout=10.0) as c:
        response = c.get(BOOK)
        assert response.status_code == 200
        assert response.json()["name"] == "shelves/fiction/books/dune"
        response = c.get("/v1/books/shelves%2Ffiction%2Fbooks%2Fdune")
        assert response.status_code == 200
        assert backend.recorder.last("GetBook").request.name == "shelves/fiction/books/dune"
        # The prefix was the proxy's to strip: sent again, it is part of the routed path.
        body = error_body(c.get(f"/gw{BOOK}"), 404, 5)
        assert body["message"] == f"no route for GET /gw/gw{BOOK}"


def test_combine_rejects_conflicting_routes(gen_dir: Path) -> None:
    """Two apps declaring the same method + pattern cannot be combined: one would shadow the other."""
    import grpc.aio
    import pygateway_runtime
    from shop.v1 import shop_pb2_gateway_shop_service as shop

    async def build() -> None:
        channel = grpc.aio.insecure_channel("127.0.0.1:1")
        try:
            with pytest.raises(
                ValueError, match=r"^route \w+ /v1/\S+ of shop\.v1\.ShopService\.\w+ conflicts with"
            ):
                pygateway_runtime.combine(shop.create_app(channel), shop.create_app(channel))
        finally:
            await channel.close()

    asyncio.run(build())

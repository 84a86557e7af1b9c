"""`create_app("host:port")` / `create_app(function)`: the channel is opened in the serving loop, so an app
built at import time (before any loop runs) serves, also when served by a second loop later; lifespan
opens and closes it; a channel passed in stays the caller's."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest

BOOK = "/v1/shelves/fiction/books/dune"


async def _get(app: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        return await client.get(BOOK)


async def _lifespan(app: Any, kind: str) -> None:
    sent: list[dict[str, Any]] = []
    queue = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"], kind


@pytest.mark.parametrize("kind", ["target", "factory"])
def test_app_built_outside_any_loop_serves_in_each_loop(gen_dir: Path, backend: Any, kind: str) -> None:
    runtime = importlib.import_module("pygateway_runtime")
    shop = importlib.import_module("shop.v1.shop_pb2_gateway_shop_service")
    admin = importlib.import_module("shop.v1.shop_pb2_gateway_shelf_admin_service")
    opened: list[grpc.aio.Channel] = []

    def factory() -> grpc.aio.Channel:
        opened.append(grpc.aio.insecure_channel(backend.target))
        return opened[-1]

    source: Any = backend.target if kind == "target" else factory
    app = runtime.combine(shop.create_app(source), admin.create_app(source))  # no loop is running here
    for _ in range(2):  # two loops one after the other: each gets its own channel
        response = asyncio.run(_get(app))
        assert response.status_code == 200, response.text
        assert response.json()["title"] == "Dune"
    asyncio.run(_lifespan(app, kind))
    if kind == "factory":
        assert len(opened) >= 2  # one per loop (and per create_app)


def test_a_channel_passed_in_is_not_closed_by_lifespan(gen_dir: Path, backend: Any) -> None:
    shop = importlib.import_module("shop.v1.shop_pb2_gateway_shop_service")

    async def main() -> None:
        channel = grpc.aio.insecure_channel(backend.target)
        app = shop.create_app(channel)
        await _lifespan(app, "channel")
        response = await _get(app)
        assert response.status_code == 200
        await channel.close()

    asyncio.run(main())


def test_create_app_refuses_other_things(gen_dir: Path) -> None:
    shop = importlib.import_module("shop.v1.shop_pb2_gateway_shop_service")
    with pytest.raises(TypeError, match="host:port"):
        shop.create_app(42)

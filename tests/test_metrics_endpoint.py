"""The gateway's own metrics endpoint (`GatewayOptions(metrics_path=...)`, what serve `--metrics` uses) and
the batched counting behind it (issue 14 §5): exact counts past a batch, with prometheus_client collecting
from another thread meanwhile; scrapes left out of the counts; a generated route on the path wins.

A real grpc.aio backend (demo.backend) behind the generated shop gateway, called in-process over ASGI by
httpx (the serve command's own /metrics is scraped by tests/test_observe_e2e.py)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

BOOK = "/v1/shelves/fiction/books/dune"
BOOK_ROUTE = "/v1/{name=shelves/*/books/*}"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _app(backend: Any, registry: CollectorRegistry, **options: Any) -> tuple[Any, Any]:
    runtime = importlib.import_module("pygateway_runtime")
    metrics_module = importlib.import_module("pygateway_runtime.metrics")
    shop = importlib.import_module("shop.v1.shop_pb2_gateway_shop_service")
    metrics = metrics_module.Metrics(registry)
    app = shop.create_app(backend.target, runtime.GatewayOptions(metrics=metrics, **options))
    return app, metrics


def _ok(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], status: str) -> float:
    labels = {"method": "GET", "protocol": "rest", "route": BOOK_ROUTE, "status": status}
    return samples.get(("pygateway_http_requests_total", tuple(sorted(labels.items()))), 0.0)


def test_counts_exact_past_batches_while_another_thread_collects(gen_dir: Path, backend: Any) -> None:
    metrics_module = importlib.import_module("pygateway_runtime.metrics")
    registry = CollectorRegistry()
    app, _ = _app(backend, registry, metrics_path="/metrics")
    total = 3 * metrics_module.BATCH + 17  # three full batches and a partial one
    stop = threading.Event()
    scrapes: list[float] = []

    def scraper() -> None:  # prometheus_client's own thread-side collect, as start_http_server does
        while not stop.is_set():
            scrapes.append(_ok(_samples(generate_latest(registry).decode()), "200"))

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            sem = asyncio.Semaphore(16)

            async def one() -> None:
                async with sem:
                    response = await client.get(BOOK)
                    assert response.status_code == 200, response.text

            await asyncio.gather(*(one() for _ in range(total)))
            return await client.get("/metrics")

    thread = threading.Thread(target=scraper)
    thread.start()
    try:
        scraped = asyncio.run(asyncio.wait_for(main(), 120))
    finally:
        stop.set()
        thread.join(30)
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    samples = _samples(scraped.text)
    assert _ok(samples, "200") == total  # every request, once: none lost or counted twice
    book = (("grpc_method", "GetBook"), ("grpc_service", "shop.v1.ShopService"), ("grpc_type", "unary"))
    assert samples[("grpc_client_started_total", book)] == total
    assert samples[("grpc_client_handled_total", tuple(sorted((*book, ("grpc_code", "OK")))))] == total
    assert samples[("grpc_client_handling_seconds_count", book)] == total
    assert scrapes and scrapes == sorted(scrapes) and scrapes[-1] <= total  # counts only ever grow
    # The scrape itself (and the thread's) is left out: no /metrics request under any route.
    assert not any("unmatched" in str(key) for key in samples if key[0] == "pygateway_http_requests_total")


def test_metrics_endpoint_methods_and_accept(gen_dir: Path, backend: Any) -> None:
    app, _ = _app(backend, CollectorRegistry(), metrics_path="/metrics")

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return [
                await client.head("/metrics"),
                await client.post("/metrics", content=b"{}"),
                await client.get("/metrics", headers={"Accept": "application/openmetrics-text"}),
            ]

    head, post, openmetrics = asyncio.run(main())
    assert head.status_code == 200 and head.content == b""
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
    assert post.json()["code"] == 12 and "not allowed for /metrics" in post.json()["message"]
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_no_endpoint_without_a_path_and_a_generated_route_wins(
    gen_dir: Path, backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plain, metrics = _app(backend, CollectorRegistry())  # metrics on, no metrics_path: not served

    async def get(app: Any, path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get(path)

    assert asyncio.run(get(plain, "/metrics")).status_code == 404
    assert _ok(_samples(generate_latest(metrics.registry).decode()), "200") == 0
    with caplog.at_level(logging.WARNING, logger="pygateway"):
        shadowed, _ = _app(backend, CollectorRegistry(), metrics_path=BOOK)
    assert any("metrics endpoint" in r.getMessage() and BOOK in r.getMessage() for r in caplog.records)
    response = asyncio.run(get(shadowed, BOOK))
    assert response.status_code == 200 and response.json()["title"] == "Dune"  # the generated route


# ------------------------------------------------------------------ metrics alone: tallied requests


def _count(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _rpc(method: str, **labels: str) -> dict[str, str]:
    return {"grpc_type": "unary", "grpc_service": "shop.v1.ShopService", "grpc_method": method, **labels}


def test_metrics_alone_counts_unary_routes_hook_statuses_and_unmatched(gen_dir: Path, backend: Any) -> None:
    """With metrics the only observer a unary route's request is tallied on its Request, not observed
    through an Exchange (observe.py): statuses a forward-response hook sets (201, a bodiless 204), upstream
    errors, bad input that never reaches upstream and unmatched paths are all counted as the client saw
    them, and a stream on the same gateway still gets its Exchange."""

    def shaped(request: Any, response: Any) -> None:
        name = request.route.name if request.route is not None else ""
        if name == "shop.v1.ShopService.CreateBook":
            response.status = 201
        elif name == "shop.v1.ShopService.DeleteBook":
            response.status = 204

    registry = CollectorRegistry()
    app, _ = _app(backend, registry, forward_response=shaped)

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return [
                (await client.post("/v1/shelves/fiction/books", json={"title": "Tallied"})).status_code,
                (await client.delete("/v1/shelves/fiction/books/tallied")).status_code,
                (await client.get(BOOK)).status_code,
                (await client.get("/v1/shelves/fiction/books/missing")).status_code,
                (await client.post("/v1/shelves/fiction/books", content=b"{not json")).status_code,
                (await client.get("/v1/nothing-here")).status_code,
            ]

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [201, 204, 200, 404, 400, 404]
    samples = _samples(generate_latest(registry).decode())
    http = "pygateway_http_requests_total"
    books = "/v1/{parent=shelves/*}/books"
    assert _count(samples, http, route=books, method="POST", protocol="rest", status="201") == 1
    assert _count(samples, http, route=books, method="POST", protocol="rest", status="400") == 1
    assert _count(samples, http, route=BOOK_ROUTE, method="DELETE", protocol="rest", status="204") == 1
    assert _count(samples, http, route=BOOK_ROUTE, method="GET", protocol="rest", status="200") == 1
    assert _count(samples, http, route=BOOK_ROUTE, method="GET", protocol="rest", status="404") == 1
    assert _count(samples, http, route="unmatched", method="GET", protocol="rest", status="404") == 1
    assert not any(key[0] == http and ("status", "499") in key[1] for key in samples)
    duration = "pygateway_http_request_duration_seconds_count"
    assert _count(samples, duration, route=books, method="POST", protocol="rest") == 2
    handled = "grpc_client_handled_total"
    assert _count(samples, "grpc_client_started_total", **_rpc("CreateBook")) == 1  # not the bad JSON
    assert _count(samples, handled, **_rpc("CreateBook", grpc_code="OK")) == 1
    assert _count(samples, handled, **_rpc("DeleteBook", grpc_code="OK")) == 1
    assert _count(samples, handled, **_rpc("GetBook", grpc_code="OK")) == 1
    assert _count(samples, handled, **_rpc("GetBook", grpc_code="NotFound")) == 1
    assert _count(samples, "grpc_client_msg_received_total", **_rpc("GetBook")) == 1
    assert _count(samples, "grpc_client_handling_seconds_count", **_rpc("GetBook")) == 2


def test_metrics_alone_client_gone_during_a_unary_call(gen_dir: Path, backend: Any) -> None:
    """A tallied unary call the client leaves (the backend holds it 3 s): nothing is answered (499), and
    the upstream call, cancelled, is counted Canceled with its duration up to the cancel."""
    registry = CollectorRegistry()
    app, _ = _app(backend, registry)
    sent: list[dict[str, Any]] = []

    async def main() -> float:
        events: list[dict[str, Any]] = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if events:
                return events.pop(0)
            await asyncio.sleep(0.3)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "GET",
            "path": BOOK,
            "raw_path": BOOK.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"gw"), (b"grpc-metadata-x-backend-delay-ms", b"3000")],
            "client": ("127.0.0.1", 1234),
        }
        started = asyncio.get_running_loop().time()
        await app(scope, receive, send)
        return asyncio.get_running_loop().time() - started

    took = asyncio.run(asyncio.wait_for(main(), 30))
    assert took < 2.5  # cancelled when the client left, not held for the backend's 3 s
    assert sent == []  # nothing was answered
    samples = _samples(generate_latest(registry).decode())
    assert _ok(samples, "499") == 1
    assert _count(samples, "grpc_client_handled_total", **_rpc("GetBook", grpc_code="Canceled")) == 1
    seconds = _count(samples, "grpc_client_handling_seconds_sum", **_rpc("GetBook"))
    assert 0.2 < seconds < 2.5

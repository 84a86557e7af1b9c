"""CORS (issue 14 §2) over HTTP, through the shipped serve command with `--cors-origin` (embedded granian,
and uvicorn): preflights answered by the gateway (never upstream) with the route table's methods and the
header policy's headers, actual requests of every kind carrying Access-Control-Allow-Origin only for
allowed origins, `Vary: Origin` everywhere, credentials without ever reflecting an unlisted origin,
WebSocket handshakes from other origins refused. The browser's side: tests/test_cors_browser.py."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import GatewayServer
from tests.e2e_support import error_body

pytestmark = pytest.mark.timeout(90)

APP = "http://app.test"
OTHER = "https://other.test:8443"
EVIL = "http://evil.test"
BOOKS = "/v1/shelves/fiction/books"
BOOK = "/v1/shelves/fiction/books/dune"
WATCH = "/v1/shelves/fiction/events:watch"
CORS_ARGS = ["--cors-origin", APP, "--cors-origin", OTHER + "/", "--cors-allow-header", "X-Tenant"]
SERVERS = {"default": [], "uvicorn": ["--server", "uvicorn"]}


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.fixture(scope="module", params=list(SERVERS))
def cors_gateway(request: pytest.FixtureRequest, gen_dir: Path, backend: Any) -> Any:
    server = GatewayServer(gen_dir, backend.port, [*SERVERS[request.param], *CORS_ARGS])
    yield server
    server.stop()


def preflight(client: httpx.Client, path: str, origin: str, method: str, headers: str = "") -> httpx.Response:
    extra = {"Access-Control-Request-Headers": headers} if headers else {}
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method, **extra})


def test_preflight_from_an_allowed_origin(cors_gateway: Any, backend: Any) -> None:
    backend.reset()
    with httpx.Client(base_url=cors_gateway.url, timeout=10) as client:
        requested = (
            "content-type, grpc-metadata-x-trace, x-tenant, authorization, grpc-timeout, x-unknown, "
            "grpc-metadata-grpc-status, grpc-metadata-x-forwarded-for, connection, upgrade"
        )
        response = preflight(client, BOOKS, APP, "POST", requested)
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert cors_headers(response) == {
            "access-control-allow-origin": APP,
            # the route table's methods for this path: ListBooks (GET) and CreateBook (POST)
            "access-control-allow-methods": "GET, POST",
            "access-control-allow-headers": (
                "content-type, grpc-metadata-x-trace, x-tenant, authorization, grpc-timeout"
            ),
            "access-control-max-age": "600",
        }
        assert response.headers["vary"] == "Origin"
        # Another path, another set of methods (GetBook GET, UpdateBook PATCH, DeleteBook DELETE).
        response = preflight(client, BOOK, OTHER, "DELETE")
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == OTHER
        assert response.headers["access-control-allow-methods"] == "DELETE, GET, PATCH"
        assert "access-control-allow-headers" not in response.headers
        # A method the path does not have is not listed: the browser refuses the request.
        response = preflight(client, "/v1/shelves", APP, "DELETE")
        assert response.status_code == 204 and response.headers["access-control-allow-methods"] == "POST"
        # No route: 404 Status, nothing upstream.
        error_body(preflight(client, "/v2/nothing", APP, "GET"), 404, 5)
    assert backend.recorder.calls == []  # preflights never reach the upstream


def test_preflight_from_another_origin_gets_no_cors_headers(cors_gateway: Any, backend: Any) -> None:
    backend.reset()
    with httpx.Client(base_url=cors_gateway.url, timeout=10) as client:
        for origin in (EVIL, "null", "http://app.test.evil.test", "https://app.test", "http://app.test:8080"):
            response = preflight(client, BOOKS, origin, "POST", "content-type")
            error_body(response, 403, 7)
            assert cors_headers(response) == {}
            assert response.headers["vary"] == "Origin"
    assert backend.recorder.calls == []


def test_actual_requests(cors_gateway: Any, backend: Any) -> None:
    backend.reset()
    with httpx.Client(base_url=cors_gateway.url, timeout=10) as client:
        # unary success
        response = client.get(BOOK, headers={"Origin": APP})
        assert response.status_code == 200
        assert cors_headers(response) == {"access-control-allow-origin": APP}
        assert response.headers["vary"] == "Origin"
        # POST with JSON
        response = client.post(BOOKS, headers={"Origin": OTHER}, json={"title": "Cross"})
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == OTHER
        # errors: upstream's and the gateway's own
        response = client.get("/v1/shelves/fiction/books/missing", headers={"Origin": APP})
        error_body(response, 404, 5)
        assert response.headers["access-control-allow-origin"] == APP
        response = client.delete("/v1/shelves", headers={"Origin": APP})
        error_body(response, 405, 12)
        assert response.headers["access-control-allow-origin"] == APP
        # a stream
        with client.stream("GET", WATCH, params={"count": 2}, headers={"Origin": APP}) as stream:
            assert stream.status_code == 200
            assert stream.headers["access-control-allow-origin"] == APP
            assert stream.headers["vary"] == "Origin"
            lines = [json.loads(line) for line in stream.iter_lines() if line]
        assert [line["result"]["seq"] for line in lines] == ["0", "1"]
        # another origin: served (the browser hides it), no CORS header
        response = client.get(BOOK, headers={"Origin": EVIL})
        assert response.status_code == 200
        assert cors_headers(response) == {}
        assert response.headers["vary"] == "Origin"
        # no Origin (not a browser): Vary only
        response = client.get(BOOK)
        assert cors_headers(response) == {} and response.headers["vary"] == "Origin"
        # an OPTIONS that is not a preflight goes to routing (405 with Allow), with CORS headers
        response = client.options(BOOK, headers={"Origin": APP})
        error_body(response, 405, 12)
        assert response.headers["access-control-allow-origin"] == APP


def test_websocket_handshake_from_another_origin_is_refused(cors_gateway: Any) -> None:
    ws_url = cors_gateway.url.replace("http://", "ws://") + WATCH + "?count=1"
    with connect(ws_url, origin=APP, open_timeout=10) as ws:  # type: ignore[arg-type]
        assert json.loads(ws.recv(timeout=10))["result"]["seq"] == "0"
    with connect(ws_url, open_timeout=10) as ws:  # no Origin: not a browser, not affected
        assert json.loads(ws.recv(timeout=10))["result"]["seq"] == "0"
    refusal: Any = None
    try:
        with connect(ws_url, origin=EVIL, open_timeout=10) as ws:  # type: ignore[arg-type]
            # granian (serve default): refused by accept + the error message + close 4007
            refusal = json.loads(ws.recv(timeout=10))
            ws.recv(timeout=10)
    except InvalidStatus as err:  # uvicorn: one complete HTTP 403 with the Status JSON
        assert err.response.status_code == 403
        assert json.loads(err.response.body)["code"] == 7
        return
    except ConnectionClosed as err:
        assert err.rcvd is not None and err.rcvd.code == 4007, err
    assert refusal is not None and refusal["error"]["code"] == 7, refusal
    assert "http://evil.test" in refusal["error"]["message"]


def test_credentials(gen_dir: Path, backend: Any) -> None:
    server = GatewayServer(
        gen_dir,
        backend.port,
        ["--cors-origin", APP, "--cors-credentials", "--cors-expose-header", "Grpc-Metadata-X-Echo-Initial"],
    )
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            response = preflight(client, BOOKS, APP, "POST", "content-type")
            assert response.status_code == 204
            assert response.headers["access-control-allow-origin"] == APP
            assert response.headers["access-control-allow-credentials"] == "true"
            response = client.get("/v1/metadata", headers={"Origin": APP})
            assert response.headers["access-control-allow-origin"] == APP
            assert response.headers["access-control-allow-credentials"] == "true"
            assert response.headers["access-control-expose-headers"] == "grpc-metadata-x-echo-initial"
            for origin in (EVIL, "null"):  # never reflected
                response = client.get(BOOK, headers={"Origin": origin})
                assert cors_headers(response) == {}
    finally:
        server.stop()


def test_wildcard(gen_dir: Path, backend: Any) -> None:
    server = GatewayServer(gen_dir, backend.port, ["--cors-origin", "*"])
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            response = client.get(BOOK, headers={"Origin": EVIL})
            assert cors_headers(response) == {"access-control-allow-origin": "*"}
            response = preflight(client, BOOKS, EVIL, "POST", "content-type")
            assert response.status_code == 204 and response.headers["access-control-allow-origin"] == "*"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cors-origin", "*", "--cors-credentials"], "'*' cannot be combined with allow_credentials"),
        (["--cors-origin", "null"], "'null' cannot be allowed"),
        (["--cors-origin", "https://a.test/path"], "no path"),
        (["--cors-origin", "app.test"], "is not scheme://host"),
        (["--cors-origin", APP, "--cors-allow-header", "Connection"], "cannot be allowed"),
    ],
)
def test_bad_cors_configuration_fails_at_start(gen_dir: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, str(gen_dir / "pygateway_serve.py"), "--upstream", "127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(gen_dir), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cors_policy_normalizes_origins(gen_dir: Path) -> None:
    rt = importlib.import_module("pygateway_runtime")
    policy = rt.CorsPolicy(
        allow_origins=["HTTPS://App.Example.COM:443/", "http://[::1]:8080", "http://x.test:80"]
    )
    assert policy.allow_origins == ("https://app.example.com", "http://[::1]:8080", "http://x.test")
    with pytest.raises(TypeError, match="not one string"):
        rt.CorsPolicy(allow_origins="https://a.test")
    with pytest.raises(ValueError, match="empty"):
        rt.CorsPolicy(allow_origins=[])

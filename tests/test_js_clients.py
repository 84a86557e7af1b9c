"""The official JavaScript clients against the generated gateway: @connectrpc/connect-node's
createGrpcWebTransport and createConnectTransport (binary and JSON, and Connect's GET) under Debian's
Node, the service loaded from a protoc descriptor set (tests/js/client.mjs; no JS code generation).

Skipped when node or tests/js/node_modules is missing, except under `.ci/run` (which installs both, runs
`npm ci` in tests/js and sets PYGATEWAY_REQUIRE_JS)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayServer
from tests.protoc_support import ROOT

JS = ROOT / "tests" / "js"
NODE = shutil.which("node")
_MISSING = NODE is None or not (JS / "node_modules" / "@connectrpc" / "connect-node").is_dir()
if _MISSING and os.environ.get("PYGATEWAY_REQUIRE_JS"):  # CI (.ci/run) installs them: never skip there
    raise RuntimeError("PYGATEWAY_REQUIRE_JS is set but node or tests/js/node_modules is missing")
pytestmark = pytest.mark.skipif(_MISSING, reason="needs node and `npm ci` in tests/js")
TRANSPORTS = ["grpcweb", "grpcweb-json", "connect", "connect-json"]
SHOP = "shop.v1.ShopService"
FEED = "shop.v1.FeedService"


@pytest.fixture(scope="module")
def descriptors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.protoc_support import PROTOS, protoc

    out = tmp_path_factory.mktemp("js") / "shop.pb"
    result = protoc(
        [
            f"-I{PROTOS}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            "shop/v1/shop.proto",
            "shop/v1/feed.proto",
            "google/rpc/error_details.proto",
        ]
    )
    assert result.returncode == 0, result
    return out


def run_js(descriptors: Path, url: str, scenarios: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(JS / "client.mjs"), str(descriptors), url, json.dumps(scenarios)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return {r["name"]: r for r in json.loads(done.stdout)}


@pytest.fixture(params=["granian", "uvicorn"])
def server(
    request: pytest.FixtureRequest, gateway: GatewayServer, uvicorn_gateway: GatewayServer
) -> GatewayServer:
    return gateway if request.param == "granian" else uvicorn_gateway


def scenario(name: str, transport: str, service: str, method: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "transport": transport, "service": service, "method": method, **extra}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unary_stream_errors_and_metadata(
    descriptors: Path, server: GatewayServer, backend: Any, transport: str
) -> None:
    backend.reset()
    results = run_js(
        descriptors,
        server.url,
        [
            scenario("get", transport, SHOP, "GetBook", request={"name": "shelves/fiction/books/dune"}),
            scenario(
                "echo",
                transport,
                SHOP,
                "EchoMetadata",
                request={"note": "n"},
                headers={"x-user": "alice", "x-blob-bin": "AAE="},
                timeoutMs=5000,
            ),
            scenario(
                "fail",
                transport,
                SHOP,
                "Fail",
                request={"code": 5, "message": "gone", "reason": "BOOK_MISSING"},
            ),
            scenario("watch", transport, FEED, "Watch", request={"shelf": "shelves/fiction", "count": 3}),
            scenario(
                "watch-fail",
                transport,
                FEED,
                "Watch",
                request={"shelf": "shelves/fiction", "count": 5, "failCode": 10, "failAfter": 2},
            ),
            scenario("missing", transport, FEED, "Watch", request={"shelf": "shelves/missing"}),
        ],
    )
    get = results["get"]
    assert get["ok"], get
    [book] = get["responses"]
    assert book["title"] == "Dune" and book["coverThumbnail"] == "iVBORw0KGgoA/w=="

    echo = results["echo"]
    assert echo["ok"], echo
    [reply] = echo["responses"]
    assert reply["metadata"]["x-user"]["values"] == ["alice"]
    assert reply["metadata"]["x-blob-bin"]["values"] == ["AAE="]
    assert 0 < reply["deadlineSeconds"] <= 5.1
    assert echo["headers"]["x-echo-initial"] == "yes"
    assert echo["trailers"]["x-echo-trailer"] == "yes"

    fail = results["fail"]["error"]
    assert fail["code"] == "not_found" and fail["message"] == "gone"
    detail, *more = fail["details"]
    assert detail["type"] == "google.rpc.ErrorInfo" and detail["debug"]["reason"] == "BOOK_MISSING"
    if transport.startswith("connect"):  # Connect errors end with the request id, as REST's bodies do
        [info] = more
        assert info["type"] == "google.rpc.RequestInfo" and re.fullmatch(
            "[0-9a-f]{32}", info["debug"]["requestId"]
        )
    else:  # gRPC-Web relays the upstream's status details as they are (the id is the X-Request-ID header)
        assert more == []

    watch = results["watch"]
    assert watch["ok"], watch
    assert [event.get("seq", "0") for event in watch["responses"]] == [
        "0",
        "1",
        "2",
    ]  # 0 is the default: omitted
    assert watch["headers"]["x-feed-initial"] == "yes"
    assert watch["trailers"]["x-feed-trailer"] == "done"

    failed = results["watch-fail"]
    assert len(failed["responses"]) == 2
    assert failed["error"]["code"] == "aborted" and failed["error"]["message"] == "failed after 2 events"
    assert failed["error"]["details"][0]["debug"]["reason"] == "STREAM_FAILED"
    assert failed["error"]["metadata"]["x-feed-trailer"] == "done"

    assert results["missing"]["error"]["code"] == "not_found"


@pytest.mark.parametrize("transport", ["connect-get", "connect-get-json"])
def test_connect_get(descriptors: Path, server: GatewayServer, backend: Any, transport: str) -> None:
    """useHttpGet: the side-effect-free GetBook goes out as a GET (the backend sees the call)."""
    backend.reset()
    results = run_js(
        descriptors,
        server.url,
        [scenario("get", transport, SHOP, "GetBook", request={"name": "shelves/fiction/books/dune"})],
    )
    assert results["get"]["ok"], results["get"]
    assert results["get"]["responses"][0]["title"] == "Dune"
    [call] = backend.recorder.calls
    assert dict(call.metadata).get("grpcgateway-content-type") is None  # a GET has no body type


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_deadline_and_cancellation(
    descriptors: Path, server: GatewayServer, backend: Any, transport: str
) -> None:
    backend.reset()
    results = run_js(
        descriptors,
        server.url,
        [
            scenario(
                "deadline",
                transport,
                SHOP,
                "EchoMetadata",
                request={},
                headers={"x-backend-delay-ms": "3000"},
                timeoutMs=200,
            ),
            scenario(
                "cancel",
                transport,
                FEED,
                "Watch",
                request={"shelf": "shelves/fiction", "count": 200, "intervalMs": 20},
                abortAfterMessages=2,
            ),
        ],
    )
    deadline = results["deadline"]
    assert deadline["error"]["code"] == "deadline_exceeded" and deadline["elapsedMs"] < 2000
    cancel = results["cancel"]
    assert cancel["error"]["code"] == "canceled" and len(cancel["responses"]) == 2
    limit = time.monotonic() + 5
    calls = lambda: [*backend.recorder.for_method("Watch"), *backend.recorder.for_method("EchoMetadata")]  # noqa: E731
    while time.monotonic() < limit and not all(c.cancelled for c in calls()):
        time.sleep(0.05)
    [watch] = backend.recorder.for_method("Watch")
    assert watch.cancelled and watch.messages_sent < 200
    # The deadline reached the upstream: the call was cancelled there (or, on a loaded machine, expired
    # before it was even sent).
    assert all(echo.cancelled for echo in backend.recorder.for_method("EchoMetadata"))


def test_grpcweb_refuses_client_streaming(descriptors: Path, server: GatewayServer, backend: Any) -> None:
    backend.reset()
    results = run_js(
        descriptors,
        server.url,
        [scenario("upload", "grpcweb", FEED, "Upload", requests=[{"name": "a", "data": "x"}])],
    )
    error = results["upload"]["error"]
    assert error["code"] == "unimplemented" and "gRPC-Web does not carry" in error["message"]
    assert not backend.recorder.calls


# ---------------------------------------------------------------------------------------------- Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ESBUILD = JS / "node_modules" / ".bin" / "esbuild"
BROWSER_APP = '''
import os, pathlib
import grpc.aio
import pygateway_runtime
from shop.v1 import feed_pb2_gateway_feed_service as feed, shop_pb2_gateway_shop_service as shop

FILES = {
    "/page": ("text/html", pathlib.Path(os.environ["PAGE"]).read_bytes()),
    "/descriptors.pb": ("application/octet-stream", pathlib.Path(os.environ["DESCRIPTORS"]).read_bytes()),
}
gateway = None

async def app(scope, receive, send):
    """The page, its descriptor set and /result beside the gateway: one origin, so no CORS is needed."""
    global gateway
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope.get("path")
    if scope["type"] == "http" and path in FILES:
        kind, body = FILES[path]
        headers = [(b"content-type", kind.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] == "http" and path == "/result":
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        pathlib.Path(os.environ["RESULT"]).write_bytes(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if gateway is None:
        channel = grpc.aio.insecure_channel(os.environ["UPSTREAM"])
        gateway = pygateway_runtime.combine(shop.create_app(channel), feed.create_app(channel))
    await gateway(scope, receive, send)
'''


if (CHROMIUM is None or not ESBUILD.exists()) and os.environ.get("PYGATEWAY_REQUIRE_JS"):
    raise RuntimeError("PYGATEWAY_REQUIRE_JS is set but chromium or tests/js's esbuild is missing")


@pytest.mark.skipif(CHROMIUM is None or not ESBUILD.exists(), reason="needs Debian's chromium and esbuild")
def test_headless_chromium_grpcweb(descriptors: Path, gen_dir: Path, backend: Any, tmp_path: Path) -> None:
    """@connectrpc/connect-web's gRPC-Web transports (JSON and binary) and its Connect transport,
    bundled by esbuild, in headless Chromium against the gateway (served beside the page)."""
    from tests.conftest import free_port, wait_http

    backend.reset()
    bundle = tmp_path / "bundle.js"
    built = subprocess.run(
        [
            str(ESBUILD),
            str(JS / "browser.mjs"),
            "--bundle",
            "--format=iife",
            "--platform=browser",
            f"--outfile={bundle}",
        ],
        cwd=JS,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr.decode()
    page = tmp_path / "page.html"
    page.write_text(f"<!doctype html><title>pygateway</title><script>{bundle.read_text()}</script>")
    (tmp_path / "browser_app.py").write_text(BROWSER_APP)
    result = tmp_path / "result.json"
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(gen_dir),
        "PAGE": str(page),
        "DESCRIPTORS": str(descriptors),
        "RESULT": str(result),
        "UPSTREAM": f"127.0.0.1:{backend.port}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp_path), "--http", "h11", "--ws", "none",
         "--port", str(port), "--log-level", "warning", "browser_app:app"],
        env=env,
    )  # fmt: skip
    browser: subprocess.Popen[bytes] | None = None
    try:
        wait_http(f"http://127.0.0.1:{port}/page", server)
        assert CHROMIUM is not None
        browser = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", f"http://127.0.0.1:{port}/page"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not result.exists():
            time.sleep(0.1)
        assert result.exists(), "the page reported nothing within 60 s"
    finally:
        if browser is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGTERM)  # chromium and the helpers it started
            browser.wait(10)
        server.terminate()
        server.wait(10)
    report = json.loads(result.read_text())
    assert report["ok"], report
    for name in ("grpcweb", "grpcweb-binary", "connect"):
        out = report["results"][name]
        assert out["title"] == "Dune", out
        assert out["headers"]["x-echo-initial"] == "yes" and out["trailers"]["x-echo-trailer"] == "yes", out
        assert out["events"] == ["event 0", "event 1", "event 2"], out
        details = ["google.rpc.ErrorInfo", *(["google.rpc.RequestInfo"] if name == "connect" else [])]
        assert out["error"] == {"code": "NotFound", "message": "gone", "details": details}, out
    sent = [c for c in backend.recorder.calls if c.method.endswith("EchoMetadata")]
    assert len(sent) == 3 and all(dict(c.metadata).get("x-user") == "browser" for c in sent)

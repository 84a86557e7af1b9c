"""The official JavaScript clients against the generated gateway: @connectrpc/connect-node's
createGrpcWebTransport and createConnectTransport (binary and JSON, and Connect's GET) under Debian's
Node, the service loaded from a protoc descriptor set (tests/js/client.mjs; no JS code generation).

Skipped when node or tests/js/node_modules is missing, except under `.ci/run` (which installs both, runs
`npm ci` in tests/js and sets PYGATEWAY_REQUIRE_JS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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
    [detail] = fail["details"]
    assert detail["type"] == "google.rpc.ErrorInfo" and detail["debug"]["reason"] == "BOOK_MISSING"

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
    [echo] = backend.recorder.for_method("EchoMetadata")
    assert echo.cancelled  # the deadline reached the upstream


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

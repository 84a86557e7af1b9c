"""The serve command's `--transport`: the gateway reaches the demo backend over the transport asked for
(the default from $PYGATEWAY_TRANSPORT, which `make test-native` sets for the whole suite), and the
native transport carries unary, streaming and error exchanges end to end, over TLS too."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from protoc_gen_pygateway.runtime.transport import native_available
from tests.conftest import GatewayServer

BOOK = "/v1/shelves/fiction/books/dune"


def _user_agent(backend: Any) -> str:
    call = backend.recorder.last("GetBook")
    return str(call.metadata_values("user-agent")[0])


def test_the_default_gateway_uses_the_transport_of_the_environment(
    client: httpx.Client, backend: Any
) -> None:
    assert client.get(BOOK).status_code == 200
    agent = _user_agent(backend)
    # $PYGATEWAY_TRANSPORT when set, else native when hpack is installed (it is, with the dev extra)
    expected = os.environ.get("PYGATEWAY_TRANSPORT") or ("native" if native_available() else "grpcio")
    if expected == "native":
        assert agent.startswith("grpc-python-pygateway-native/"), agent
    else:
        assert agent.startswith("grpc-python"), agent
        assert "pygateway-native" not in agent


@pytest.fixture(scope="module")
def native_gateway(gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    server = GatewayServer(gen_dir, backend.port, ["--transport", "native"])
    yield server
    server.stop()


def test_native_transport_end_to_end(native_gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    with httpx.Client(base_url=native_gateway.url, timeout=10.0) as http:
        response = http.get(BOOK, headers={"x-request-id": "abc"})
        assert response.status_code == 200 and response.json()["name"] == "shelves/fiction/books/dune"
        assert _user_agent(backend).startswith("grpc-python-pygateway-native/")
        missing = http.get("/v1/shelves/fiction/books/nope")
        assert missing.status_code == 404 and missing.json()["code"] == 5
        # A server stream (NDJSON), relayed message by message, and its gRPC failure after 3 messages.
        response = http.get("/v1/shelves/fiction/events:watch", params={"count": 5})
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in response.text.splitlines() if line]
        assert [int(line["result"]["seq"]) for line in lines] == [0, 1, 2, 3, 4]
        response = http.get(
            "/v1/shelves/fiction/events:watch", params={"count": 5, "fail_code": 9, "fail_after": 3}
        )
        lines = [json.loads(line) for line in response.text.splitlines() if line]
        assert len(lines) == 4 and lines[-1]["error"]["code"] == 9
        # A deadline from the client (Grpc-Timeout) ends a slow stream with DEADLINE_EXCEEDED.
        response = http.get(
            "/v1/shelves/fiction/events:watch",
            params={"count": 10, "intervalMs": 500},
            headers={"Grpc-Timeout": "1S"},
        )
        lines = [json.loads(line) for line in response.text.splitlines() if line]
        assert lines[-1]["error"]["code"] == 4

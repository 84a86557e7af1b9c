"""The OpenAPI documents against the real thing: the demo backend behind the serve command, which serves the
merged document of shop.proto and feed.proto (`--openapi`).

- the serve command's `--openapi` (GET/HEAD /openapi.json, 405 otherwise, `servers` under a root path);
- replies of every framing (JSON, NDJSON, SSE, WebSocket, errors before and after a stream began)
  validate against the document's schemas for their status and media type;
- schemathesis (`st run`, its CLI, hooks in tests/schemathesis_hooks.py) generates requests from the
  document (coverage, fuzzing and stateful phases, positive and negative data) and checks every reply: no
  5xx, a documented status code, a documented content type and a body (and headers) matching the
  document. Bounded: at most 10 examples per operation and phase, a fixed seed, a hard timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from protoc_gen_pygateway.openapi.merge import merge
from protoc_gen_pygateway.plugin import generate
from tests.conftest import SHOP, GatewayServer
from tests.protoc_support import ROOT, code_generator_request

BIN = Path(sys.executable).parent
#: Hard bound of one schemathesis run (it takes about 20 s on the 2-core machine).
ST_TIMEOUT = 150


@pytest.fixture(scope="module")
def openapi_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shop.openapi.json and feed.openapi.json merged, as a user would serve them."""
    response = generate(code_generator_request(SHOP, "openapi=true"))
    assert not response.error, response.error
    docs = [json.loads(f.content) for f in response.file if f.name.endswith(".openapi.json")]
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(merge(docs), indent=2) + "\n")
    return path


@pytest.fixture(scope="module")
def document(openapi_file: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(openapi_file.read_text())
    return result


@pytest.fixture(scope="module")
def served(gen_dir: Path, backend: Any, openapi_file: Path) -> Iterator[GatewayServer]:
    server = GatewayServer(gen_dir, backend.port, ["--openapi", str(openapi_file)])
    yield server
    server.stop()


@pytest.fixture
def http(served: GatewayServer, backend: Any) -> Iterator[httpx.Client]:
    backend.reset()
    with httpx.Client(base_url=served.url, timeout=10.0) as c:
        yield c


# ---------------------------------------------------------------------------------------- serving


def test_serves_the_document(http: httpx.Client, document: dict[str, Any]) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document
    head = http.head("/openapi.json")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == response.headers["content-length"]
    refused = http.post("/openapi.json", json={})
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
    assert refused.json() == {
        "code": 12,
        "message": "method POST not allowed for /openapi.json (allowed: GET, HEAD)",
        "details": [],
    }
    assert http.get("/v1/shelves/fiction").json() == {"name": "shelves/fiction", "theme": "Fiction"}


def test_not_served_by_default(gateway: GatewayServer) -> None:
    assert httpx.get(gateway.url + "/openapi.json").status_code == 404


def test_document_under_a_root_path(gen_dir: Path, openapi_file: Path) -> None:
    """The ASGI wrapper directly: below a root path it answers there, with `servers` pointing there."""
    from pygateway_runtime import serve  # type: ignore[import-not-found]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    wrapper = serve.OpenApiDocument(app, str(openapi_file), "/api")

    def call(path: str) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(event: dict[str, Any]) -> None:
            sent.append(event)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "GET", "path": path, "root_path": "/api", "headers": []}
        asyncio.run(wrapper(scope, receive, send))
        return sent

    start, body = call("/api/openapi.json")
    assert start["status"] == 200
    assert json.loads(body["body"])["servers"] == [{"url": "/api"}]
    assert call("/api/v1/x")[0]["status"] == 204
    assert call("/openapi.json")[0]["status"] == 200  # servers that strip the root path themselves


def test_bad_document_is_refused_at_start(gen_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    for path in (tmp_path / "bad.json", tmp_path / "missing.json"):
        result = subprocess.run(
            [
                sys.executable,
                str(gen_dir / "pygateway_serve.py"),
                "--upstream",
                "127.0.0.1:1",
                "--openapi",
                str(path),
            ],
            env={**os.environ, "PYTHONPATH": str(gen_dir)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert f"--openapi {path}:" in result.stderr


# ---------------------------------------------------------------------------------------- conformance


class Document:
    """Validate replies against the operations of an OpenAPI document (JSON, NDJSON, SSE)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def validate(self, schema: dict[str, Any], value: Any) -> None:
        root = {**schema, "components": self.document["components"]}
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        errors = list(jsonschema.Draft202012Validator(root, format_checker=checker).iter_errors(value))
        assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]

    def response(self, path: str, method: str, status: int) -> dict[str, Any]:
        responses = self.document["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method.upper()} {path}: status {status} is not documented"
        response: dict[str, Any] = responses[str(status)]
        if "$ref" in response:
            response = self.document["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
        return response

    def check(self, path: str, method: str, reply: httpx.Response) -> Any:
        """Validate `reply` as an answer of the operation; return its parsed body."""
        response = self.response(path, method, reply.status_code)
        media = reply.headers.get("content-type", "").split(";")[0]
        if method == "head":
            assert reply.content == b""
            return None
        assert media in response["content"], f"{media} is not documented for {reply.status_code}"
        schema = response["content"][media]["schema"]
        if media == "application/json":
            body = reply.json()
            self.validate(schema, body)
        elif media == "application/x-ndjson":
            lines = reply.text.split("\n")  # not splitlines(): U+2028 and such may be inside the JSON
            assert lines[-1] == "" and all(lines[:-1])
            body = [json.loads(line) for line in lines[:-1]]
            self.validate(schema, body)
        else:
            assert media == "text/event-stream"
            body = []
            for block in reply.text.split("\n\n"):
                if not block:
                    continue
                fields = dict(line.split(": ", 1) for line in block.split("\n"))
                event = {"event": fields.get("event", "message"), "data": fields["data"]}
                self.validate_event(schema, event)
                body.append((event["event"], json.loads(event["data"])))
        return body

    def validate_event(self, schema: dict[str, Any], event: dict[str, str]) -> None:
        """An SSE event against the per-event schema, with its `contentSchema` applied to the JSON data."""
        branches = schema.get("anyOf", [schema])
        branch = next(b for b in branches if b["properties"]["event"]["const"] == event["event"])
        self.validate(branch, event)
        self.validate(branch["properties"]["data"]["contentSchema"], json.loads(event["data"]))


BOOK = "/v1/shelves/{shelvesId}/books/{booksId}"
WATCH = "/v1/shelves/{shelvesId}/events:watch"
TITLES = "/v1/shelves/{shelvesId}/titles:watch"
SCALAR_FIELDS = ["fDouble", "fFloat", "fInt64", "fUint64", "fInt32", "fFixed64", "fFixed32", "fBool"]
SCALAR_FIELDS += ["fString", "fBytes", "fUint32", "fEnum", "fSfixed32", "fSfixed64", "fSint32", "fSint64"]
SCALARS = "/v1/scalars/" + "/".join("{" + name + "}" for name in SCALAR_FIELDS)


def test_unary_replies_conform(http: httpx.Client, document: dict[str, Any]) -> None:
    doc = Document(document)
    dune = doc.check(BOOK, "get", http.get("/v1/shelves/fiction/books/dune"))
    assert dune["attributes"]["notes"] is None and dune["isbn"] == "9780441013593"  # every field set
    listed = doc.check(
        "/v1/shelves/{shelvesId}/books", "get", http.get("/v1/shelves/fiction/books?pageSize=1")
    )
    assert len(listed["books"]) == 1
    doc.check(BOOK + "/title", "get", http.get("/v1/shelves/fiction/books/dune/title"))
    doc.check(BOOK, "get", http.get("/v1/shelves/fiction/books/missing"))
    doc.check("/v1/books/{name}", "get", http.get("/v1/books/x?unknown=1"))
    failed = doc.check(
        "/v1/fail", "post", http.post("/v1/fail", json={"code": 16, "message": "no", "reason": "R"})
    )
    assert failed["details"][0]["reason"] == "R"
    doc.check("/v1/fail", "post", http.post("/v1/fail", content=b"x", headers={"content-type": "text/plain"}))
    echoed = doc.check(
        SCALARS, "get", http.get("/v1/scalars/NaN/-Infinity/-9/9/-1/1/1/true/s/AP8/1/7/1/1/1/1")
    )
    assert (echoed["fDouble"], echoed["fFloat"], echoed["fEnum"]) == ("NaN", "-Infinity", 7)
    doc.check(
        "/v1/shelves/{shelvesId}/files/{filesPath}:stat", "head", http.head("/v1/shelves/s/files/a/b:stat")
    )
    doc.check("/v1/metadata:echo", "post", http.post("/v1/metadata:echo", json={"note": "n"}))
    doc.check(BOOK, "delete", http.delete("/v1/shelves/fiction/books/dune"))


def test_stream_replies_conform(http: httpx.Client, document: dict[str, Any]) -> None:
    doc = Document(document)
    sse = {"accept": "text/event-stream"}
    lines = doc.check(WATCH, "get", http.get("/v1/shelves/s/events:watch?count=2"))
    assert [line["result"]["seq"] for line in lines] == ["0", "1"]
    failing = "/v1/shelves/s/events:watch?count=3&failCode=9&failAfter=1"
    lines = doc.check(WATCH, "get", http.get(failing))
    assert lines[-1]["error"]["code"] == 9
    refused = http.get("/v1/shelves/missing/events:watch")
    assert refused.status_code == 404
    assert doc.check(WATCH, "get", refused)[0]["error"]["code"] == 5
    events = doc.check(WATCH, "get", http.get(failing, headers=sse))
    assert [name for name, _ in events] == ["message", "error"]
    events = doc.check(TITLES, "get", http.get("/v1/shelves/s/titles:watch?count=2", headers=sse))
    assert events == [
        ("message", "event 0"),
        ("message", "event 1"),
        ("end", {"trailers": {"x-feed-trailer": "done"}}),
    ]
    doc.check(WATCH, "get", http.get("/v1/shelves/missing/events:watch", headers=sse))
    doc.check(WATCH, "post", http.post("/v1/shelves/s/events:watch", json={"count": 1}))
    body = b'{"name": "a", "data": "xy"}\n{"name": "b"}\n'
    summary = doc.check("/v1/uploads", "post", http.post("/v1/uploads", content=body))
    assert summary == {"chunks": 2, "bytes": "2", "names": ["a", "b"]}
    chat = doc.check("/v1/chat", "post", http.post("/v1/chat?room=r", content=b'{"text": "hi"}\n'))
    assert [line["result"]["user"] for line in chat] == ["system", "echo"]
    doc.check("/v1/chat", "post", http.post("/v1/chat", content=b'{"text": "fail"}\n', headers=sse))
    doc.check("/v1/chat", "post", http.post("/v1/chat", content=b"[1]\n"))


def test_websocket_messages_conform(served: GatewayServer, document: dict[str, Any], backend: Any) -> None:
    backend.reset()
    doc = Document(document)
    base = served.url.replace("http://", "ws://")
    for path, url, send in (
        (WATCH, "/v1/shelves/s/events:watch?count=2", []),
        (WATCH, "/v1/shelves/s/events:watch?count=3&failCode=9&failAfter=1", []),
        ("/v1/chat", "/v1/chat?room=r", [{"text": "a"}, {"text": "b"}, None]),
        ("/v1/uploads", "/v1/uploads", [{"name": "a"}, None]),
    ):
        spec = document["paths"][path]["get" if path == WATCH else "post"]["x-websocket"]
        messages = []
        with connect(base + url, open_timeout=5) as ws:
            for item in send:
                if item is not None:
                    doc.validate(spec["clientMessage"], item)
                ws.send(json.dumps(item))
            try:
                while True:
                    messages.append(json.loads(ws.recv(timeout=5)))
            except ConnectionClosed:
                pass
        assert messages, url
        for item in messages:
            doc.validate(spec["serverMessage"], item)


# ---------------------------------------------------------------------------------------- schemathesis


CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


def schemathesis(
    served: GatewayServer, cwd: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [
            str(BIN / "st"),
            "run",
            f"{served.url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-shrink",
            *extra,
        ],
        cwd=cwd,  # schemathesis keeps its example database in the working directory
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=ST_TIMEOUT,
        check=False,
    )
    return result, time.monotonic() - started


@pytest.mark.timeout(2 * ST_TIMEOUT + 30)
def test_schemathesis_finds_nothing(served: GatewayServer, backend: Any, tmp_path: Path) -> None:
    """Every operation, generated from the document, against the gateway and the demo backend; then the
    streaming operations again with `Accept: text/event-stream` (SSE events and their JSON data)."""
    backend.reset()
    try:
        result, seconds = schemathesis(served, tmp_path)
        assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
        assert "24 selected / 24 total" in result.stdout
        print(f"schemathesis: {seconds:.1f} s: {result.stdout.strip().splitlines()[-1]}")
        result, seconds = schemathesis(
            served, tmp_path, "--include-tag", "FeedService", "-H", "Accept: text/event-stream"
        )
        assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
        print(f"schemathesis (SSE): {seconds:.1f} s: {result.stdout.strip().splitlines()[-1]}")
    finally:
        backend.reset()  # the run created and deleted books

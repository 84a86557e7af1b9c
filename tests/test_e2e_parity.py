"""Transcoding parity with grpc-gateway (issue 13), end to end: a real grpc.aio backend
(tests/parity_backend.py), the generated parity gateway under the shipped serve command (embedded granian)
and under `--server uvicorn`, real httpx clients and raw sockets.

PATCH field masks from the body, google.api.HttpBody (unary, server and client streaming), well-known
types in path variables, unbound methods with grpc_api_configuration, unary cancellation on disconnect.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayServer
from tests.e2e_support import error_body
from tests.parity_backend import ParityBackend, pattern, window
from tests.protoc_support import ROOT, generate_tree
from tests.stream_support import rss_bytes, wait_until

PARITY = "parity/v1/parity.proto"
YAML = ROOT / "testdata" / "apiconfig" / "parity.yaml"
PARAMETER = f"generate_unbound_methods=true,grpc_api_configuration={YAML},openapi=true"
SERVICE = "parity.v1.ParityService"
SERVERS = {"granian": [], "uvicorn": ["--server", "uvicorn"]}


@pytest.fixture(scope="module")
def parity_gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parity_gen")
    generate_tree(out, [PARITY], PARAMETER)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return out


@pytest.fixture(scope="module")
def backend(parity_gen: Path) -> Iterator[ParityBackend]:
    with ParityBackend() as running:
        yield running


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(
    request: pytest.FixtureRequest, parity_gen: Path, backend: ParityBackend
) -> Iterator[GatewayServer]:
    running = GatewayServer(parity_gen, backend.port, SERVERS[request.param])
    running.name = request.param  # type: ignore[attr-defined]
    yield running
    running.stop()


@pytest.fixture
def client(server: GatewayServer, backend: ParityBackend) -> Iterator[httpx.Client]:
    backend.recorder.clear()
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        yield c


def _json(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


# ------------------------------------------------------------------------------------------ PATCH masks


FULL_BOOK = {
    "title": "T",
    "author": {"displayName": "A", "born": "2020-01-01T00:00:00Z", "mentor": {"display_name": "M"}},
    "tags": ["x"],
    "labels": {"k": "v"},
    "price": 3.5,
    "extra": {"a": {"b": 1}},
    "pageCount": 0,
    "reviewers": [{"displayName": "r"}],
}


def test_patch_mask_lists_the_body_members_sorted(client: httpx.Client, backend: ParityBackend) -> None:
    reply = _json(client.patch("/v1/books/b1", json=FULL_BOOK))
    # Maps, repeated fields, well-known types (Timestamp, DoubleValue, Struct) are leaves; nested messages
    # are descended into; a member sent with its default value (pageCount 0) is in the mask.
    assert reply["paths"] == [
        "author.born",
        "author.display_name",
        "author.mentor.display_name",
        "extra",
        "labels",
        "page_count",
        "price",
        "reviewers",
        "tags",
        "title",
    ]
    assert reply["maskSet"] is True
    assert reply["book"]["name"] == "books/b1"  # from the path, not in the mask
    (seen,) = backend.recorder.calls("UpdateBook")
    assert list(seen.update_mask.paths) == reply["paths"]


def test_patch_mask_other_binding_and_member_order(client: httpx.Client) -> None:
    reordered = dict(reversed(list(FULL_BOOK.items())))
    first = _json(client.patch("/v1/books/b1", json=FULL_BOOK))["paths"]
    assert _json(client.patch("/v1/books:update", json=reordered))["paths"] == first


def test_patch_mask_null_and_empty_objects(client: httpx.Client) -> None:
    assert _json(client.patch("/v1/books/b1", json={"title": None, "author": None}))["paths"] == [
        "author",
        "title",
    ]
    assert _json(client.patch("/v1/books/b1", json={"author": {}}))["paths"] == ["author"]
    empty = _json(client.patch("/v1/books/b1", json={}))
    assert empty["paths"] == [] and empty["maskSet"] is True  # present and empty, as in grpc-gateway


def test_patch_mask_proto_and_json_names(client: httpx.Client) -> None:
    body = {"page_count": 3, "author": {"display_name": "a"}, "pageCount": None}
    response = client.patch("/v1/books/b1", json=body)  # the same field twice: refused by the body parser
    error_body(response, 400, 3)
    reply = _json(client.patch("/v1/books/b1", json={"page_count": 3, "author": {"displayName": "a"}}))
    assert reply["paths"] == ["author.display_name", "page_count"]


def test_query_mask_wins_unchanged(client: httpx.Client, backend: ParityBackend) -> None:
    reply = _json(client.patch("/v1/books/b1?updateMask=title", json=FULL_BOOK))
    assert reply["paths"] == ["title"]
    reply = _json(client.patch("/v1/books/b1?update_mask=author.display_name,tags", json={"title": "x"}))
    assert reply["paths"] == ["author.display_name", "tags"]


def test_no_mask_where_the_rule_does_not_apply(client: httpx.Client) -> None:
    """PUT, two FieldMask fields, and body `*` never fill the mask."""
    assert _json(client.put("/v1/books/b1", json={"title": "x"}))["paths"] == []
    assert _json(client.patch("/v1/two/books/b1", json={"title": "x"}))["paths"] == []
    assert _json(client.patch("/v1/star/books/b1", json={"book": {"title": "x"}}))["paths"] == []


def test_patch_bad_bodies_never_reach_the_backend(client: httpx.Client, backend: ParityBackend) -> None:
    for body in (b"{", b'{"title": 1}', b'{"nope": 1}', b"[]", b'{"author": {"born": "never"}}'):
        response = client.patch("/v1/books/b1", content=body, headers={"content-type": "application/json"})
        error_body(response, 400, 3)
    assert backend.recorder.calls("UpdateBook") == []


# ------------------------------------------------------------------------------------------ WKT paths


def test_timestamp_in_the_last_segment_is_not_a_verb(client: httpx.Client) -> None:
    assert _json(client.get("/v1/events/2024-01-02T03:04:05Z"))["at"] == "2024-01-02T03:04:05Z"
    assert _json(client.get("/v1/events/2024-01-02T03%3A04%3A05.5Z"))["at"] == "2024-01-02T03:04:05.500Z"
    assert _json(client.get("/v1/events/2024-01-02T03:04:05+01:00"))["at"] == "2024-01-02T02:04:05Z"
    # The same path with a real verb reaches the verb's route; the verb-less path stays GetEvent's.
    checked = client.post("/v1/events/2024-01-02T03:04:05Z:check")
    assert _json(checked)["at"] == "2024-01-02T03:04:05Z"
    error_body(client.post("/v1/events/2024-01-02T03:04:05Z"), 405, 12)


def test_well_known_types_in_paths(client: httpx.Client) -> None:
    assert _json(client.get("/v1/waits/1.5s"))["wait"] == "1.500s"
    assert _json(client.get("/v1/counts/-42"))["count"] == -42
    assert (
        _json(client.get("/v1/masks/author.displayName,page_count"))["mask"] == "author.displayName,pageCount"
    )
    reply = _json(client.get("/v1/labels/hello%20w%2Frld/true/18446744073709551615"))
    assert (reply["label"], reply["flag"], reply["big"]) == ("hello w/rld", True, "18446744073709551615")


@pytest.mark.parametrize(
    ("path", "query", "name"),
    [
        ("/v1/events/yesterday", "/v1/waits/1s?at=yesterday", "at"),
        ("/v1/waits/soon", "/v1/events/2024-01-02T03:04:05Z?wait=soon", "wait"),
        ("/v1/counts/2147483648", "/v1/waits/1s?count=2147483648", "count"),
        ("/v1/counts/x", "/v1/waits/1s?count=x", "count"),
        ("/v1/labels/a/maybe/1", "/v1/waits/1s?flag=maybe", "flag"),
        ("/v1/labels/a/true/-1", "/v1/waits/1s?big=-1", "big"),
    ],
)
def test_bad_path_values_fail_as_in_the_query(
    client: httpx.Client, backend: ParityBackend, path: str, query: str, name: str
) -> None:
    from_path = error_body(client.get(path), 400, 3)["message"]
    from_query = error_body(client.get(query), 400, 3)["message"]
    assert from_path == from_query, (from_path, from_query)
    assert name in from_path
    assert backend.recorder.calls("GetEvent") == []


# ------------------------------------------------------------------------------------------ HttpBody


def test_http_body_reply(client: httpx.Client) -> None:
    response = client.get("/v1/files/f", params={"size": 70000, "contentType": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == pattern(70000)
    empty = client.get("/v1/files/f")
    assert empty.status_code == 200 and empty.content == b""
    assert empty.headers["content-type"] == "application/octet-stream"
    assert empty.headers["content-length"] == "0"
    field = client.get("/v1/filefields/f", params={"size": 300, "contentType": "text/plain; charset=latin-1"})
    assert field.content == pattern(300) and field.headers["content-type"] == "text/plain; charset=latin-1"
    error_body(client.get("/v1/files/missing"), 404, 5)


def test_http_body_reply_content_type_cannot_inject_headers(client: httpx.Client) -> None:
    response = client.get("/v1/files/f", params={"size": 3, "contentType": "text/plain\r\nx-evil: 1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert "x-evil" not in response.headers


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (pattern(100000), "application/x-thing"),
        (b"\xff\xfe\x00\x80 not utf-8", "text/plain; charset=latin-1"),
        (b"", "application/octet-stream"),
        (b'{"not": "parsed"}', "application/json"),
        (b"a=1&b=2", None),
    ],
)
def test_http_body_request(
    client: httpx.Client, backend: ParityBackend, body: bytes, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    reply = _json(client.post("/v1/files/name1", params={"tag": "t"}, content=body, headers=headers))
    assert reply == {
        "name": "name1",
        "contentType": content_type or "",
        "size": str(len(body)),
        "sha256": hashlib.sha256(body).hexdigest(),
        "tag": "t",
        "messages": 1,
        "largestMessage": len(body),
    }
    echoed = client.post("/v1/echo", content=body, headers=headers)
    assert echoed.status_code == 200 and echoed.content == body
    assert echoed.headers["content-type"] == (content_type or "application/octet-stream")


def test_http_body_request_refusals(client: httpx.Client, backend: ParityBackend) -> None:
    error_body(client.post("/v1/files/n", content=b"x" * (4 * 1024 * 1024 + 1)), 413, 8)
    error_body(client.post("/v1/files/n", content=b"x", headers={"content-encoding": "gzip"}), 415, 3)
    error_body(client.post("/v1/files/n?nope=1", content=b"x"), 400, 3)
    error_body(client.post("/v1/echo?data=eA", content=b"x"), 400, 3)  # body `*`: nothing from the query
    assert backend.recorder.calls("Upload") == [] and backend.recorder.calls("EchoRaw") == []


def test_http_body_server_stream(client: httpx.Client, backend: ParityBackend) -> None:
    params = {"size": 1_000_000, "chunk": 50_000, "contentType": "video/mp4"}
    with client.stream("GET", "/v1/streams/s", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        data = b"".join(response.iter_bytes())
    assert data == pattern(1_000_000)
    empty = client.get("/v1/streams/s")
    assert empty.status_code == 200 and empty.content == b""
    assert empty.headers["content-type"] == "application/octet-stream"


def test_http_body_stream_error_before_first_byte(client: httpx.Client) -> None:
    body = error_body(client.get("/v1/streams/s", params={"size": 10, "failAfter": -1}), 404, 5)
    assert body["message"] == "no stream s"


def test_http_body_stream_error_after_first_byte_cuts_the_response(server: GatewayServer) -> None:
    """The client must be able to tell: no terminating chunk, the connection closed."""
    request = b"GET /v1/streams/s?size=400000&chunk=100000&failAfter=2 HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    assert not body.endswith(b"0\r\n\r\n"), body[-20:]
    # And httpx reports the body as incomplete.
    with httpx.Client(base_url=server.url, timeout=10) as c, pytest.raises(httpx.RemoteProtocolError):
        c.get("/v1/streams/s", params={"size": 400000, "chunk": 100000, "failAfter": 2})


def test_http_body_stream_cut_over_http2(parity_gen: Path, backend: ParityBackend, tmp_path: Path) -> None:
    """Over HTTP/2 (hypercorn, h2c) a late error never looks like a complete body either."""
    from tests.servers import GatewayProcess

    gateway = GatewayProcess("hypercorn", parity_gen, backend.target, tmp_path)
    try:
        gateway.wait_ready(gateway.port)
        with httpx.Client(base_url=gateway.url, http1=False, http2=True, timeout=10) as c:
            complete = c.get("/v1/streams/s", params={"size": 300000, "chunk": 100000})
            assert complete.http_version == "HTTP/2" and complete.content == pattern(300000)
            with pytest.raises(httpx.RemoteProtocolError):
                c.get("/v1/streams/s", params={"size": 400000, "chunk": 100000, "failAfter": 2})
    finally:
        gateway.stop()


def _upload_chunks(total: int, piece: int) -> Iterator[bytes]:
    for start in range(0, total, piece):
        yield window(start, min(piece, total - start))


def test_http_body_client_stream(client: httpx.Client, backend: ParityBackend) -> None:
    total = 1_000_003
    reply = _json(
        client.post(
            "/v1/uploads", content=_upload_chunks(total, 200_000), headers={"content-type": "application/zip"}
        )
    )
    assert reply["size"] == str(total)
    assert reply["sha256"] == hashlib.sha256(pattern(total)).hexdigest()
    assert reply["contentType"] == "application/zip"
    assert 0 < reply["largestMessage"] <= 65536
    assert reply["messages"] >= total // 65536
    empty = _json(client.post("/v1/uploads", content=b""))
    assert empty["messages"] == 0 and empty["size"] == "0"
    assert [cancelled for *_, cancelled in backend.recorder.calls("UploadStream")] == [False, False]


@pytest.mark.parametrize("path", ["/v1/uploads", "/v1/files/cut"])
def test_http_body_cut_short_never_reaches_the_backend(
    server: GatewayServer, backend: ParityBackend, path: str
) -> None:
    """A raw body ending before its Content-Length: the unary call is never made; the client stream is
    cancelled, never half-closed, so the backend can tell it from a complete one (grpc.aio ends a
    cancelled request stream like a complete one: `context.cancelled()` is what tells them apart)."""
    backend.recorder.clear()
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 300000\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + pattern(200000))
        time.sleep(0.3)
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            sock.recv(65536)
    assert backend.recorder.calls("Upload") == []
    assert wait_until(lambda: path == "/v1/files/cut" or bool(backend.recorder.calls("UploadStream")), 5)
    assert all(cancelled for *_, cancelled in backend.recorder.calls("UploadStream"))


def test_http_body_memory_bounded_on_a_slow_50mb_stream(
    server: GatewayServer, backend: ParityBackend
) -> None:
    """50 MB streamed through the gateway to a reader slower than the backend: the gateway's RSS stays
    bounded (backpressure end to end), measured by PID."""
    total = 50 * 1024 * 1024
    pid = server.process.pid
    before = rss_bytes(pid)
    peak = before
    received = 0
    digest = hashlib.sha256()
    started = time.monotonic()
    with (
        httpx.Client(base_url=server.url, timeout=30) as c,
        c.stream("GET", "/v1/streams/big", params={"size": total, "chunk": 65536}) as response,
    ):
        assert response.status_code == 200
        for i, data in enumerate(response.iter_raw(65536)):
            received += len(data)
            digest.update(data)
            if i % 4 == 0:
                time.sleep(0.02)  # at most ~12 MB/s: far slower than the backend can send
                peak = max(peak, rss_bytes(pid))
    elapsed = time.monotonic() - started
    assert received == total
    assert digest.hexdigest() == hashlib.sha256(pattern(total)).hexdigest()
    growth = peak - before
    print(
        f"\n[{server.name}] 50 MiB HttpBody stream in {elapsed:.1f} s: gateway RSS {before / 2**20:.1f} -> "  # type: ignore[attr-defined]
        f"peak {peak / 2**20:.1f} MiB (+{growth / 2**20:.1f} MiB)"
    )
    assert growth < 32 * 1024 * 1024


# ------------------------------------------------------------------------------------------ unbound + YAML


def test_unbound_unary_and_streams(client: httpx.Client) -> None:
    assert _json(client.post(f"/{SERVICE}/Plain", json={"text": "a", "n": 1})) == {"text": "plain:a", "n": 2}
    collected = client.post(
        f"/{SERVICE}/Collect",
        content=b'{"text": "a"}\n{"text": "b"}\n',
        headers={"content-type": "application/x-ndjson"},
    )
    assert _json(collected) == {"text": "a,b", "n": 2}
    chat = client.post(
        f"/{SERVICE}/Chat",
        content=b'{"text": "x", "n": 1}\n{"text": "y"}\n',
        headers={"content-type": "application/x-ndjson"},
    )
    lines = [json.loads(line) for line in chat.text.splitlines()]
    assert lines == [{"result": {"text": "re:x", "n": 1}}, {"result": {"text": "re:y", "n": 0}}]
    countdown = client.post(f"/{SERVICE}/Countdown", json={"text": "c", "n": 3})
    assert [json.loads(line)["result"]["n"] for line in countdown.text.splitlines()] == [3, 2, 1]
    sse = client.post(f"/{SERVICE}/Countdown", json={"n": 1}, headers={"accept": "text/event-stream"})
    assert sse.text.startswith('data: {"text":"","n":1}\n\n') and "event: end" in sse.text


def test_yaml_rules_serve(client: httpx.Client) -> None:
    ticks = client.get("/v1/ticks/t", params={"n": 3})
    assert [json.loads(line)["result"]["n"] for line in ticks.text.splitlines()] == [0, 1, 2]
    # YAML-bound: no unbound REST default. The path is the Connect protocol's (protocols= default), which
    # refuses JSON for a server-streaming method (it needs application/connect+json): no REST reply.
    assert client.post(f"/{SERVICE}/Ticks", json={}).status_code == 415
    assert _json(client.get("/v1/yamled/hi")) == {"text": "yamled:hi", "n": 0}
    assert _json(client.post("/v1/yamled", json={"text": "b", "n": 2})) == {"text": "yamled:b", "n": 2}
    assert _json(client.post("/v1/both", json={"text": "x"})) == "both:x"  # response_body from the YAML
    assert _json(client.get("/v1/both/y")) == {"text": "both:y", "n": 0}  # the annotation still serves


def test_unbound_streams_over_websocket(server: GatewayServer) -> None:
    from websockets.sync.client import connect

    with connect(server.url.replace("http", "ws") + f"/{SERVICE}/Chat", open_timeout=10) as ws:
        ws.send('{"text": "w", "n": 5}')
        assert json.loads(ws.recv(timeout=10)) == {"result": {"text": "re:w", "n": 5}}
        ws.send("")
        assert "end" in json.loads(ws.recv(timeout=10))


def test_openapi_describes_parity_routes(parity_gen: Path) -> None:
    from openapi_spec_validator import validate

    document = json.loads((parity_gen / "parity" / "v1" / "parity.openapi.json").read_text())
    validate(document)
    paths = document["paths"]
    for path in (
        f"/{SERVICE}/Plain",
        f"/{SERVICE}/Collect",
        f"/{SERVICE}/Chat",
        "/v1/ticks/{text}",
        "/v1/yamled",
    ):
        assert path in paths, sorted(paths)
    binary = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    assert paths["/v1/files/{name}"]["get"]["responses"]["200"]["content"] == binary
    assert paths["/v1/files/{name}"]["post"]["requestBody"]["content"] == binary
    assert paths["/v1/streams/{name}"]["get"]["responses"]["200"]["content"] == binary
    assert paths["/v1/uploads"]["post"]["requestBody"]["content"] == binary
    assert paths["/v1/echo"]["post"]["responses"]["200"]["content"] == binary
    assert "x-websocket" not in paths["/v1/streams/{name}"]["get"]
    at = next(p for p in paths["/v1/events/{at}"]["get"]["parameters"] if p["name"] == "at")
    assert at["in"] == "path" and at["schema"] == {"type": "string", "format": "date-time"}
    mask = next(p for p in paths["/v1/books/{booksId}"]["patch"]["parameters"] if p["name"] == "updateMask")
    assert mask["in"] == "query" and not mask.get("required", False)


# ------------------------------------------------------------------------------------------ cancellation


def test_unary_call_cancelled_when_the_client_disconnects(
    server: GatewayServer, backend: ParityBackend
) -> None:
    delays = []
    for _ in range(5):
        backend.recorder.clear()
        body = b'{"text": "sleep", "n": 10000}'
        request = (
            f"POST /{SERVICE}/Plain HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(request)
        assert wait_until(lambda: "Plain" in backend.recorder.started, 10)
        closed = time.monotonic()
        sock.close()
        assert wait_until(lambda: "Plain" in backend.recorder.cancelled, 5), "upstream call never cancelled"
        delays.append(backend.recorder.cancelled["Plain"] - closed)
    name = server.name  # type: ignore[attr-defined]
    median, worst = statistics.median(delays) * 1000, max(delays) * 1000
    print(f"\n[{name}] disconnect -> upstream cancellation: median {median:.1f} ms, max {worst:.1f} ms")
    assert max(delays) < 0.1

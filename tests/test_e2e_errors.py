"""End to end, error paths: gRPC status -> HTTP mapping, routing errors, bad bodies/paths, limits, deadlines,
an unreachable upstream. Every error is a google.rpc.Status JSON body; the backend is never called for a
request the gateway refuses itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest

from tests.conftest import GatewayServer, free_port
from tests.e2e_support import error_body, raw_until_close, without_request_info

BOOK = "/v1/shelves/fiction/books/dune"
SCALARS = "/v1/scalars/1/1/1/1/1/1/1/true/s/AA/1/1/1/1/1/1"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def scalars_path(**overrides: str) -> str:
    order = [
        "f_double", "f_float", "f_int64", "f_uint64", "f_int32", "f_fixed64", "f_fixed32", "f_bool",
        "f_string", "f_bytes", "f_uint32", "f_enum", "f_sfixed32", "f_sfixed64", "f_sint32", "f_sint64",
    ]  # fmt: skip
    values = dict(zip(order, SCALARS.split("/")[3:], strict=True))
    values.update(overrides)
    return "/v1/scalars/" + "/".join(values[name] for name in order)


# ------------------------------------------------------------------------------------------ gRPC status

# google.rpc.Code -> HTTP status (grpc-gateway's runtime/errors.go table).
STATUS_TABLE = [
    (1, 499),  # CANCELLED
    (2, 500),  # UNKNOWN
    (3, 400),  # INVALID_ARGUMENT
    (4, 504),  # DEADLINE_EXCEEDED
    (5, 404),  # NOT_FOUND
    (6, 409),  # ALREADY_EXISTS
    (7, 403),  # PERMISSION_DENIED
    (8, 429),  # RESOURCE_EXHAUSTED
    (9, 400),  # FAILED_PRECONDITION
    (10, 409),  # ABORTED
    (11, 400),  # OUT_OF_RANGE
    (12, 501),  # UNIMPLEMENTED
    (13, 500),  # INTERNAL
    (14, 503),  # UNAVAILABLE
    (15, 500),  # DATA_LOSS
    (16, 401),  # UNAUTHENTICATED
]


@pytest.mark.parametrize(("code", "status"), STATUS_TABLE)
def test_grpc_code_to_http_status(client: httpx.Client, backend: Any, code: int, status: int) -> None:
    response = client.post("/v1/fail", json={"code": code, "message": f"boom {code} é"})
    assert error_body(response, status, code) == {"code": code, "message": f"boom {code} é", "details": []}
    if code == 16:
        assert response.headers["www-authenticate"] == f"boom {code} ?"
    else:
        assert "www-authenticate" not in response.headers
    assert backend.recorder.last("Fail").request.code == code


@pytest.mark.parametrize(("code", "status"), STATUS_TABLE)
def test_grpc_error_details(client: httpx.Client, code: int, status: int) -> None:
    response = client.post("/v1/fail", json={"code": code, "message": "with detail", "reason": "OUT_OF_INK"})
    assert error_body(response, status, code) == {
        "code": code,
        "message": "with detail",
        "details": [{"@type": ERROR_INFO, "reason": "OUT_OF_INK", "domain": "shop.example.com"}],
    }
    # The status trailer is reserved: it is decoded into the body, never echoed as a header.
    assert not [
        name for name in response.headers if name.startswith(("grpc-trailer-grpc", "grpc-metadata-grpc"))
    ]


def test_code_unknown_to_grpc_becomes_unknown(client: httpx.Client) -> None:
    response = client.post("/v1/fail", json={"code": 17, "message": "odd"})
    assert error_body(response, 500, 2) == {"code": 2, "message": "odd", "details": []}


def test_backend_status_passes_through(client: httpx.Client) -> None:
    response = client.get("/v1/shelves/fiction/books/missing")
    assert error_body(response, 404, 5) == {
        "code": 5,
        "message": "book 'shelves/fiction/books/missing' not found",
        "details": [],
    }


# ------------------------------------------------------------------------------------------ routing


def test_unknown_path_is_404(client: httpx.Client, backend: Any) -> None:
    response = client.get("/nope")
    assert error_body(response, 404, 5) == {"code": 5, "message": "no route for GET /nope", "details": []}
    assert "allow" not in response.headers


@pytest.mark.parametrize("path", [f"{BOOK}/", "/v1/shelves/fiction/books/dune/extra", "/v1//books", "/"])
def test_near_misses_are_404(client: httpx.Client, path: str) -> None:
    error_body(client.get(path), 404, 5)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", BOOK, "DELETE, GET, PATCH"),
        ("DELETE", "/v1/metadata:echo", "POST"),
        ("PATCH", "/v1/scalars", "GET, POST"),
        ("GET", "/v1/fail", "POST"),
    ],
)
def test_known_path_other_method_is_405(
    client: httpx.Client, backend: Any, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert error_body(response, 405, 12) == {
        "code": 12,
        "message": f"method {method} not allowed for {path} (allowed: {allow})",
        "details": [],
    }
    assert response.headers["allow"] == allow
    assert backend.recorder.calls == []


def test_head_without_head_binding_is_405(client: httpx.Client) -> None:
    response = client.head("/v1/shelves/s1/files/a.png")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


# ------------------------------------------------------------------------------------------ bodies

TOO_DEEP = "JSON nested deeper than 64 levels"
BAD_BODIES = [
    # (method, path, body, exact message or prefix ending in "...")
    ("POST", "/v1/shelves/fiction/books", b'{"title":', "invalid request body: malformed JSON: ..."),
    ("POST", "/v1/scalars", b'{"fString": "a", }', "invalid request body: malformed JSON: ..."),
    (
        "POST",
        "/v1/metadata:echo",
        b'{"note": "\xff"}',
        "invalid request body: not UTF-8 (invalid start byte at byte 10)",
    ),
    (
        "POST",
        "/v1/scalars",
        b'{"fString": "a", "fString": "b"}',
        "invalid request body: malformed JSON: duplicate key 'fString'",
    ),
    ("POST", "/v1/scalars", b'{"fDouble": NaN}', "invalid request body: malformed JSON: NaN is not JSON"),
    (
        "POST",
        "/v1/scalars",
        b"[]",
        "invalid request body: the request body must be a JSON object (shop.v1.ScalarsRequest), not an array",
    ),
    (
        "POST",
        "/v1/scalars",
        b'""',
        "invalid request body: the request body must be a JSON object (shop.v1.ScalarsRequest), not a string",
    ),
    (
        "POST",
        "/v1/scalars",
        b"null",
        "invalid request body: the request body must be a JSON object (shop.v1.ScalarsRequest), not null",
    ),
    (
        "PUT",
        "/v1/shelves/fiction/books:create",
        b'{"book": []}',
        "invalid request body: book must be a JSON object (shop.v1.Book), not an array",
    ),
    (
        "POST",
        "/v1/shelves/fiction/books",
        b"[]",
        "invalid request body: book must be a JSON object (shop.v1.Book), not an array",
    ),
    (
        "PATCH",
        BOOK,
        b'""',
        "invalid request body: book must be a JSON object (shop.v1.Book), not a string",
    ),
    (
        "POST",
        "/v1/shelves/fiction/books",
        b'{"title": "x", "author": 5}',
        "invalid request body: book.author must be a JSON object (shop.v1.Author), not a number",
    ),
    ("POST", "/v1/shelves/fiction/books", b'{"title": 5}', "...title..."),
    ("POST", "/v1/shelves/fiction/books", b'{"title": "x", "tags": "a"}', "...tags..."),
    ("POST", "/v1/shelves/fiction/books", b'{"title": "x", "labels": {"a": 1}}', "...labels..."),
    ("POST", "/v1/shelves/fiction/books", b'{"title": "x", "publishTime": "yesterday"}', "...publishTime..."),
    ("POST", "/v1/shelves/fiction/books", b'{"title": "x", "genre": "GENRE_NOPE"}', "...GENRE_NOPE..."),
    ("POST", "/v1/shelves/fiction/books", b'{"pages": 1, "audioLength": "1s"}', "...format..."),
    ("POST", "/v1/shelves/fiction/books", b'{"title": "x", "nope": 1}', "...nope..."),
    ("POST", "/v1/scalars", b'{"fInt32": "abc"}', "...fInt32..."),
    ("POST", "/v1/scalars", b'{"fInt32": 1.5}', "...fInt32..."),
    ("POST", "/v1/scalars", b'{"fInt32": 2147483648}', "...fInt32..."),
    ("POST", "/v1/scalars", b'{"fBool": "true"}', "...fBool..."),
    ("POST", "/v1/scalars", b'{"pageSize": "abc"}', "...pageSize..."),
    ("POST", "/v1/metadata:echo", b'{"note": "a", "extra": true}', "...extra..."),
    ("POST", "/v1/scalars", b"[" * 100_000, f"invalid request body: {TOO_DEEP}"),
    ("POST", "/v1/shelves/fiction/books", b"[" * 100_000, f"invalid request body: {TOO_DEEP}"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), BAD_BODIES)
def test_bad_body_is_400(
    client: httpx.Client, backend: Any, method: str, path: str, body: bytes, message: str
) -> None:
    response = client.request(method, path, content=body, headers={"content-type": "application/json"})
    text = error_body(response, 400, 3)["message"]
    if message.startswith("..."):
        assert text.startswith("invalid request body: ") and message.strip(".") in text
    elif message.endswith("..."):
        assert text.startswith(message.rstrip("."))
    else:
        assert text == message
    assert backend.recorder.calls == []


def test_null_body_field_means_unset(client: httpx.Client, backend: Any) -> None:
    # protojson: null for a message field leaves it unset (the backend then says title is required).
    response = client.post("/v1/shelves/fiction/books", content=b"null")
    error_body(response, 400, 3)
    assert backend.recorder.last("CreateBook").request.HasField("book") is False


# ------------------------------------------------------------------------------------------ path values


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (scalars_path(f_double="notanumber"), "invalid value for f_double: 'notanumber' is not a number"),
        (scalars_path(f_int64="12abc"), "invalid value for f_int64: '12abc' is not an integer (int64)"),
        (
            scalars_path(f_int32="2147483648"),
            "invalid value for f_int32: 2147483648 is out of range for int32",
        ),
        (scalars_path(f_uint64="-1"), "invalid value for f_uint64: -1 is out of range for uint64"),
        (scalars_path(f_float="1e39"), "invalid value for f_float: 1e39 is out of range for float"),
        (scalars_path(f_bool="True"), "invalid value for f_bool: 'True' is not true or false"),
        (scalars_path(f_bytes="%21%21"), "invalid value for f_bytes: '!!' is not base64"),
        (
            scalars_path(f_enum="GENRE_NOPE"),
            "invalid value for f_enum: 'GENRE_NOPE' is not a value of enum shop.v1.Genre",
        ),
        (scalars_path(f_string="s%zz"), "malformed percent-escape in 's%zz'"),
        (scalars_path(f_string="s%ff"), "path value 's%ff' is not percent-encoded UTF-8"),
        ("/v1/books/%zz", "malformed percent-escape in '%zz'"),
        ("/v1/shelves/s1/files/a%2", "malformed percent-escape in 'shelves/s1/files/a%2'"),
    ],
)
def test_bad_path_value_is_400(client: httpx.Client, backend: Any, path: str, message: str) -> None:
    assert error_body(client.get(path), 400, 3)["message"] == message
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ incomplete body


def test_body_shorter_than_content_length_never_reaches_backend(gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    request = (
        b"POST /v1/metadata:echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 20\r\n\r\n{"not'
    )
    answer = raw_until_close(gateway.port, request)
    # uvicorn closes the connection on the client's half-close, so the app sees a disconnect; a server
    # that keeps the connection open must get the 400 of test_incomplete_body_asgi instead.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer
    time.sleep(0.2)
    assert backend.recorder.calls == []


def test_incomplete_body_asgi(gen_dir: Path, backend: Any) -> None:
    """What an ASGI server delivering fewer bytes than Content-Length (httptools under `Upgrade`) gets."""
    from shop.v1 import shop_pb2_gateway_shop_service as module  # type: ignore[import-not-found]

    backend.reset()
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        channel = grpc.aio.insecure_channel(backend.target)
        events = [{"type": "http.request", "body": b'{"not', "more_body": False}]

        async def receive() -> dict[str, Any]:
            return events.pop(0) if events else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/metadata:echo",
            "raw_path": b"/v1/metadata:echo",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"20")],
            "client": ("127.0.0.1", 1234),
        }
        try:
            await module.create_app(channel)(scope, receive, send)
        finally:
            await channel.close(None)

    asyncio.run(asyncio.wait_for(run(), 10))
    assert sent[0]["status"] == 400
    assert without_request_info(json.loads(sent[1]["body"])) == {
        "code": 3,
        "message": "request body incomplete: received 5 of 20 bytes declared by Content-Length",
        "details": [],
    }
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ limits, deadlines


@pytest.fixture(scope="module")
def limited(gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    server = GatewayServer(
        gen_dir, backend.port, extra=["--max-body-bytes", "1000", "--default-timeout", "5"]
    )
    yield server
    server.stop()


@pytest.fixture
def limited_client(limited: GatewayServer, backend: Any) -> Iterator[httpx.Client]:
    backend.reset()
    with httpx.Client(base_url=limited.url, timeout=10.0) as c:
        yield c


TOO_LARGE = {"code": 8, "message": "request body larger than 1000 bytes", "details": []}


def note_body(size: int) -> bytes:
    body = b'{"note": "' + b"n" * (size - 12) + b'"}'
    assert len(body) == size
    return body


def test_body_at_limit_is_accepted(limited_client: httpx.Client, backend: Any) -> None:
    response = limited_client.post("/v1/metadata:echo", content=note_body(1000))
    assert response.status_code == 200
    assert backend.recorder.last("EchoMetadata").request.note == "n" * 988


def test_body_over_limit_is_413(limited_client: httpx.Client, backend: Any) -> None:
    response = limited_client.post("/v1/metadata:echo", content=note_body(1001))
    assert error_body(response, 413, 8) == TOO_LARGE
    assert backend.recorder.calls == []


def test_large_body_is_answered_without_being_read(limited_client: httpx.Client, backend: Any) -> None:
    response = limited_client.post("/v1/metadata:echo", content=b"x" * 2_000_000)
    assert error_body(response, 413, 8) == TOO_LARGE
    assert backend.recorder.calls == []


def test_chunked_body_over_limit_is_413(limited_client: httpx.Client, backend: Any) -> None:
    body = note_body(1600)
    response = limited_client.post("/v1/metadata:echo", content=iter([body[:800], body[800:]]))
    assert error_body(response, 413, 8) == TOO_LARGE
    assert backend.recorder.calls == []


def test_default_body_limit_is_larger(client: httpx.Client) -> None:
    assert client.post("/v1/metadata:echo", content=note_body(100_000)).status_code == 200


def test_default_timeout_option(limited_client: httpx.Client, backend: Any) -> None:
    assert limited_client.get("/v1/metadata").status_code == 200
    deadline = backend.recorder.last("EchoMetadata").deadline_seconds
    assert deadline is not None and 4.0 < deadline <= 5.1


def test_no_deadline_without_grpc_timeout(client: httpx.Client, backend: Any) -> None:
    response = client.get("/v1/metadata")
    assert "deadlineSeconds" not in response.json()  # a DoubleValue: absent when unset
    assert backend.recorder.last("EchoMetadata").deadline_seconds is None


# gRPC rounds the deadline it sends up a little: allow some slack above the requested value.
@pytest.mark.parametrize(("value", "low", "high"), [("1S", 0.5, 1.1), ("100m", 0.01, 0.11), ("2M", 100, 121)])
def test_grpc_timeout_sets_deadline(
    client: httpx.Client, backend: Any, value: str, low: float, high: float
) -> None:
    response = client.get("/v1/metadata", headers={"Grpc-Timeout": value})
    assert response.status_code == 200
    deadline = backend.recorder.last("EchoMetadata").deadline_seconds
    assert deadline is not None and low < deadline <= high
    assert low < response.json()["deadlineSeconds"] <= high


def test_grpc_timeout_overrides_default_timeout(limited_client: httpx.Client, backend: Any) -> None:
    assert limited_client.get("/v1/metadata", headers={"Grpc-Timeout": "1S"}).status_code == 200
    deadline = backend.recorder.last("EchoMetadata").deadline_seconds
    assert deadline is not None and 0.5 < deadline <= 1.1


@pytest.mark.parametrize("value", ["1x", "123456789S", "-1S", "1.5S", "S", "1 S"])
def test_invalid_grpc_timeout_is_400(client: httpx.Client, backend: Any, value: str) -> None:
    response = client.get("/v1/metadata", headers={"Grpc-Timeout": value})
    assert error_body(response, 400, 3)["message"] == (
        f"invalid Grpc-Timeout {value!r}: expected 1-8 digits and a unit of H, M, S, m, u, n"
    )
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ upstream down


@pytest.fixture(scope="module")
def orphan(gen_dir: Path) -> Iterator[GatewayServer]:
    server = GatewayServer(gen_dir, free_port())  # nothing listens there
    yield server
    server.stop()


def test_unreachable_upstream_is_503_quickly(orphan: GatewayServer) -> None:
    with httpx.Client(base_url=orphan.url, timeout=10.0) as c:
        for _ in range(2):  # first attempt, then while the channel is in backoff
            started = time.monotonic()
            response = c.get(BOOK)
            assert time.monotonic() - started < 3.0
            assert error_body(response, 503, 14)["message"]

"""Bad input (issue 4): every refusal is a 4xx with a google.rpc.Status JSON body naming the problem — never
a 500, a hang or a traceback — and the backend is never called.

Complements test_e2e_errors.py (malformed JSON, top-level duplicate keys, wrong JSON types, int32 range,
bad path scalars, the body size limit, the Grpc-Timeout grammar) and test_e2e_unary.py (query parameter
errors, `%2F` in a single-segment capture). Refusals made by the HTTP server itself (raw CR/LF/NUL, raw
invalid bytes in the request target, malformed Content-Length, a request line over granian's limit) come
with the server's own short body, not JSON: those cases assert a clean 4xx and the untouched backend, over
a raw socket against both servers the serve command picks (uvicorn h11 for the whole tree, which has
WebSocket routes; granian for the shop service alone).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayServer
from tests.e2e_support import (
    RawResponse,
    error_body,
    http_request,
    raw_exchange,
    raw_until_close,
    without_request_info,
)

BOOK = "/v1/shelves/fiction/books/dune"
BOOKS = "/v1/shelves/fiction/books"
UPLOAD = "/v1/uploads"
JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def granian(gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    """The serve command for the shop service alone: no WebSocket routes, so it runs granian."""
    server = GatewayServer(gen_dir, backend.port, extra=["shop.v1.shop_pb2_gateway_shop_service"])
    yield server
    server.stop()


@dataclass
class Served:
    name: str
    port: int


@pytest.fixture(params=["uvicorn", "granian"])
def server(request: pytest.FixtureRequest, backend: Any) -> Served:
    """Each of the two servers the serve command picks, with a fresh backend recorder."""
    chosen: GatewayServer = request.getfixturevalue(
        "uvicorn_gateway" if request.param == "uvicorn" else "granian"
    )
    backend.reset()
    return Served(request.param, chosen.port)


def refused(response: httpx.Response | RawResponse, status: int, code: int, *words: str) -> str:
    """The Status message of a refusal, which names each of `words`."""
    message: str = error_body(response, status, code)["message"]
    for word in words:
        assert word in message, message
    return message


def server_refused(data: bytes) -> None:
    """A refusal by the HTTP server itself: a 4xx status line, with no JSON Status body to check."""
    status_line = data.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 4"), data[:300]


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# ------------------------------------------------------------------------------------------ JSON depth
# The limit (max_json_depth, 64 by default) counts the objects and arrays of the body as sent, and is
# checked before anything parses it. json_format adds its own limit of 100 message levels, which a
# google.protobuf.Struct reaches first (two message levels per JSON level): both are a 400.


def book_body(depth: int) -> bytes:
    """A CreateBook body (`body: "book"`) nested `depth` levels: book object, attributes object, arrays."""
    return json.dumps({"title": "Deep", "attributes": {"a": nested(depth - 2)}}).encode()


def test_nested_json_within_the_limits_is_accepted(client: httpx.Client, backend: Any) -> None:
    response = client.post(BOOKS, content=book_body(48), headers=JSON_TYPE)
    assert response.status_code == 200, response.text
    value = backend.recorder.last("CreateBook").request.book.attributes["a"]
    for _ in range(46):
        value = value[0]
    assert value == 1


def test_struct_deeper_than_protobuf_allows_is_400(client: httpx.Client, backend: Any) -> None:
    response = client.post(BOOKS, content=book_body(64), headers=JSON_TYPE)
    refused(response, 400, 3, "invalid request body: ", "Message too deep")
    assert backend.recorder.calls == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", BOOKS, book_body(65)),
        ("PUT", f"{BOOKS}:create", json.dumps({"book": {"attributes": {"a": nested(62)}}}).encode()),
        ("POST", "/v1/scalars", b'{"a":' * 65 + b"1" + b"}" * 65),
        ("POST", "/v1/scalars", b"[" * 65 + b"]" * 65),
        ("POST", "/v1/metadata:echo", b"{" * 10_000),  # not even well-formed: the depth is refused first
    ],
)
def test_json_over_depth_limit_is_400(
    client: httpx.Client, backend: Any, method: str, path: str, body: bytes
) -> None:
    response = client.request(method, path, content=body, headers=JSON_TYPE)
    assert refused(response, 400, 3) == "invalid request body: JSON nested deeper than 64 levels"
    assert backend.recorder.calls == []


def test_brackets_inside_strings_do_not_count(client: httpx.Client, backend: Any) -> None:
    title = '[{"' * 100 + "\\" * 3 + '"' + "]}" * 100
    response = client.post(BOOKS, content=json.dumps({"title": title}).encode(), headers=JSON_TYPE)
    assert response.status_code == 200, response.text
    assert backend.recorder.last("CreateBook").request.book.title == title


def test_json_depth_limit_applies_to_each_ndjson_line(client: httpx.Client, backend: Any) -> None:
    body = b'{"name": "a"}\n' + b'{"name": ' + b"[" * 70 + b"]" * 70 + b"}\n"
    response = client.post(UPLOAD, content=body, headers={"content-type": "application/x-ndjson"})
    assert refused(response, 400, 3) == "invalid request body: JSON nested deeper than 64 levels"
    assert all(call.messages_received <= 1 for call in backend.recorder.calls)


def test_max_json_depth_is_the_json_style_limit(gen_dir: Path) -> None:
    """The plugin option max_json_depth ends up as JsonStyle.max_depth (see the golden `options` case)."""
    import pygateway_runtime as rt  # type: ignore[import-not-found]
    from google.protobuf import json_format, struct_pb2

    style = rt.JsonStyle(False, True, False, False, max_depth=3)
    accepted = struct_pb2.Struct()
    style.parse(accepted, b'{"a": [[1]]}')
    assert json_format.MessageToDict(accepted) == {"a": [[1.0]]}
    with pytest.raises(rt.HttpError) as refusal:
        style.parse(struct_pb2.Struct(), b'{"a": [[[1]]]}')
    assert (refusal.value.status, refusal.value.message) == (
        400,
        "invalid request body: JSON nested deeper than 3 levels",
    )


# ------------------------------------------------------------------------------------------ body values

BAD_BODY_VALUES = [
    # int64 out of range, as string and number
    ('{"fInt64": "9223372036854775808"}', "fInt64", "out of range"),
    ('{"fInt64": -9223372036854775809}', "fInt64", "out of range"),
    ('{"fUint64": "-1"}', "fUint64"),
    ('{"fSint64": 1e19}', "fSint64", "out of range"),
    ('{"fInt64": 1' + "0" * 5000 + "}", "malformed JSON", "digits"),
    # NaN / Infinity where not allowed
    ('{"fInt32": "NaN"}', "fInt32", "NaN"),
    ('{"fInt64": "Infinity"}', "fInt64", "Infinity"),
    ('{"fInt32": NaN}', "NaN is not JSON"),
    ('{"fDouble": Infinity}', "Infinity is not JSON"),
    ('{"fFloat": -Infinity}', "-Infinity is not JSON"),
    ('{"fDouble": 1e400}', "number 1e400 is out of range"),
    ('{"fFloat": 1e39}', "fFloat"),
    # booleans read as 1 by json_format, refused as protojson does
    ('{"fInt32": true}', "fInt32 must be a number, not a boolean"),
    ('{"fEnum": false}', "fEnum must be an enum name or number, not a boolean"),
    # unknown enum names (protojson names are case-sensitive)
    ('{"fEnum": "genre_fiction"}', "fEnum", "genre_fiction"),
    ('{"fEnum": ""}', "fEnum"),
    ('{"fEnum": 2147483648}', "fEnum"),
    # duplicate keys below the top level, and one field by both names
    ('{"fString": "a", "f_string": "b"}', "fString and f_string set the same field"),
    ('{"fInt32": 1, "f_int32": 1}', "fInt32 and f_int32 set the same field"),
    # invalid UTF-8 / Unicode that is not UTF-8 text
    ('{"fString": "\\ud800"}', "fString", "surrogate"),
]


@pytest.mark.parametrize(("body", "words"), [(case[0], case[1:]) for case in BAD_BODY_VALUES])
def test_bad_scalar_in_body_is_400(
    client: httpx.Client, backend: Any, body: str, words: tuple[str, ...]
) -> None:
    response = client.post("/v1/scalars", content=body.encode(), headers=JSON_TYPE)
    message = refused(response, 400, 3, "invalid request body: ", *words)
    assert "Traceback" not in message
    assert backend.recorder.calls == []


BAD_BOOKS = [
    (b'{"title": "a", "title": "b"}', "duplicate key 'title'"),
    (b'{"title": "x", "author": {"name": "a", "name": "b"}}', "duplicate key 'name'"),
    (
        b'{"title": "x", "author": {"name": "a", "bornYear": 1, "born_year": 2}}',
        "book.author.bornYear and book.author.born_year",
    ),
    (b'{"title": "x", "labels": {"k": "1", "k": "2"}}', "duplicate key 'k'"),
    (b'{"title": "x", "attributes": {"k": 1, "k": 2}}', "duplicate key 'k'"),
    (b'{"title": "x", "labels": {"\\ud800": "a"}}', "surrogate"),
    (b'{"title": "x", "attributes": {"a": 1e400}}', "number 1e400 is out of range"),
    (b'{"title": "x", "edition": true}', "book.edition must be a number, not a boolean"),
    (b'{"title": "x", "author": {"bornYear": true}}', "book.author.bornYear must be a number"),
    (b'{"title": "x", "isbn": "18446744073709551616"}', "isbn"),
    (b'{"title": "x", "genre": "FICTION"}', "FICTION"),
    (b'{"title": "x", "subtitle": "caf\xe9"}', "not UTF-8"),
    (b'{"title": "x", "caf\xc3": 1}', "not UTF-8"),
    (b'\xef\xbb\xbf{"title": "x"}', "BOM"),
    (b'{"title": "x"}\x00', "malformed JSON"),
]


@pytest.mark.parametrize(("body", "word"), BAD_BOOKS)
def test_bad_book_body_is_400(client: httpx.Client, backend: Any, body: bytes, word: str) -> None:
    refused(client.post(BOOKS, content=body, headers=JSON_TYPE), 400, 3, "invalid request body: ", word)
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ query values


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "f_int64=9223372036854775808",
            "invalid value for f_int64: 9223372036854775808 is out of range for int64",
        ),
        (
            "fSint64=-9223372036854775809",
            "invalid value for fSint64: -9223372036854775809 is out of range for int64",
        ),
        (
            "f_uint64=18446744073709551616",
            "invalid value for f_uint64: 18446744073709551616 is out of range for uint64",
        ),
        ("f_int32=NaN", "invalid value for f_int32: 'NaN' is not an integer (int32)"),
        ("f_int64=Infinity", "invalid value for f_int64: 'Infinity' is not an integer (int64)"),
        ("f_int32=1e3", "invalid value for f_int32: '1e3' is not an integer (int32)"),
        ("f_double=1e400", "invalid value for f_double: 1e400 is out of range for double"),
        ("f_double=nan", "invalid value for f_double: 'nan' is not a number"),
        (
            "f_enum=genre_fiction",
            "invalid value for f_enum: 'genre_fiction' is not a value of enum shop.v1.Genre",
        ),
        ("f_enum=2147483648", "invalid value for f_enum: 2147483648 is out of range for int32"),
        ("f_string=a&f_string=b", "query parameter 'f_string' given more than once for a non-repeated field"),
        ("f_string=%", "malformed percent-escape in the query string"),
        ("f_string=%2", "malformed percent-escape in the query string"),
        ("f_string=%g0", "malformed percent-escape in the query string"),
        ("f_str%zzing=1", "malformed percent-escape in the query string"),
        ("f_string=%ff", "query string is not percent-encoded UTF-8"),
        ("f_string=%C0%AF", "query string is not percent-encoded UTF-8"),  # overlong "/"
        ("f_string=%ED%A0%80", "query string is not percent-encoded UTF-8"),  # a surrogate
    ],
)
def test_bad_query_value_is_400(client: httpx.Client, backend: Any, query: str, message: str) -> None:
    assert refused(client.get(f"/v1/scalars?{query}"), 400, 3) == message
    assert backend.recorder.calls == []


SINGULAR = "given more than once for a non-repeated field"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("filter.authorName=a&filter.authorName=b", f"query parameter 'filter.authorName' {SINGULAR}"),
        ("inStock=true&in_stock=false", f"query parameter 'in_stock' {SINGULAR}"),  # a wrapper, by both names
        (
            "publishedAfter=2024-01-01T00:00:00Z&publishedAfter=2024-01-02T00:00:00Z",
            f"query parameter 'publishedAfter' {SINGULAR}",
        ),
        ("labels[a]=1&labels[b]=2&labels[a]=3", "query parameter labels[a] given more than once"),
        # A repeated field takes the key again, each value still checked.
        (
            "filter.genres=GENRE_FICTION&filter.genres=GENRE_NOPE",
            "invalid value for filter.genres: 'GENRE_NOPE' is not a value of enum shop.v1.Genre",
        ),
    ],
)
def test_repeated_query_key_for_singular_field_is_400(
    client: httpx.Client, backend: Any, query: str, message: str
) -> None:
    assert refused(client.get(f"{BOOKS}?{query}"), 400, 3) == message
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ path values


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/books/a%", "malformed percent-escape in 'a%'"),
        ("/v1/books/%g0", "malformed percent-escape in '%g0'"),
        ("/v1/books/%C0%AF", "path value '%C0%AF' is not percent-encoded UTF-8"),
        ("/v1/books/%ED%A0%80", "path value '%ED%A0%80' is not percent-encoded UTF-8"),
        ("/v1/shelves/s1/files/%E2%82", "path value 'shelves/s1/files/%E2%82' is not percent-encoded UTF-8"),
        ("/v1/scalars/1/1/9223372036854775808/1/1/1/1/true/s/AA/1/1/1/1/1/1", "out of range for int64"),
        (
            "/v1/scalars/1/1/1/1/NaN/1/1/true/s/AA/1/1/1/1/1/1",
            "invalid value for f_int32: 'NaN' is not an integer",
        ),
        (
            "/v1/scalars/1/1/1/1/1/1/1/true/s/AA/1/genre_fiction/1/1/1/1",
            "'genre_fiction' is not a value of enum",
        ),
    ],
)
def test_bad_path_value_is_400(client: httpx.Client, backend: Any, path: str, message: str) -> None:
    assert message in refused(client.get(path), 400, 3)
    assert backend.recorder.calls == []


@pytest.mark.parametrize(
    ("path", "method", "value"),
    [
        # Single-segment variables are decoded completely: `%2F` is a "/" of the value, `%252F` once
        # decoded is the literal text "%2F".
        ("/v1/books/a%2Fb", "GetBook", "a/b"),
        ("/v1/books/a%252Fb", "GetBook", "a%2Fb"),
        ("/v1/books/%2E%2E%2Fx", "GetBook", "../x"),
        # Multi-segment variables keep reserved characters and `%` encoded, so both stay distinguishable.
        ("/v1/shelves/fiction/books/a%2Fb", "GetBook", "shelves/fiction/books/a%2Fb"),
        ("/v1/shelves/fiction/books/a%252Fb", "GetBook", "shelves/fiction/books/a%252Fb"),
        ("/v1/shelves/s1/files/a%252Fb%2520c%20d.png", "GetFile", "shelves/s1/files/a%252Fb%2520c d.png"),
    ],
)
def test_escaped_slash_and_double_encoding(
    client: httpx.Client, backend: Any, path: str, method: str, value: str
) -> None:
    assert client.get(path).status_code in (200, 404)  # what counts is the value the backend got
    request = backend.recorder.last(method).request
    assert (request.name if method == "GetBook" else request.path) == value


def test_double_encoding_in_query_is_decoded_once(client: httpx.Client, backend: Any) -> None:
    assert client.get("/v1/scalars?f_string=a%252Fb%2Fc").status_code == 200
    assert backend.recorder.last("EchoScalars").request.f_string == "a%2Fb/c"


# ------------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize("size", [20_000, 65_536])
def test_oversized_query_string_is_414(server: Served, backend: Any, size: int) -> None:
    query = "f_string=" + "q" * (size - 9)
    (response,) = raw_exchange(server.port, http_request("GET", f"/v1/scalars?{query}", []))
    # Up to its own limit (64 KiB) granian passes the request on and the gateway refuses it; above it,
    # granian answers 414 itself with an empty body. uvicorn's zttp parser refuses a request target over
    # 16 KiB before the gateway runs; the gateway's protocol answers that 414 with a Status too.
    if server.name == "uvicorn":
        assert refused(response, 414, 8) == "request target longer than 16 KiB (the HTTP server's limit)"
    elif response.body or size < 65_536:
        assert refused(response, 414, 8) == "query string longer than 16384 bytes"
    else:
        assert response.status == 414
    assert backend.recorder.calls == []


def test_query_string_at_limit_is_accepted(granian: GatewayServer, backend: Any) -> None:
    """granian passes request targets up to 64 KiB on: the gateway's own 16 KiB query limit applies.
    (uvicorn's zttp parser stops at 16 KiB for the whole target: test_oversized_query_string_is_414.)"""
    backend.reset()
    query = "f_string=" + "q" * (16 * 1024 - 9)
    assert httpx.get(f"{granian.url}/v1/scalars?{query}", timeout=10).status_code == 200
    assert len(backend.recorder.last("EchoScalars").request.f_string) == 16 * 1024 - 9


def test_oversized_path_value_is_414(granian: GatewayServer, backend: Any) -> None:
    backend.reset()
    response = httpx.get(f"{granian.url}/v1/books/" + "p" * 20_000, timeout=10)
    assert refused(response, 414, 8) == "path value longer than 16384 bytes"
    assert backend.recorder.calls == []


def test_request_target_over_the_uvicorn_limit_is_a_json_414(client: httpx.Client, backend: Any) -> None:
    """The default server for these modules (uvicorn, zttp): its 16 KiB target limit, as a Status."""
    response = client.get("/v1/books/" + "p" * 20_000)
    assert refused(response, 414, 8) == "request target longer than 16 KiB (the HTTP server's limit)"
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ raw bytes


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/metadata HTTP/1.1\r\nHost: x\r\nGrpc-Metadata-A: a\x00b\r\n\r\n",
        b"GET /v1/metadata HTTP/1.1\r\nHost: x\r\nGrpc-Metadata-A: a\rb\r\n\r\n",
        b"GET /v1/metadata HTTP/1.1\r\nHost: x\r\nGrpc-Metadata-A: a\nb\r\n\r\n",
        b"GET /v1/metadata HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x00b\r\n\r\n",
        b"GET /v1/metadata HTTP/1.1\r\nHost: x\r\nGrpc-Meta\x00data-A: a\r\n\r\n",
        b"GET /v1/books/caf\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/books/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/scalars?f_string=caf\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/metadata:echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /v1/metadata:echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
        b"POST /v1/metadata:echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 3\r\n\r\n{}",
    ],
    ids=[
        "nul-in-value",
        "cr-in-value",
        "lf-in-value",
        "nul-in-forwarded-header",
        "nul-in-name",
        "raw-invalid-utf8-path",
        "raw-nul-path",
        "raw-invalid-utf8-query",
        "content-length-abc",
        "content-length-negative",
        "content-length-list",
    ],
)
def test_server_refuses_malformed_requests(server: Served, backend: Any, request_bytes: bytes) -> None:
    server_refused(raw_until_close(server.port, request_bytes))
    time.sleep(0.1)
    assert backend.recorder.calls == []


def test_gateway_refuses_cr_lf_nul_in_header_values(gen_dir: Path, backend: Any) -> None:
    """For ASGI servers (or HTTP/2 stacks) that pass such values on, the gateway refuses them itself."""
    for value in (b"a\r\nx-injected: 1", b"a\x00b", b"a\nb"):
        backend.reset()
        status, body = asgi_request(gen_dir, backend, [(b"grpc-metadata-note", value)])
        assert status == 400
        assert without_request_info(body) == {
            "code": 3,
            "message": "header grpc-metadata-note contains CR, LF or NUL",
            "details": [],
        }
        assert backend.recorder.calls == []


def asgi_request(
    gen_dir: Path, backend: Any, headers: list[tuple[bytes, bytes]], path: str = "/v1/metadata"
) -> tuple[int, Any]:
    """One GET through the generated shop app in-process (no server in between): status and JSON body."""
    import grpc.aio
    from shop.v1 import shop_pb2_gateway_shop_service as module  # type: ignore[import-not-found]

    sent: list[dict[str, Any]] = []

    async def run() -> None:
        channel = grpc.aio.insecure_channel(backend.target)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"gateway.test"), *headers],
            "client": ("127.0.0.1", 1234),
        }
        try:
            await module.create_app(channel)(scope, receive, send)
        finally:
            await channel.close(None)

    asyncio.run(asyncio.wait_for(run(), 10))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_raw_utf8_in_request_target_is_read_as_utf8(granian: GatewayServer, backend: Any) -> None:
    """granian passes raw (unencoded) UTF-8 in the path and query on; it means what its %-encoding means."""
    backend.reset()
    request = b"GET /v1/scalars?f_string=caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"
    (response,) = raw_exchange(granian.port, request)
    assert response.status == 200
    assert backend.recorder.last("EchoScalars").request.f_string == "café"
    (response,) = raw_exchange(granian.port, b"GET /v1/books/caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 404
    assert backend.recorder.last("GetBook").request.name == "café"


# ------------------------------------------------------------------------------------------ metadata headers


@pytest.mark.parametrize("value", ["!!!", "A", "AAE=AAE=", "AA E", "AAE==", "AAE\xe9"])
def test_invalid_binary_metadata_is_400(gateway: GatewayServer, backend: Any, value: str) -> None:
    backend.reset()
    (response,) = raw_exchange(
        gateway.port, http_request("GET", "/v1/metadata", [("Grpc-Metadata-Token-Bin", value)])
    )
    message = refused(response, 400, 3)
    assert message == "invalid binary header grpc-metadata-token-bin: the value is not base64"
    assert backend.recorder.calls == []


def test_invalid_binary_metadata_refuses_a_stream_before_it_starts(
    client: httpx.Client, backend: Any
) -> None:
    response = client.get(
        "/v1/shelves/fiction/events:watch?count=1", headers={"Grpc-Metadata-Trace-Bin": "***"}
    )
    refused(response, 400, 3, "grpc-metadata-trace-bin")
    assert backend.recorder.calls == []


@pytest.mark.parametrize("value", [b"", b"1s", b"+1S", b"0x1S", b"1SS", b"1 ", "\uff11S".encode(), b"1e3S"])
def test_more_invalid_grpc_timeouts_are_400(server: Served, backend: Any, value: bytes) -> None:
    request = b"GET /v1/metadata HTTP/1.1\r\nHost: x\r\nGrpc-Timeout: " + value + b"\r\n\r\n"
    (response,) = raw_exchange(server.port, request)
    refused(response, 400, 3, "invalid Grpc-Timeout")
    assert backend.recorder.calls == []


def test_invalid_grpc_timeout_refuses_a_stream_before_it_starts(client: httpx.Client, backend: Any) -> None:
    response = client.get("/v1/shelves/fiction/events:watch?count=1", headers={"Grpc-Timeout": "soon"})
    refused(response, 400, 3, "invalid Grpc-Timeout 'soon'")
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ Content-Length


def test_body_shorter_than_content_length(server: Served, backend: Any) -> None:
    """The client half-closes before the declared body arrived: granian hands the gateway a disconnect,
    which answers 400 (not granian's own 500); uvicorn closes the connection without an answer."""
    request = http_request("POST", "/v1/metadata:echo", [("Content-Length", "20")]) + b'{"note'
    data = raw_until_close(server.port, request)
    if data:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), data
        assert (
            json.loads(body)["message"]
            == "request body incomplete: received 6 of 20 bytes declared by Content-Length"
        )
    else:
        assert server.name == "uvicorn"  # granian must answer
    time.sleep(0.2)
    assert backend.recorder.calls == []


def test_chunked_body_cut_short(server: Served, backend: Any) -> None:
    request = (
        http_request("POST", "/v1/metadata:echo", [("Transfer-Encoding", "chunked")]) + b'6\r\n{"note\r\n'
    )
    data = raw_until_close(server.port, request)
    if data:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), data
        assert json.loads(body)["message"] == (
            "request body incomplete: the connection ended after 6 bytes of a chunked body"
        )
    else:
        assert server.name == "uvicorn"  # granian must answer
    time.sleep(0.2)
    assert backend.recorder.calls == []


def test_body_framing_decides_whether_the_body_is_read(server: Served, backend: Any) -> None:
    """The gateway skips reading the body of an HTTP/1.1 request framed as bodiless (no Content-Length,
    no Transfer-Encoding, or Content-Length: 0) and reads every other one: a chunked body arrives whole,
    and the bytes after a bodiless request are the next pipelined request, never a body."""
    chunked = http_request("POST", "/v1/metadata:echo", [("Transfer-Encoding", "chunked")])
    chunked += b'7\r\n{"note"\r\n0b\r\n: "chunked"\r\n1\r\n}\r\n0\r\n\r\n'
    bodiless = http_request("POST", "/v1/metadata:echo", [])
    empty = http_request("POST", "/v1/metadata:echo", [("Content-Length", "0")])
    after = http_request("GET", "/v1/metadata?note=after", [])
    replies = raw_exchange(server.port, chunked + bodiless + empty + after, count=4)
    assert [reply.status for reply in replies] == [200, 200, 200, 200], replies
    assert [json.loads(reply.body)["note"] for reply in replies] == ["chunked", "", "", "after"]
    assert [call.request.note for call in backend.recorder.calls] == ["chunked", "", "", "after"]


def test_declared_length_over_the_limit_is_answered_at_once(server: Served, backend: Any) -> None:
    """Content-Length larger than the body limit: 413 without waiting for a body that never comes."""
    request = http_request("POST", "/v1/metadata:echo", [("Content-Length", str(10**12))]) + b'{"note": '
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)  # and keep the connection open
        data = b""
        while b"}" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert time.monotonic() - started < 2.0
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), data
    assert without_request_info(json.loads(body)) == {
        "code": 8,
        "message": "request body larger than 4194304 bytes",
        "details": [],
    }
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ Content-Type

BODY_ROUTES = [
    ("POST", "/v1/scalars", b'{"fString": "x"}'),  # body `*`
    ("POST", BOOKS, b'{"title": "x"}'),  # body field
    ("PATCH", BOOK, b'{"title": "x"}'),
    ("PUT", f"{BOOKS}:create", b'{"book": {"title": "x"}}'),
    ("POST", f"{BOOK}:publish", b""),  # an empty body with a form type is still refused
    ("POST", "/v1/shelves/fiction/events:watch", b'{"count": 1}'),  # server streaming, body `*`
]
WRONG_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
    "text/plain; charset=utf-8",
    "text/xml",
    "application/xml",
    "application/x-ndjson",  # only for client-streaming routes
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/jsonx",
    "json",
]


@pytest.mark.parametrize("content_type", WRONG_TYPES)
@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES)
def test_wrong_content_type_is_415(
    client: httpx.Client, backend: Any, method: str, path: str, body: bytes, content_type: str
) -> None:
    response = client.request(method, path, content=body, headers={"content-type": content_type})
    assert refused(response, 415, 3).startswith(f"unsupported Content-Type {content_type!r}: ")
    assert backend.recorder.calls == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/ndjson"]
)
def test_wrong_content_type_on_client_stream_is_415(
    client: httpx.Client, backend: Any, content_type: str
) -> None:
    response = client.post(UPLOAD, content=b'{"name": "a"}\n', headers={"content-type": content_type})
    message = refused(response, 415, 3)
    assert (
        message == f"unsupported Content-Type {content_type!r}: send application/x-ndjson or application/json"
    )
    assert backend.recorder.calls == []


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            [("Content-Type", "application/json"), ("Content-Type", "text/plain")],
            "more than one Content-Type header",
        ),
        ([("Content-Encoding", "gzip")], "unsupported Content-Encoding 'gzip': send the body uncompressed"),
    ],
)
def test_ambiguous_or_encoded_body_is_415(
    gateway: GatewayServer, backend: Any, headers: list[tuple[str, str]], message: str
) -> None:
    backend.reset()
    request = http_request("POST", "/v1/metadata:echo", headers, b'{"note": "x"}')
    (response,) = raw_exchange(gateway.port, request)
    assert refused(response, 415, 3) == message
    assert backend.recorder.calls == []


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        'Application/JSON; Charset="UTF-8"',
        "application/json;charset=utf8",
        "application/merge-patch+json",
        "application/vnd.shop+json; version=1",
    ],
)
def test_json_content_types_are_accepted(
    client: httpx.Client, backend: Any, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/metadata:echo", content=b'{"note": "x"}', headers=headers)
    assert response.status_code == 200, response.text
    assert backend.recorder.last("EchoMetadata").request.note == "x"


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/jsonl", "application/json"])
def test_ndjson_content_types_on_client_stream(client: httpx.Client, content_type: str) -> None:
    response = client.post(
        UPLOAD, content=b'{"name": "a"}\n{"name": "b"}\n', headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json()["names"] == ["a", "b"]


def test_content_type_is_not_checked_without_a_body_binding(client: httpx.Client) -> None:
    response = client.get("/v1/metadata", headers={"content-type": "text/xml"})
    assert response.status_code == 200


# ------------------------------------------------------------------------------------------ empty bodies


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", BOOKS, b"", "field book of shop.v1.CreateBookRequest"),
        ("POST", BOOKS, b" \r\n\t ", "field book of shop.v1.CreateBookRequest"),
        ("PATCH", BOOK, b"", "field book of shop.v1.UpdateBookRequest"),
    ],
)
def test_empty_body_for_a_body_field_is_400(
    client: httpx.Client, backend: Any, method: str, path: str, body: bytes, message: str
) -> None:
    response = client.request(method, path, content=body, headers=JSON_TYPE)
    assert refused(response, 400, 3) == f"request body required: the JSON value of {message}"
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ method override
# grpc-gateway's CVE-2026-37236 class: nothing turns a POST into another method.

OVERRIDE_HEADERS = ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]


@pytest.mark.parametrize("header", OVERRIDE_HEADERS)
@pytest.mark.parametrize(
    ("path", "target", "allow"),
    [
        (BOOK, "DELETE", "DELETE, GET, PATCH"),
        (BOOK, "PATCH", "DELETE, GET, PATCH"),
        (BOOK, "GET", "DELETE, GET, PATCH"),
        (f"{BOOKS}:create", "PUT", "PUT"),
    ],
)
def test_method_override_headers_are_ignored(
    client: httpx.Client, backend: Any, header: str, path: str, target: str, allow: str
) -> None:
    response = client.post(path, content=b'{"title": "x"}', headers={header: target, **JSON_TYPE})
    assert refused(response, 405, 12) == f"method POST not allowed for {path} (allowed: {allow})"
    assert response.headers["allow"] == allow
    assert backend.recorder.calls == []


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        (f"{BOOK}?_method=DELETE", b"", None),
        (f"{BOOK}?_method=PUT&_method=PATCH", b'{"title": "x"}', "application/json"),
        (BOOK, b"_method=DELETE", "application/x-www-form-urlencoded"),
        (
            BOOK,
            b'--x\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--x--\r\n',
            "multipart/form-data; boundary=x",
        ),
        (f"{BOOKS}:create?_method=PUT", b'{"book": {}}', "application/json"),
    ],
)
def test_method_override_fields_are_ignored(
    client: httpx.Client, backend: Any, path: str, body: bytes, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    refused(client.post(path, content=body, headers=headers), 405, 12, "method POST not allowed")
    assert backend.recorder.calls == []


def test_override_header_on_a_post_route_runs_the_post(client: httpx.Client, backend: Any) -> None:
    """A POST route stays the POST route: the header neither reroutes it nor reaches the backend."""
    headers = {"X-HTTP-Method-Override": "GET", "X-HTTP-Method": "DELETE", **JSON_TYPE}
    response = client.post(f"{BOOKS}?requestId=over", content=b'{"title": "Override"}', headers=headers)
    assert response.status_code == 200, response.text
    assert backend.recorder.methods() == ["/shop.v1.ShopService/CreateBook"]
    metadata = {key for key, _ in backend.recorder.last("CreateBook").metadata}
    assert not {key for key in metadata if "method" in key}


@pytest.mark.parametrize("path", ["/v1/metadata", f"{BOOK}/title", "/v1/shelves/fiction"])
def test_form_post_to_a_get_route_is_405(client: httpx.Client, backend: Any, path: str) -> None:
    response = client.post(
        path, content=b"note=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    refused(response, 405, 12, "method POST not allowed", "(allowed: GET)")
    assert response.headers["allow"] == "GET"
    assert backend.recorder.calls == []


def test_form_post_to_a_get_and_post_path_is_415(client: httpx.Client, backend: Any) -> None:
    response = client.post(
        "/v1/scalars", content=b"f_string=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    refused(response, 415, 3, "application/x-www-form-urlencoded")
    assert backend.recorder.calls == []

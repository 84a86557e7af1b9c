"""End to end, unary RPCs: every binding kind of shop.proto, query parameters, protojson responses.

The real demo backend (grpc.aio), the generated gateway served by the shipped `pygateway_serve.py` under
uvicorn (h11), real HTTP. Assertions are on exact statuses/headers/JSON bodies and on the request message
the backend actually received (`backend.recorder`). Error paths live in test_e2e_errors.py.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import httpx
import pytest

from tests.e2e_support import error_body

BOOK = "/v1/shelves/fiction/books/dune"

DUNE_JSON: dict[str, Any] = {
    "name": "shelves/fiction/books/dune",
    "title": "Dune",
    "author": {"name": "Frank Herbert", "bornYear": 1920},
    "genre": "GENRE_FICTION",
    "tags": ["classic", "space"],
    "labels": {"lang": "en", "series": "dune"},
    "publishTime": "1965-08-01T00:00:00Z",
    "readTime": "72000.500s",
    "edition": 2,
    "isbn": "9780441013593",
    "price": 9.99,
    "inStock": True,
    "coverThumbnail": base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\xff").decode(),
    "attributes": {
        "awards": ["Hugo", "Nebula"],
        "rating": 4.5,
        "signed": False,
        "publisher": {"name": "Chilton Books", "city": "Philadelphia"},
        "notes": None,
    },
    "subtitle": "Book One of the Dune Chronicles",
    "pages": 412,
}


def received(backend: Any, method: str) -> Any:
    """The request message of the only call the backend received (any other call count fails)."""
    calls = backend.recorder.calls
    assert [call.method.rsplit("/", 1)[-1] for call in calls] == [method]
    return calls[0].request


def ok_json(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))
    return response.json()


# ------------------------------------------------------------------------------------------ bindings


def test_get_nested_multi_segment_path(client: httpx.Client, backend: Any) -> None:
    response = client.get(BOOK)
    assert ok_json(response) == DUNE_JSON
    request = received(backend, "GetBook")
    assert request.name == "shelves/fiction/books/dune"
    assert not request.HasField("read_mask")


def test_get_additional_binding_decodes_single_segment_capture(client: httpx.Client, backend: Any) -> None:
    response = client.get("/v1/books/shelves%2Ffiction%2Fbooks%2Fdune")
    assert ok_json(response) == DUNE_JSON
    assert received(backend, "GetBook").name == "shelves/fiction/books/dune"


def test_single_segment_capture_decodes_everything(client: httpx.Client, backend: Any) -> None:
    response = client.get("/v1/books/a%20b%3Ac%25d%C3%A9")
    error_body(response, 404, 5)
    assert received(backend, "GetBook").name == "a b:c%dé"


def test_multi_segment_variable_keeps_reserved_escapes(client: httpx.Client, backend: Any) -> None:
    # `{name=shelves/*/books/*}` spans several segments: `%2F` must not become a segment separator.
    response = client.get("/v1/shelves/fiction/books/a%2Fb%20c")
    error_body(response, 404, 5)
    assert received(backend, "GetBook").name == "shelves/fiction/books/a%2Fb c"


def test_post_body_field_and_path(client: httpx.Client, backend: Any) -> None:
    book = {"title": "Children of Dune", "author": {"name": "Frank Herbert"}, "tags": ["sequel"]}
    response = client.post("/v1/shelves/fiction/books", params={"requestId": "cod"}, json=book)
    assert ok_json(response) == {
        "name": "shelves/fiction/books/cod",
        "title": "Children of Dune",
        "author": {"name": "Frank Herbert", "bornYear": 0},
        "genre": "GENRE_UNSPECIFIED",
        "tags": ["sequel"],
        "labels": {},
        "isbn": "0",
        "price": 0.0,
        "inStock": False,
        "coverThumbnail": "",
    }
    request = received(backend, "CreateBook")
    assert request.parent == "shelves/fiction"
    assert request.request_id == "cod"
    assert request.book.title == "Children of Dune"
    assert request.book.author.name == "Frank Herbert"
    assert list(request.book.tags) == ["sequel"]


def test_post_body_field_query_cannot_set_body_fields(client: httpx.Client, backend: Any) -> None:
    response = client.post("/v1/shelves/fiction/books?book.title=x", json={"title": "T"})
    body = error_body(response, 400, 3)
    assert body["message"] == "query parameter 'book.title' sets a field bound by the path or body"
    assert backend.recorder.calls == []


def test_put_additional_binding_body_star_with_verb(client: httpx.Client, backend: Any) -> None:
    # The path's parent wins over the body's.
    payload = {"parent": "shelves/science", "book": {"title": "Dune Messiah"}, "requestId": "messiah"}
    response = client.put("/v1/shelves/fiction/books:create", json=payload)
    assert ok_json(response)["name"] == "shelves/fiction/books/messiah"
    request = received(backend, "CreateBook")
    assert request.parent == "shelves/fiction"
    assert request.book.title == "Dune Messiah"
    assert request.request_id == "messiah"


def test_put_body_star_takes_no_query_parameters(client: httpx.Client, backend: Any) -> None:
    response = client.put("/v1/shelves/fiction/books:create?requestId=x", json={"book": {"title": "T"}})
    body = error_body(response, 400, 3)
    assert body["message"] == "query parameter 'requestId' sets a field bound by the path or body"
    assert backend.recorder.calls == []


def test_patch_nested_path_field_wins_over_body(client: httpx.Client, backend: Any) -> None:
    response = client.patch(
        BOOK, params={"updateMask": "title"}, json={"name": "shelves/other/books/x", "title": "Dune (2nd)"}
    )
    assert ok_json(response) == {**DUNE_JSON, "title": "Dune (2nd)"}
    request = received(backend, "UpdateBook")
    assert request.book.name == "shelves/fiction/books/dune"
    assert request.book.title == "Dune (2nd)"
    assert list(request.update_mask.paths) == ["title"]


def test_patch_update_mask_proto_names(client: httpx.Client, backend: Any) -> None:
    response = client.patch(
        BOOK, params={"update_mask": "author.born_year"}, json={"author": {"bornYear": 1921}}
    )
    assert ok_json(response)["author"] == {"name": "Frank Herbert", "bornYear": 1921}
    request = received(backend, "UpdateBook")
    assert list(request.update_mask.paths) == ["author.born_year"]
    assert request.book.name == "shelves/fiction/books/dune"


def test_delete_with_query(client: httpx.Client, backend: Any) -> None:
    response = client.delete("/v1/shelves/fiction/books/neuromancer?force=true&etag=x")
    assert ok_json(response) == {}
    request = received(backend, "DeleteBook")
    assert (request.name, request.force, request.etag) == ("shelves/fiction/books/neuromancer", True, "x")
    assert client.get("/v1/shelves/fiction/books/neuromancer").status_code == 404


def test_post_custom_verb_body_star(client: httpx.Client, backend: Any) -> None:
    response = client.post(
        f"{BOOK}:publish", json={"name": "shelves/x/books/y", "publishTime": "2024-01-02T03:04:05Z"}
    )
    assert ok_json(response)["publishTime"] == "2024-01-02T03:04:05Z"
    request = received(backend, "PublishBook")
    assert request.name == "shelves/fiction/books/dune"
    assert request.publish_time.ToJsonString() == "2024-01-02T03:04:05Z"


def test_custom_verb_with_empty_body(client: httpx.Client, backend: Any) -> None:
    response = client.post(f"{BOOK}:publish")
    assert ok_json(response)["name"] == "shelves/fiction/books/dune"
    assert not received(backend, "PublishBook").HasField("publish_time")


def test_response_body_field(client: httpx.Client, backend: Any) -> None:
    response = client.get(f"{BOOK}/title")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'"Dune"'
    assert received(backend, "GetBookTitle").name == "shelves/fiction/books/dune"


@pytest.mark.parametrize(
    ("url_path", "path"),
    [
        ("/v1/shelves/s1/files/covers/2024/a.png", "shelves/s1/files/covers/2024/a.png"),
        ("/v1/shelves/s1/files/a.png", "shelves/s1/files/a.png"),
        ("/v1/shelves/s1/files/covers/a%2Fb.png", "shelves/s1/files/covers/a%2Fb.png"),
        ("/v1/shelves/s1/files/my%20cover%3F.png", "shelves/s1/files/my cover%3F.png"),
        ("/v1/shelves/s1/files/caf%C3%A9/x.png", "shelves/s1/files/café/x.png"),
    ],
)
def test_double_star_capture(client: httpx.Client, backend: Any, url_path: str, path: str) -> None:
    response = client.get(url_path)
    content = b"\x00\xffcontents of " + path.encode()
    assert ok_json(response) == {
        "path": path,
        "content": base64.b64encode(content).decode(),
        "contentType": "image/png",
    }
    assert received(backend, "GetFile").path == path


def test_head_custom_method_binding(client: httpx.Client, backend: Any) -> None:
    get = client.get("/v1/shelves/s1/files/covers/2024/a.png")
    backend.reset()
    response = client.head("/v1/shelves/s1/files/covers/2024/a.png:stat")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(get.content))
    assert received(backend, "GetFile").path == "shelves/s1/files/covers/2024/a.png"


def test_scalars_from_path(client: httpx.Client, backend: Any) -> None:
    segments = [
        "1.5",  # double
        "-2.25",  # float
        "-9007199254740993",  # int64: not representable as a double
        "18446744073709551615",  # uint64 max
        "-2147483648",  # int32 min
        "18446744073709551615",  # fixed64 max
        "4294967295",  # fixed32 max
        "true",
        "h%C3%A9llo%2Fx%20y",  # string: fully decoded
        "_-8AAQ",  # bytes: URL-safe base64, unpadded
        "4294967295",  # uint32 max
        "GENRE_SCIENCE",  # enum by name
        "-5",  # sfixed32
        "-9223372036854775808",  # sfixed64 min
        "-7",  # sint32
        "-9223372036854775808",  # sint64 min
    ]
    response = client.get("/v1/scalars/" + "/".join(segments))
    assert ok_json(response) == {
        "fDouble": 1.5,
        "fFloat": -2.25,
        "fInt64": "-9007199254740993",
        "fUint64": "18446744073709551615",
        "fInt32": -2147483648,
        "fFixed64": "18446744073709551615",
        "fFixed32": 4294967295,
        "fBool": True,
        "fString": "héllo/x y",
        "fBytes": base64.b64encode(b"\xff\xef\x00\x01").decode(),
        "fUint32": 4294967295,
        "fEnum": "GENRE_SCIENCE",
        "fSfixed32": -5,
        "fSfixed64": "-9223372036854775808",
        "fSint32": -7,
        "fSint64": "-9223372036854775808",
    }
    request = received(backend, "EchoScalars")
    assert request.f_double == 1.5
    assert request.f_float == -2.25
    assert request.f_int64 == -9007199254740993
    assert request.f_uint64 == 2**64 - 1
    assert request.f_int32 == -(2**31)
    assert request.f_fixed64 == 2**64 - 1
    assert request.f_fixed32 == 2**32 - 1
    assert request.f_bool is True
    assert request.f_string == "héllo/x y"
    assert request.f_bytes == b"\xff\xef\x00\x01"
    assert request.f_uint32 == 2**32 - 1
    assert request.f_enum == 2
    assert request.f_sfixed32 == -5
    assert request.f_sfixed64 == -(2**63)
    assert request.f_sint32 == -7
    assert request.f_sint64 == -(2**63)


def test_scalars_path_enum_by_number_and_special_floats(client: httpx.Client, backend: Any) -> None:
    response = client.get("/v1/scalars/NaN/-Infinity/0/0/0/0/0/false/x/AQID/0/3/0/0/0/0")
    data = ok_json(response)
    assert (data["fDouble"], data["fFloat"], data["fEnum"], data["fBytes"]) == (
        "NaN",
        "-Infinity",
        "GENRE_HISTORY",
        "AQID",
    )
    request = received(backend, "EchoScalars")
    assert math.isnan(request.f_double)
    assert request.f_float == -math.inf
    assert request.f_enum == 3
    assert request.f_bytes == b"\x01\x02\x03"


def test_scalars_from_body_star(client: httpx.Client, backend: Any) -> None:
    payload = {
        "fDouble": 2.5,
        "fInt64": "-42",
        "f_uint64": "18446744073709551615",
        "fInt32": 7,
        "fBool": True,
        "fString": "body",
        "fBytes": "AAEC",
        "fEnum": "GENRE_FICTION",
        "fSint64": -3,
    }
    response = client.post("/v1/scalars", json=payload)
    data = ok_json(response)
    assert data["fInt64"] == "-42"
    assert data["fUint64"] == "18446744073709551615"
    assert data["fEnum"] == "GENRE_FICTION"
    request = received(backend, "EchoScalars")
    assert request.f_double == 2.5
    assert request.f_int64 == -42
    assert request.f_uint64 == 2**64 - 1
    assert request.f_int32 == 7
    assert request.f_bool is True
    assert request.f_string == "body"
    assert request.f_bytes == b"\x00\x01\x02"
    assert request.f_enum == 1
    assert request.f_sint64 == -3


def test_body_accepts_protojson_coercions(client: httpx.Client, backend: Any) -> None:
    # protojson reads quoted numbers, exponent-form integers and enum numbers; json_format does too.
    response = client.post("/v1/scalars", json={"fInt32": "5", "fDouble": "1.5", "fUint32": 1e3, "fEnum": 2})
    ok_json(response)
    request = received(backend, "EchoScalars")
    assert (request.f_int32, request.f_double, request.f_uint32, request.f_enum) == (5, 1.5, 1000, 2)


def test_scalars_from_query(client: httpx.Client, backend: Any) -> None:
    response = client.get(
        "/v1/scalars?fString=a+b%2Bc&f_enum=3&fBytes=AQID&f_sint64=-3&fBool=true&fDouble=-0.5&fUint64=18446744073709551615"
    )
    data = ok_json(response)
    assert data["fString"] == "a b+c"
    request = received(backend, "EchoScalars")
    assert request.f_string == "a b+c"
    assert request.f_enum == 3
    assert request.f_bytes == b"\x01\x02\x03"
    assert request.f_sint64 == -3
    assert request.f_bool is True
    assert request.f_double == -0.5
    assert request.f_uint64 == 2**64 - 1


def test_second_service_in_same_file(client: httpx.Client, backend: Any) -> None:
    response = client.get("/v1/shelves/fiction")
    assert ok_json(response) == {"name": "shelves/fiction", "theme": "Fiction"}
    assert backend.recorder.last("ShelfAdminService/GetShelf").request.name == "shelves/fiction"
    created = client.post("/v1/shelves", json={"name": "shelves/poetry", "theme": "Poetry"})
    assert ok_json(created) == {"name": "shelves/poetry", "theme": "Poetry"}
    request = backend.recorder.last("ShelfAdminService/CreateShelf").request
    assert (request.name, request.theme) == ("shelves/poetry", "Poetry")
    assert backend.recorder.methods() == [
        "/shop.v1.ShelfAdminService/GetShelf",
        "/shop.v1.ShelfAdminService/CreateShelf",
    ]


# ------------------------------------------------------------------------------------------ query


@pytest.mark.parametrize("key", ["page_size", "pageSize"])
def test_query_proto_and_json_names(client: httpx.Client, backend: Any, key: str) -> None:
    response = client.get("/v1/shelves/fiction/books", params={key: "1"})
    data = ok_json(response)
    assert [book["name"] for book in data["books"]] == ["shelves/fiction/books/dune"]
    assert data["nextPageToken"] == "1"
    assert received(backend, "ListBooks").page_size == 1


def test_query_same_field_by_both_names_is_rejected(client: httpx.Client, backend: Any) -> None:
    response = client.get("/v1/shelves/fiction/books?page_size=1&pageSize=2")
    body = error_body(response, 400, 3)
    assert body["message"] == "query parameter 'pageSize' given more than once for a non-repeated field"
    assert backend.recorder.calls == []


@pytest.mark.parametrize("key", ["filter.author_name", "filter.authorName"])
def test_query_dotted_nested(client: httpx.Client, backend: Any, key: str) -> None:
    response = client.get(
        f"/v1/shelves/fiction/books?{key}=herbert&filter.genres=GENRE_FICTION&filter.genres=2&filter.minPages=10"
    )
    data = ok_json(response)
    assert [book["name"] for book in data["books"]] == ["shelves/fiction/books/dune"]
    request = received(backend, "ListBooks")
    assert request.filter.author_name == "herbert"
    assert list(request.filter.genres) == [1, 2]
    assert request.filter.min_pages == 10
    assert request.parent == "shelves/fiction"


def test_query_repeated_by_repeating_the_key(client: httpx.Client, backend: Any) -> None:
    response = client.get("/v1/shelves/fiction/books?tags=classic&tags=space")
    assert [book["name"] for book in ok_json(response)["books"]] == ["shelves/fiction/books/dune"]
    assert list(received(backend, "ListBooks").tags) == ["classic", "space"]


@pytest.mark.parametrize(
    "query", ["labels[lang]=en&labels[series]=dune", "labels%5Blang%5D=en&labels%5Bseries%5D=dune"]
)
def test_query_map(client: httpx.Client, backend: Any, query: str) -> None:
    response = client.get(f"/v1/shelves/fiction/books?{query}")
    assert [book["name"] for book in ok_json(response)["books"]] == ["shelves/fiction/books/dune"]
    assert dict(received(backend, "ListBooks").labels) == {"lang": "en", "series": "dune"}


@pytest.mark.parametrize("value", ["GENRE_SCIENCE", "2"])
def test_query_enum_by_name_or_number(client: httpx.Client, backend: Any, value: str) -> None:
    response = client.get("/v1/shelves/science/books", params={"genre": value})
    assert [book["name"] for book in ok_json(response)["books"]] == ["shelves/science/books/cosmos"]
    assert received(backend, "ListBooks").genre == 2


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_query_wrapper(client: httpx.Client, backend: Any, value: str, expected: bool) -> None:
    response = client.get("/v1/shelves/fiction/books", params={"in_stock": value})
    names = [book["name"] for book in ok_json(response)["books"]]
    assert names == (["shelves/fiction/books/dune"] if expected else ["shelves/fiction/books/neuromancer"])
    request = received(backend, "ListBooks")
    assert request.HasField("in_stock")
    assert request.in_stock.value is expected


def test_query_timestamp_and_duration(client: httpx.Client, backend: Any) -> None:
    response = client.get(
        "/v1/shelves/fiction/books?published_after=1960-01-02T03:04:05Z&maxReadTime=72000.5s"
    )
    assert [book["name"] for book in ok_json(response)["books"]] == ["shelves/fiction/books/dune"]
    request = received(backend, "ListBooks")
    assert request.published_after.ToJsonString() == "1960-01-02T03:04:05Z"
    assert (request.max_read_time.seconds, request.max_read_time.nanos) == (72000, 500_000_000)


def test_query_duration_fraction(client: httpx.Client, backend: Any) -> None:
    ok_json(client.get("/v1/shelves/fiction/books?max_read_time=3.5s"))
    request = received(backend, "ListBooks")
    assert (request.max_read_time.seconds, request.max_read_time.nanos) == (3, 500_000_000)


def test_query_timestamp_offset_needs_encoded_plus(client: httpx.Client, backend: Any) -> None:
    ok_json(client.get("/v1/shelves/fiction/books?published_after=2024-01-02T03:04:05%2B01:00"))
    assert received(backend, "ListBooks").published_after.ToJsonString() == "2024-01-02T02:04:05Z"
    backend.reset()
    # A literal `+` in a query is a space (form encoding), which makes the timestamp invalid.
    response = client.get("/v1/shelves/fiction/books?published_after=2024-01-02T03:04:05+01:00")
    assert error_body(response, 400, 3)["message"].startswith("invalid value for published_after: ")
    assert backend.recorder.calls == []


@pytest.mark.parametrize(
    ("query", "paths", "expected"),
    [
        (
            "read_mask=title,author.name",
            ["title", "author.name"],
            {"title": "Dune", "author": {"name": "Frank Herbert", "bornYear": 0}},
        ),
        (
            "readMask=title,author.bornYear",
            ["title", "author.born_year"],
            {"title": "Dune", "author": {"name": "", "bornYear": 1920}},
        ),
        (
            "readMask=inStock,publish_time",
            ["in_stock", "publish_time"],
            {"inStock": True, "publishTime": "1965-08-01T00:00:00Z"},
        ),
    ],
)
def test_query_field_mask(
    client: httpx.Client, backend: Any, query: str, paths: list[str], expected: dict[str, Any]
) -> None:
    response = client.get(f"{BOOK}?{query}")
    data = ok_json(response)
    unpopulated = {
        "name": "",
        "title": "",
        "genre": "GENRE_UNSPECIFIED",
        "tags": [],
        "labels": {},
        "isbn": "0",
        "price": 0.0,
        "inStock": False,
        "coverThumbnail": "",
    }
    assert data == {**unpopulated, **expected}
    assert list(received(backend, "GetBook").read_mask.paths) == paths


def test_query_plus_is_space(client: httpx.Client, backend: Any) -> None:
    ok_json(client.get("/v1/scalars?f_string=one+two%20three%2B"))
    assert received(backend, "EchoScalars").f_string == "one two three+"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("bogus=1", "unknown query parameter 'bogus'"),
        ("filter.bogus=1", "unknown query parameter 'filter.bogus'"),
        ("parent=shelves/science", "query parameter 'parent' sets a field bound by the path or body"),
        (
            "pageToken=a&pageToken=b",
            "query parameter 'pageToken' given more than once for a non-repeated field",
        ),
        ("pageSize=abc", "invalid value for pageSize: 'abc' is not an integer (int32)"),
        ("page_size=1.5", "invalid value for page_size: '1.5' is not an integer (int32)"),
        ("pageSize=2147483648", "invalid value for pageSize: 2147483648 is out of range for int32"),
        ("filter.minPages=-1", "invalid value for filter.minPages: -1 is out of range for uint32"),
        ("genre=GENRE_NOPE", "invalid value for genre: 'GENRE_NOPE' is not a value of enum shop.v1.Genre"),
        ("in_stock=yes", "invalid value for in_stock: 'yes' is not true or false"),
        ("filter=x", "query parameter 'filter' is a message: set its fields as filter.<field>"),
        ("labels=x", "query parameter 'labels' is a map: use labels[KEY]=VALUE"),
        ("tags[a]=x", "query parameter tags[a]: tags is not a map"),
        ("pageToken=%zz", "malformed percent-escape in the query string"),
    ],
)
def test_query_errors(client: httpx.Client, backend: Any, query: str, message: str) -> None:
    response = client.get(f"/v1/shelves/fiction/books?{query}")
    assert error_body(response, 400, 3)["message"] == message
    assert backend.recorder.calls == []


def test_query_bad_duration_names_field(client: httpx.Client, backend: Any) -> None:
    response = client.get("/v1/shelves/fiction/books?maxReadTime=soon")
    assert error_body(response, 400, 3)["message"].startswith("invalid value for maxReadTime: ")
    assert backend.recorder.calls == []


# ------------------------------------------------------------------------------------------ responses


def test_protojson_response_unpopulated_fields_emitted(client: httpx.Client) -> None:
    data = ok_json(client.get("/v1/shelves/fiction/books/neuromancer"))
    # Implicit-presence fields appear with their defaults; message, optional and oneof fields only when set.
    assert data == {
        "name": "shelves/fiction/books/neuromancer",
        "title": "Neuromancer",
        "author": {"name": "William Gibson", "bornYear": 1948},
        "genre": "GENRE_FICTION",
        "tags": ["classic", "cyberpunk"],
        "labels": {"lang": "en"},
        "publishTime": "1984-07-01T00:00:00Z",
        "isbn": "9780441569595",
        "price": 8.5,
        "inStock": False,
        "coverThumbnail": "",
        "pages": 271,
    }


def test_protojson_all_defaults(client: httpx.Client) -> None:
    assert ok_json(client.get("/v1/scalars")) == {
        "fDouble": 0.0,
        "fFloat": 0.0,
        "fInt64": "0",
        "fUint64": "0",
        "fInt32": 0,
        "fFixed64": "0",
        "fFixed32": 0,
        "fBool": False,
        "fString": "",
        "fBytes": "",
        "fUint32": 0,
        "fEnum": "GENRE_UNSPECIFIED",
        "fSfixed32": 0,
        "fSfixed64": "0",
        "fSint32": 0,
        "fSint64": "0",
    }


def test_protojson_oneof_duration_and_map(client: httpx.Client) -> None:
    data = ok_json(client.get("/v1/shelves/science/books/cosmos"))
    assert data["audioLength"] == "52260s"
    assert "pages" not in data
    assert data["labels"] == {"lang": "en", "format": "audio"}


def test_empty_response_message(client: httpx.Client) -> None:
    response = client.post("/v1/fail", json={"code": 0})
    assert ok_json(response) == {}
    assert response.content == b"{}"

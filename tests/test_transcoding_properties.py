"""Properties of request/response transcoding through the generated runtime's own code paths.

* JSON -> message -> JSON is stable: a random message of a testdata type, printed with
  `JsonStyle(...).encode` under every style, parses back with `JsonStyle.parse` (the body path of every
  generated handler: strict JSON, object checks, `json_format.ParseDict`) into an equal message, and
  printing that gives the same bytes.
* Query parameters: random field values, formatted as a client would (`urlencode`, proto or JSON names,
  enums by name or number, base64 in either alphabet, RFC 3339 times), go through `apply_query` and give
  back the same values.

Equality is on deterministic wire bytes, so that NaN compares equal to itself.
"""

from __future__ import annotations

import base64
import json
import math
import types
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from google.protobuf import field_mask_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def rt(gen_dir: Path) -> types.ModuleType:
    import pygateway_runtime

    return pygateway_runtime


@pytest.fixture(scope="module")
def pb(gen_dir: Path) -> types.ModuleType:
    from shop.v1 import shop_pb2  # type: ignore[import-not-found]

    return shop_pb2  # type: ignore[no-any-return]


def wire(msg: Any) -> bytes:
    return msg.SerializeToString(deterministic=True)  # type: ignore[no-any-return]


# --- value strategies (protojson ranges) --------------------------------------------------------------

int32s = st.integers(-(2**31), 2**31 - 1)
uint32s = st.integers(0, 2**32 - 1)
int64s = st.integers(-(2**63), 2**63 - 1)
uint64s = st.integers(0, 2**64 - 1)


def _canonical_nan(value: float) -> float:
    return math.nan if math.isnan(value) else value


# NaN and +-Infinity included (protojson and query values spell them "NaN", "Infinity"); a NaN's sign
# and payload have no spelling, so every NaN is the canonical one.
doubles = st.floats().map(_canonical_nan)
float32s = st.floats(width=32).map(_canonical_nan)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)  # no lone surrogates: not UTF-8
blobs = st.binary(max_size=12)
# Open (proto3) enum: values outside Genre are kept and printed as numbers.
genres = st.one_of(st.integers(0, 3), st.integers(-3, 9))
# 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z
ts_seconds = st.integers(-62135596800, 253402300799)
nanos = st.integers(0, 999_999_999)
DURATION_MAX = 315_576_000_000
mask_paths = st.from_regex(
    r"[a-z][a-z0-9]{0,3}(_[a-z][a-z0-9]{0,3}){0,2}(\.[a-z][a-z0-9]{0,3}){0,2}", fullmatch=True
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
struct_objects = st.dictionaries(texts, json_values, max_size=4)


def maybe(draw: st.DrawFn, strategy: st.SearchStrategy[Any]) -> Any:
    """A value from `strategy`, or None (field left unset) half of the time."""
    return draw(strategy) if draw(st.booleans()) else None


def set_timestamp(draw: st.DrawFn, target: Any) -> None:
    target.seconds = draw(ts_seconds)
    target.nanos = draw(nanos)


def set_duration(draw: st.DrawFn, target: Any) -> None:
    seconds = draw(st.integers(-DURATION_MAX, DURATION_MAX))
    n = draw(nanos)
    target.seconds = seconds
    target.nanos = -n if seconds < 0 or (seconds == 0 and draw(st.booleans())) else n


# --- message strategies --------------------------------------------------------------------------------


@st.composite
def books(draw: st.DrawFn) -> Any:
    from shop.v1 import shop_pb2

    book = shop_pb2.Book(name=draw(texts), title=draw(texts), genre=draw(genres), isbn=draw(int64s))
    if draw(st.booleans()):
        book.author.name = draw(texts)
        book.author.born_year = draw(int32s)
    book.tags.extend(draw(st.lists(texts, max_size=3)))
    book.labels.update(draw(st.dictionaries(texts, texts, max_size=3)))
    if draw(st.booleans()):
        set_timestamp(draw, book.publish_time)
    if draw(st.booleans()):
        set_duration(draw, book.read_time)
    if draw(st.booleans()):
        book.edition.value = draw(int32s)  # a wrapper holding 0 is still present
    book.price = draw(doubles)
    book.in_stock = draw(st.booleans())
    book.cover_thumbnail = draw(blobs)
    if draw(st.booleans()):
        book.attributes.update(draw(struct_objects))
    subtitle = maybe(draw, texts)
    if subtitle is not None:
        book.subtitle = subtitle  # optional: "" is present
    which = draw(st.sampled_from(["none", "pages", "audio_length"]))
    if which == "pages":
        book.pages = draw(int32s)  # oneof member: 0 is present
    elif which == "audio_length":
        set_duration(draw, book.audio_length)
    return book


@st.composite
def scalars(draw: st.DrawFn) -> Any:
    from shop.v1 import shop_pb2

    return shop_pb2.ScalarsRequest(
        f_double=draw(doubles),
        f_float=draw(float32s),
        f_int64=draw(int64s),
        f_uint64=draw(uint64s),
        f_int32=draw(int32s),
        f_fixed64=draw(uint64s),
        f_fixed32=draw(uint32s),
        f_bool=draw(st.booleans()),
        f_string=draw(texts),
        f_bytes=draw(blobs),
        f_uint32=draw(uint32s),
        f_enum=draw(genres),
        f_sfixed32=draw(int32s),
        f_sfixed64=draw(int64s),
        f_sint32=draw(int32s),
        f_sint64=draw(int64s),
    )


@st.composite
def list_books_requests(draw: st.DrawFn) -> Any:
    from shop.v1 import shop_pb2

    request = shop_pb2.ListBooksRequest(
        parent=draw(texts),
        page_size=draw(int32s),
        page_token=draw(texts),
        genre=draw(genres),
        tags=draw(st.lists(texts, max_size=3)),
        labels=draw(st.dictionaries(texts, texts, max_size=3)),
    )
    if draw(st.booleans()):
        set_timestamp(draw, request.published_after)
    if draw(st.booleans()):
        set_duration(draw, request.max_read_time)
    if draw(st.booleans()):
        request.in_stock.value = draw(st.booleans())
    if draw(st.booleans()):
        request.filter.author_name = draw(texts)
        request.filter.min_pages = draw(uint32s)
        request.filter.genres.extend(draw(st.lists(genres, max_size=3)))
    return request


@st.composite
def update_book_requests(draw: st.DrawFn) -> Any:
    from shop.v1 import shop_pb2

    request = shop_pb2.UpdateBookRequest()
    if draw(st.booleans()):
        request.book.CopyFrom(draw(books()))
    if draw(st.booleans()):
        request.update_mask.paths.extend(draw(st.lists(mask_paths, max_size=3)))
    return request


@st.composite
def echo_metadata_responses(draw: st.DrawFn) -> Any:
    from shop.v1 import shop_pb2

    response = shop_pb2.EchoMetadataResponse(note=draw(texts))
    for key, values in draw(st.dictionaries(texts, st.lists(texts, max_size=2), max_size=3)).items():
        response.metadata[key].values.extend(values)
    if draw(st.booleans()):
        response.deadline_seconds.value = draw(doubles)
    return response


@st.composite
def events(draw: st.DrawFn) -> Any:
    from shop.v1 import feed_pb2  # type: ignore[import-not-found]

    event = feed_pb2.Event(seq=draw(int64s), shelf=draw(texts), title=draw(texts))
    if draw(st.booleans()):
        set_timestamp(draw, event.time)
    return event


messages = st.one_of(
    books(), scalars(), list_books_requests(), update_book_requests(), echo_metadata_responses(), events()
)


@st.composite
def styles(draw: st.DrawFn) -> Any:
    import pygateway_runtime

    return pygateway_runtime.JsonStyle(
        use_proto_names=draw(st.booleans()),
        emit_unpopulated=draw(st.booleans()),
        enums_as_ints=draw(st.booleans()),
        ignore_unknown_fields=draw(st.booleans()),
    )


# --- JSON -> message -> JSON --------------------------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_json_roundtrip(rt: types.ModuleType, pb: types.ModuleType, data: st.DataObject) -> None:
    msg = data.draw(messages, label="message")
    style = data.draw(styles(), label="style")
    text = style.encode(msg)
    text.decode("utf-8")  # strict UTF-8
    fresh = type(msg)()
    style.parse(fresh, text)
    assert wire(fresh) == wire(msg)
    again = style.encode(fresh)
    assert json.loads(again) == json.loads(text)
    if not has_unordered_map(msg):
        assert again == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.4028235e+38", 3.4028234663852886e38),  # how protobuf prints float32's largest value
        ('"-3.4028235e+38"', -3.4028234663852886e38),
        ("3.4028234663852886e+38", 3.4028234663852886e38),
        ("1.5", 1.5),
    ],
)
def test_float32_largest_value_as_printed_is_accepted(
    rt: types.ModuleType, pb: types.ModuleType, text: str, expected: float
) -> None:
    """json_format refuses 3.4028235e+38 ("Float value too large") though it prints FLT_MAX that way."""
    style = rt.JsonStyle(False, False, False, False)
    msg = pb.ScalarsRequest()
    style.parse(msg, f'{{"fFloat": {text}}}'.encode())
    assert msg.f_float == expected
    again = pb.ScalarsRequest()
    style.parse(again, style.encode(msg))
    assert again.f_float == expected


@pytest.mark.parametrize("text", ["3.41e+38", "-3.5e38", "1e39"])
def test_float32_out_of_range_is_refused(rt: types.ModuleType, pb: types.ModuleType, text: str) -> None:
    with pytest.raises(rt.HttpError) as refused:
        rt.JsonStyle(False, False, False, False).parse(pb.ScalarsRequest(), f'{{"fFloat": {text}}}'.encode())
    assert refused.value.status == 400 and "fFloat" in refused.value.message


def has_unordered_map(msg: Any) -> bool:
    """Whether `msg` holds a map (a Struct is one) with two entries or more somewhere. protobuf prints
    map entries in its hash map's iteration order, which is neither insertion nor key order and can
    differ between equal messages: the JSON is then equal as data but its bytes may not be."""
    for field, value in msg.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if len(value) > 1:
                return True
            items = list(value.values())
        elif field.message_type is None:
            continue
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        if any(has_unordered_map(item) for item in items if hasattr(item, "ListFields")):
            return True
    return False


@SETTINGS
@given(book=books(), style=styles())
def test_json_roundtrip_of_a_body_field(
    rt: types.ModuleType, pb: types.ModuleType, book: Any, style: Any
) -> None:
    """`body: "book"` (CreateBook, UpdateBook): the body is the field's JSON value alone."""
    text = style.encode(book)
    request = pb.CreateBookRequest()
    style.parse_field(request, "book", text)
    assert wire(request.book) == wire(book)
    assert [f.name for f, _ in request.ListFields()] == ["book"]  # present, also as `{}`


# --- query parameters ---------------------------------------------------------------------------------


def format_double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def format_bytes(draw: st.DrawFn, value: bytes) -> str:
    text = base64.urlsafe_b64encode(value) if draw(st.booleans()) else base64.b64encode(value)
    return (text if draw(st.booleans()) else text.rstrip(b"=")).decode("ascii")


def format_enum(draw: st.DrawFn, enum: Any, value: int) -> str:
    known = enum.values_by_number.get(value)
    return known.name if known is not None and draw(st.booleans()) else str(value)


def key(draw: st.DrawFn, descriptor: Any, name: str) -> str:
    """The query key of field `name`: its proto name or its JSON name."""
    field = descriptor.fields_by_name[name]
    return str(field.json_name) if draw(st.booleans()) else name


def query(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> bytes:
    """`pairs` urlencoded in a random order that keeps the order of the values of each key."""
    order = draw(st.permutations(range(len(pairs))))
    by_key: dict[str, list[str]] = {}
    for name, value in pairs:
        by_key.setdefault(name, []).append(value)
    shuffled = [pairs[i][0] for i in order]
    return urlencode([(name, by_key[name].pop(0)) for name in shuffled]).encode("ascii")


SCALAR_FORMATS: dict[str, Any] = {
    "f_double": format_double,
    "f_float": format_double,
    "f_bool": lambda v: "true" if v else "false",
    "f_string": str,
}


@SETTINGS
@given(data=st.data(), msg=scalars())
def test_query_scalars(rt: types.ModuleType, pb: types.ModuleType, data: st.DataObject, msg: Any) -> None:
    draw = data.draw
    desc = msg.DESCRIPTOR
    pairs: list[tuple[str, str]] = []
    expected = pb.ScalarsRequest()
    for field in desc.fields:
        if not draw(st.booleans()):
            continue
        value = getattr(msg, field.name)
        setattr(expected, field.name, value)
        if field.name == "f_bytes":
            text = format_bytes(draw, value)
        elif field.name == "f_enum":
            text = format_enum(draw, field.enum_type, value)
        else:
            text = SCALAR_FORMATS.get(field.name, str)(value)
        pairs.append((key(draw, desc, field.name), text))
    payload = pb.ScalarsRequest()
    rt.apply_query(payload, query(draw, pairs), frozenset(), False, True)
    assert wire(payload) == wire(expected)


#: Map keys: any text (`[` and line feeds are covered by test_query_map_key_with_brackets_and_line_feeds).
map_keys = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=""), max_size=6)


@SETTINGS
@given(data=st.data())
def test_query_list_books(rt: types.ModuleType, pb: types.ModuleType, data: st.DataObject) -> None:
    """Repeated fields (repeated keys), maps (`labels[k]=v`), enums, WKTs, nested fields (`filter.x`)."""
    draw = data.draw
    desc = pb.ListBooksRequest.DESCRIPTOR
    expected = pb.ListBooksRequest(
        parent=draw(texts), page_size=draw(int32s), page_token=draw(texts), genre=draw(genres)
    )
    pairs = [
        (key(draw, desc, "parent"), expected.parent),
        (key(draw, desc, "page_size"), str(expected.page_size)),
        (key(draw, desc, "page_token"), expected.page_token),
        (key(draw, desc, "genre"), format_enum(draw, pb.Genre.DESCRIPTOR, expected.genre)),
    ]
    tags = draw(st.lists(texts, max_size=3))
    expected.tags.extend(tags)
    pairs += [("tags", tag) for tag in tags]
    labels = draw(st.dictionaries(map_keys, texts, max_size=3))
    expected.labels.update(labels)
    pairs += [(f"labels[{k}]", v) for k, v in labels.items()]
    if draw(st.booleans()):
        set_timestamp(draw, expected.published_after)
        pairs.append((key(draw, desc, "published_after"), expected.published_after.ToJsonString()))
    if draw(st.booleans()):
        set_duration(draw, expected.max_read_time)
        pairs.append((key(draw, desc, "max_read_time"), expected.max_read_time.ToJsonString()))
    if draw(st.booleans()):
        expected.in_stock.value = draw(st.booleans())
        pairs.append((key(draw, desc, "in_stock"), "true" if expected.in_stock.value else "false"))
    if draw(st.booleans()):
        fdesc = pb.Filter.DESCRIPTOR
        prefix = key(draw, desc, "filter")
        expected.filter.author_name = draw(texts)
        expected.filter.min_pages = draw(uint32s)
        filter_genres = draw(st.lists(genres, max_size=3))
        expected.filter.genres.extend(filter_genres)
        pairs.append((f"{prefix}.{key(draw, fdesc, 'author_name')}", expected.filter.author_name))
        pairs.append((f"{prefix}.{key(draw, fdesc, 'min_pages')}", str(expected.filter.min_pages)))
        pairs += [(f"{prefix}.genres", format_enum(draw, pb.Genre.DESCRIPTOR, g)) for g in filter_genres]
    payload = pb.ListBooksRequest()
    rt.apply_query(payload, query(draw, pairs), frozenset(), False, True)
    assert wire(payload) == wire(expected)


@SETTINGS
@given(data=st.data(), paths=st.lists(mask_paths, min_size=1, max_size=4))
def test_query_field_mask(
    rt: types.ModuleType, pb: types.ModuleType, data: st.DataObject, paths: list[str]
) -> None:
    """FieldMask: comma-separated, each path in protojson lowerCamelCase or proto snake_case."""
    expected = pb.GetBookRequest(name=data.draw(texts))
    expected.read_mask.paths.extend(paths)
    camel = [field_mask_pb2.FieldMask(paths=[p]).ToJsonString() for p in paths]
    text = ",".join(c if data.draw(st.booleans()) else p for p, c in zip(paths, camel, strict=True))
    payload = pb.GetBookRequest()
    pairs = [("name", expected.name), (data.draw(st.sampled_from(["read_mask", "readMask"])), text)]
    rt.apply_query(payload, query(data.draw, pairs), frozenset(), False, True)
    assert wire(payload) == wire(expected)


@pytest.mark.parametrize("map_key", ["a[b", "a\nb", "["])
def test_query_map_key_with_brackets_and_line_feeds(
    rt: types.ModuleType, pb: types.ModuleType, map_key: str
) -> None:
    payload = pb.ListBooksRequest()
    rt.apply_query(payload, urlencode({f"labels[{map_key}]": "x"}).encode(), frozenset(), False, True)
    assert dict(payload.labels) == {map_key: "x"}

"""Properties of the run-time matcher (`Route`, `Gateway.resolve`), unit-tested on the runtime's source
package (protoc_gen_pygateway.runtime, emitted as pygateway_runtime).

The oracle is `protoc_gen_pygateway.httprule.reference` (one regex per template over the raw path) with
the one documented difference of the run-time matcher spelled out as a regex (`literal_regex`): a
request segment matches a template literal when it equals the literal as written, or when both
percent-decode (as `_unescape` does, UTF-8) to the same text, so `/v1/%62ooks` reaches `/v1/books` and
`a%2fb` matches the literal `a%2Fb`, but the double-encoded `a%252Fb` does not. A segment with a
malformed or non-UTF-8 escape equals no literal (it is no 400 during routing: routing goes on). Everything
else must agree exactly: match or no match, and the raw (still percent-encoded) captured values.

Empty segments are refused by both (`[^/]+` in the reference, explicit checks in `Route.match`, also
inside `**`); the path `/` has zero segments in both (only `/**` and `/{x=**}` match it); a path that
does not start with `/` matches nothing.

Routes are built from `compile_template(...)` by `build_route`, through the same Jinja filters
(`segments`, `captures`, `pytuple`) as templates/service.py.jinja;
`test_build_route_mirrors_generated_routes` checks it against the routes of the generated shop gateway.
"""

from __future__ import annotations

import ast
import re
import types
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from protoc_gen_pygateway.httprule import (
    CompiledSegment,
    CompiledTemplate,
    DeepWildcard,
    Literal,
    PlainSegment,
    Segment,
    SegmentKind,
    Template,
    Variable,
    Wildcard,
    compile_template,
    parse,
    render,
)
from protoc_gen_pygateway.httprule.reference import group_name, to_regex
from protoc_gen_pygateway.model import Binding, Body
from protoc_gen_pygateway.render import _captures, _pytuple, _segments
from tests.test_httprule import templates

LIT = SegmentKind.LITERAL


@pytest.fixture(scope="module")
def rt() -> types.ModuleType:
    """The runtime's source package itself: its matcher is unit-tested without a generated tree."""
    from protoc_gen_pygateway import runtime

    return runtime


async def _dummy(request: Any) -> None:  # a handler is never called here
    raise AssertionError("not called")


def build_route(
    rt: types.ModuleType,
    method: str,
    ct: CompiledTemplate,
    name: str = "test.Service.Method",
    handler: Callable[[Any], Awaitable[None]] = _dummy,
) -> Any:
    """`_rt.Route(...)` for one binding, built as templates/service.py.jinja builds it: the same filters
    render the expressions, which are then evaluated against the runtime."""
    binding = Binding(0, method, ct, Body("none"), None, (), (), False)
    names = {"_rt": rt}
    return rt.Route(
        method=binding.http_method,
        template=binding.template.source,
        segments=eval(_segments(binding.template), names),
        verb=binding.template.verb,
        captures=eval(_captures(binding.template), names),
        rank=ast.literal_eval(_pytuple(binding.template.specificity())),
        handler=handler,
        name=name,
    )


# --- the oracle ---------------------------------------------------------------------------------------


def _hex_either_case(byte: int) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in f"{byte:02x}")


def decode_literal(value: str) -> str | None:
    """A template literal's text: its escapes decoded, None when they are not UTF-8 (`%ff`)."""
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return None


_ESCAPED_ONLY = frozenset(b"%/")


def literal_regex(value: str) -> str:
    """Raw request segments the run-time matcher takes for the template literal `value`: the literal as
    written, or any spelling that percent-decodes to the same text as the literal. The gateway reads raw
    paths as latin-1, so each byte of the text may come as its latin-1 character or as an escape; `%` and
    `/` only as an escape (a bare `%` starts an escape, a bare `/` ends the segment).
    """
    alternatives = [re.escape(value)]
    text = decode_literal(value)
    if text is not None:
        alternatives.append(
            "".join(
                f"%{_hex_either_case(byte)}"
                if byte in _ESCAPED_ONLY
                else f"(?:{re.escape(chr(byte))}|%{_hex_either_case(byte)})"
                for byte in text.encode("utf-8")
            )
        )
    return "(?:" + "|".join(alternatives) + ")"


def oracle_regex(ct: CompiledTemplate) -> re.Pattern[str]:
    """`reference.to_regex(ct)` with every literal replaced by `literal_regex`."""
    tokens: dict[str, str] = {}
    segments: list[CompiledSegment] = []
    for i, segment in enumerate(ct.segments):
        if segment.kind is LIT:
            token = f"QQLITERAL{i}QQ"
            tokens[token] = segment.value
            segment = CompiledSegment(LIT, token)
        segments.append(segment)
    pattern = to_regex(replace(ct, segments=tuple(segments))).pattern
    for token, value in tokens.items():
        assert pattern.count(token) == 1, (pattern, token)
        pattern = pattern.replace(token, literal_regex(value))
    return re.compile(pattern)


def oracle_match(ct: CompiledTemplate, path: str) -> list[str] | None:
    """Raw captured values in capture order, or None."""
    m = oracle_regex(ct).match(path)
    if m is None:
        return None
    return [m.group(group_name(i)) or "" for i in range(len(ct.captures))]


def runtime_match(rt: types.ModuleType, route: Any, path: str) -> list[str] | None:
    """What `Gateway.resolve` does with one route (the verb-less variant first for verb routes)."""
    found = rt.Gateway([route], 1024).resolve(route.method, path)
    if isinstance(found, list):
        assert found == []
        return None
    assert found[0] is route
    return list(found[1])


# --- strategies ---------------------------------------------------------------------------------------

#: Request segment characters: reserved and unreserved ones, `%` (well-formed, malformed, non-UTF-8
#: escapes), `:` (the verb separator) and a latin-1 character (the gateway decodes raw paths as latin-1).
SEGMENT_CHARS = "abcXYZ019-._~!$&'()+,;=@:%\xe9"
raw_segments = st.one_of(
    st.text(SEGMENT_CHARS, min_size=1, max_size=5),
    st.sampled_from(["%2F", "%2f", "%25", "%3A", "%ff", "%zz", "%", "%4", "%C3%A9", "a%2Fb", ":", "::"]),
)


def encode_some(data: st.DataObject, literal: str) -> str:
    """Another spelling of a template literal: the bytes of its decoded text, a random subset of them
    percent-encoded (hex digits in random case), `%` and `/` always."""
    text = decode_literal(literal)
    if text is None:
        return literal
    out = []
    for byte in text.encode("utf-8"):
        if byte in _ESCAPED_ONLY or byte >= 0x80 or data.draw(st.booleans()):
            escape = f"%{byte:02X}"
            out.append(escape if data.draw(st.booleans()) else escape.lower())
        else:
            out.append(chr(byte))
    return "".join(out)


def matching_path(data: st.DataObject, ct: CompiledTemplate) -> str:
    """A path `ct` matches by construction (literals possibly percent-encoded)."""
    parts: list[str] = []
    for segment in ct.segments:
        if segment.kind is LIT:
            literal = segment.value
            parts.append(encode_some(data, literal) if data.draw(st.booleans()) else literal)
        elif segment.kind is SegmentKind.SINGLE:
            parts.append(data.draw(raw_segments))
        else:
            parts.extend(data.draw(st.lists(raw_segments, max_size=3)))
    path = "/" + "/".join(parts)
    return path + (":" + ct.verb if ct.verb is not None else "")


def soup_path(data: st.DataObject, ct: CompiledTemplate) -> str:
    """A random path, made of the template's literals and random segments, often almost matching."""
    words = [s.value for s in ct.segments if s.kind is LIT] or ["v1"]
    segment = st.one_of(
        st.sampled_from(words),
        st.sampled_from(words).map(lambda w: encode_some(data, w)),
        raw_segments,
        st.just(""),
    )
    kind = data.draw(st.integers(0, 3))
    if kind == 0:
        return "/" + "/".join(data.draw(st.lists(segment, max_size=7)))
    if kind == 1:
        body = "/" + "/".join(data.draw(st.lists(segment, max_size=7)))
        verbs = [ct.verb] if ct.verb is not None else []
        return body + ":" + data.draw(st.sampled_from([*verbs, "", "v", "a:b"]) | raw_segments)
    if kind == 2:  # mutate a matching path: drop, repeat or replace one segment
        parts = matching_path(data, ct)[1:].split("/")
        i = data.draw(st.integers(0, len(parts) - 1))
        op = data.draw(st.sampled_from(["drop", "repeat", "replace", "append", "prepend"]))
        if op == "drop":
            del parts[i]
        elif op == "repeat":
            parts.insert(i, parts[i])
        elif op == "replace":
            parts[i] = data.draw(segment)
        elif op == "append":
            parts.append(data.draw(segment))
        else:
            parts.insert(0, data.draw(segment))
        return "/" + "/".join(parts)
    return data.draw(st.text("/:%2Fv1abz*", max_size=12))


# --- (a) one route: runtime == oracle -----------------------------------------------------------------


@settings(max_examples=400, deadline=None)  # a loaded CI machine is no deadline
@given(data=st.data(), template=templates())
def test_route_agrees_with_reference_on_matching_paths(
    rt: types.ModuleType, data: st.DataObject, template: Template
) -> None:
    ct = compile_template(template)
    path = matching_path(data, ct)
    expected = oracle_match(ct, path)
    assert expected is not None, (ct.source, path)
    assert runtime_match(rt, build_route(rt, "GET", ct), path) == expected


@settings(max_examples=400, deadline=None)  # a loaded CI machine is no deadline
@given(data=st.data(), template=templates())
def test_route_agrees_with_reference_on_random_paths(
    rt: types.ModuleType, data: st.DataObject, template: Template
) -> None:
    ct = compile_template(template)
    path = soup_path(data, ct)
    assert runtime_match(rt, build_route(rt, "GET", ct), path) == oracle_match(ct, path), (ct.source, path)


# Edge cases; those marked * diverged from the oracle before the runtime fix that came with this file
# (`/` was one empty segment; a malformed escape in a literal position raised a 400 mid-routing; the
# first character of the path was dropped unseen; a literal's escapes were compared undecoded).
EDGES = [
    # template, path, raw captures or None
    ("/**", "/", []),  # *
    ("/{x=**}", "/", [""]),  # *
    ("/{x=**}:v", "/:v", [""]),  # *
    ("/**:v", "/:v", []),  # *
    ("/a/**", "/", None),
    ("/*", "/", None),
    ("/v1/a", "/v1/%ff", None),  # * a non-UTF-8 escape never equals a literal: no match, no 400
    ("/v1/a", "/v1/%zz", None),  # * a malformed escape never equals a literal: no match, no 400
    ("/v1/a", "/v1/a%", None),  # *
    ("/v1/a", "/v1/%61", []),
    ("/v1/{x}", "/v1/%ff", ["%ff"]),  # captured raw; path_value refuses it later
    ("/v1/a", "xv1/a", None),  # * a path that does not start with "/" matches nothing
    ("/v1/a", "v1/a", None),
    ("/v1/a", "", None),
    ("/**", "", None),
    # A literal with escapes means its decoded text (escapes in either case); double encoding is not it.
    ("/a%2Fb", "/a%2Fb", []),
    ("/a%2Fb", "/a%2fb", []),  # *
    ("/a%2Fb", "/a%252Fb", None),  # * was taken
    ("/a%2Fb", "/a/b", None),
    ("/%41", "/A", []),  # *
    ("/%41", "/%61", None),
    ("/%ff", "/%ff", []),  # not UTF-8: only as written
    ("/%ff", "/%FF", None),
    ("/{x=**}/b", "//b", None),
]


@pytest.mark.parametrize(("text", "path", "expected"), EDGES)
def test_route_edges(rt: types.ModuleType, text: str, path: str, expected: list[str] | None) -> None:
    ct = compile_template(parse(text))
    assert oracle_match(ct, path) == expected
    assert runtime_match(rt, build_route(rt, "GET", ct), path) == expected


# --- (b) several routes: resolve picks the most specific ---------------------------------------------

METHODS = ["GET", "POST", "DELETE"]
# A small alphabet so that routes overlap often.
small_plain: st.SearchStrategy[PlainSegment] = st.sampled_from(
    [Literal("a"), Literal("b"), Literal("v1"), Wildcard(), Wildcard(), DeepWildcard()]
)


@st.composite
def small_templates(draw: st.DrawFn) -> Template:
    plain = draw(st.lists(small_plain, min_size=1, max_size=4))
    seen_deep = False
    for i, segment in enumerate(plain):
        if isinstance(segment, DeepWildcard):
            if seen_deep:
                plain[i] = Wildcard()
            seen_deep = True
    segments: list[Segment] = list(plain)
    if draw(st.booleans()):  # one variable over a random range
        start = draw(st.integers(0, len(plain) - 1))
        stop = draw(st.integers(start + 1, len(plain)))
        segments[start:stop] = [Variable(("f",), tuple(plain[start:stop]))]
    return Template(tuple(segments), draw(st.sampled_from([None, None, "x", "y"])))


def route_key(method: str, ct: CompiledTemplate) -> tuple[object, ...]:
    return (method, ct.shape())


@settings(max_examples=400, deadline=None)  # a loaded CI machine is no deadline
@given(
    data=st.data(),
    declared=st.lists(st.tuples(st.sampled_from(METHODS), small_templates()), min_size=1, max_size=7),
)
def test_resolve_picks_most_specific(
    rt: types.ModuleType, data: st.DataObject, declared: list[tuple[str, Template]]
) -> None:
    # Routes with equal method and shape conflict (the Gateway refuses them): keep the first of each.
    unique: dict[tuple[object, ...], tuple[str, CompiledTemplate]] = {}
    for method, template in declared:
        ct = compile_template(template)
        unique.setdefault(route_key(method, ct), (method, ct))
    bindings = list(unique.values())
    routes = [build_route(rt, method, ct, name=f"r{i}") for i, (method, ct) in enumerate(bindings)]
    gateway = rt.Gateway(routes, 1024)

    base = data.draw(st.sampled_from(bindings))[1]
    path = matching_path(data, base) if data.draw(st.booleans()) else soup_path(data, base)
    method = data.draw(st.sampled_from(METHODS))

    # Brute force: every route the oracle matches, most specific first, declaration order among equals.
    matched = sorted(
        (ct.specificity(), i, oracle_match(ct, path))
        for i, (_, ct) in enumerate(bindings)
        if oracle_match(ct, path) is not None
    )
    found = gateway.resolve(method, path)
    same_method = [(i, values) for _, i, values in matched if bindings[i][0] == method]
    if same_method:
        i, values = same_method[0]
        assert not isinstance(found, list), (path, method, [ct.source for _, ct in bindings])
        assert found[0] is routes[i], (path, found[0].template, routes[i].template)
        assert found[1] == values
    else:
        allowed: list[str] = []
        for _, i, _ in matched:
            if bindings[i][0] not in allowed:
                allowed.append(bindings[i][0])
        assert found == allowed


@given(first=small_templates(), second=small_templates(), method=st.sampled_from(METHODS))
def test_gateway_refuses_exactly_the_conflicting_routes(
    rt: types.ModuleType, first: Template, second: Template, method: str
) -> None:
    a, b = compile_template(first), compile_template(second)
    routes = [build_route(rt, method, a, name="a"), build_route(rt, method, b, name="b")]
    if a.shape() == b.shape():
        with pytest.raises(ValueError, match="conflicts with"):
            rt.Gateway(routes, 1024)
    else:
        rt.Gateway(routes, 1024)


@pytest.mark.parametrize(
    ("declared", "path", "winner"),
    [
        (["/v1/{name=**}", "/v1/books/{id}", "/v1/books/special"], "/v1/books/special", 2),
        (["/v1/{name=**}", "/v1/books/{id}", "/v1/books/special"], "/v1/books/other", 1),
        (["/v1/{name=**}", "/v1/books/{id}", "/v1/books/special"], "/v1/books/a/b", 0),
        (["/v1/{name=**}", "/v1/{name=**}:cancel"], "/v1/a/b:cancel", 1),
        (["/v1/*", "/v1/*:cancel"], "/v1/a:cancel", 1),
        (["/v1/*", "/v1/*:cancel"], "/v1/a:other", 0),
        (["/v1/*/b", "/v1/a/*"], "/v1/a/b", 1),
        (["/a/**", "/a/**/b"], "/a/x/b", 1),
        (["/**", "/v1/%62ooks"], "/v1/books", 1),
    ],
)
def test_resolve_examples(rt: types.ModuleType, declared: list[str], path: str, winner: int) -> None:
    routes = [build_route(rt, "GET", compile_template(parse(t)), name=t) for t in declared]
    found = rt.Gateway(routes, 1024).resolve("GET", path)
    assert not isinstance(found, list)
    assert found[0] is routes[winner]


# --- (c) parse -> render -> parse -> compile ----------------------------------------------------------


@given(templates())
@example(parse("/v1/{x=*}:get"))
def test_compile_render_roundtrip(template: Template) -> None:
    ct = compile_template(template)
    again = compile_template(parse(render(template)))
    assert again == ct
    assert compile_template(parse(ct.source)) == ct


# --- the helper against the generated code ------------------------------------------------------------


def test_build_route_mirrors_generated_routes(rt: types.ModuleType, gen_dir: Path) -> None:
    from shop.v1 import (  # type: ignore[import-not-found]
        feed_pb2_gateway_feed_service,
        shop_pb2_gateway_shelf_admin_service,
        shop_pb2_gateway_shop_service,
    )

    generated: list[Any] = []
    for module in (
        shop_pb2_gateway_shop_service,
        shop_pb2_gateway_shelf_admin_service,
        feed_pb2_gateway_feed_service,
    ):
        generated.extend(module.create_app(types.SimpleNamespace(**_STUB_CHANNEL)).routes)
    assert len(generated) > 10
    for route in generated:
        mine = build_route(rt, route.method, compile_template(parse(route.template)), route.name)
        for attr in ("method", "segments", "verb", "captures", "rank", "template", "deep"):
            assert getattr(mine, attr) == getattr(route, attr), (route.template, attr)


def _multicallable(*args: object, **kwargs: object) -> object:
    return object()


_STUB_CHANNEL = {
    kind: _multicallable for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
}

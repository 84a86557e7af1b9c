"""Tests for the pure path-template package protoc_gen_pygateway.httprule."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protoc_gen_pygateway.httprule import (
    Capture,
    CompiledSegment,
    CompiledTemplate,
    DeepWildcard,
    Literal,
    PlainSegment,
    Segment,
    SegmentKind,
    Template,
    TemplateError,
    Variable,
    Wildcard,
    compile_template,
    parse,
    render,
)
from protoc_gen_pygateway.httprule.reference import match, to_regex

L = Literal
W = Wildcard()
DW = DeepWildcard()
LIT = SegmentKind.LITERAL
ONE = CompiledSegment(SegmentKind.SINGLE)
MANY = CompiledSegment(SegmentKind.MULTI)


def lit(value: str) -> CompiledSegment:
    return CompiledSegment(LIT, value)


def compiled(text: str) -> CompiledTemplate:
    return compile_template(parse(text))


# text -> (parsed segments, verb, compiled segments, captures)
VALID: list[tuple[str, tuple[Segment, ...], str | None, tuple[CompiledSegment, ...], tuple[Capture, ...]]] = [
    ("/v1/*", (L("v1"), W), None, (lit("v1"), ONE), ()),
    (
        "/v1/{x=a}",
        (L("v1"), Variable(("x",), (L("a"),))),
        None,
        (lit("v1"), lit("a")),
        (Capture(("x",), 1, 2, False),),
    ),
    (
        "/v1/{name=shelves/*/books/*}",
        (L("v1"), Variable(("name",), (L("shelves"), W, L("books"), W))),
        None,
        (lit("v1"), lit("shelves"), ONE, lit("books"), ONE),
        (Capture(("name",), 1, 5, True),),
    ),
    (
        "/v1/{name=**}",
        (L("v1"), Variable(("name",), (DW,))),
        None,
        (lit("v1"), MANY),
        (Capture(("name",), 1, 2, True),),
    ),
    (
        "/v1/{name=projects/*/files/**}:download",
        (L("v1"), Variable(("name",), (L("projects"), W, L("files"), DW))),
        "download",
        (lit("v1"), lit("projects"), ONE, lit("files"), MANY),
        (Capture(("name",), 1, 5, True),),
    ),
    ("/v1/a/**/b", (L("v1"), L("a"), DW, L("b")), None, (lit("v1"), lit("a"), MANY, lit("b")), ()),
    (
        "/v1/{book.id}:publish",
        (L("v1"), Variable(("book", "id"), (W,))),
        "publish",
        (lit("v1"), ONE),
        (Capture(("book", "id"), 1, 2, False),),
    ),
    ("/v1/a%2Fb/%7e~", (L("v1"), L("a%2Fb"), L("%7e~")), None, (lit("v1"), lit("a%2Fb"), lit("%7e~")), ()),
    ("/x:a%3Ab", (L("x"),), "a%3Ab", (lit("x"),), ()),
    (
        "/a=b/{k=c=d}",
        (L("a=b"), Variable(("k",), (L("c=d"),))),
        None,
        (lit("a=b"), lit("c=d")),
        (Capture(("k",), 1, 2, False),),
    ),
    ("/@!$&'()+,;=-._~", (L("@!$&'()+,;=-._~"),), None, (lit("@!$&'()+,;=-._~"),), ()),
    (
        "/{A_1.b}/{c}/{d=*}",
        (Variable(("A_1", "b"), (W,)), Variable(("c",), (W,)), Variable(("d",), (W,))),
        None,
        (ONE, ONE, ONE),
        (Capture(("A_1", "b"), 0, 1, False), Capture(("c",), 1, 2, False), Capture(("d",), 2, 3, False)),
    ),
    ("/**", (DW,), None, (MANY,), ()),
    (
        "/{_x=**}/b:v",
        (Variable(("_x",), (DW,)), L("b")),
        "v",
        (MANY, lit("b")),
        (Capture(("_x",), 0, 1, True),),
    ),
]


@pytest.mark.parametrize(("text", "segments", "verb", "flat", "captures"), VALID, ids=[v[0] for v in VALID])
def test_valid(
    text: str,
    segments: tuple[Segment, ...],
    verb: str | None,
    flat: tuple[CompiledSegment, ...],
    captures: tuple[Capture, ...],
) -> None:
    template = parse(text)
    assert template == Template(segments, verb)
    assert parse(render(template)) == template
    ct = compile_template(template)
    assert ct.segments == flat
    assert ct.captures == captures
    assert ct.verb == verb
    assert ct.source == render(template)


def test_canonical_render() -> None:
    assert render(parse("/v1/{x=*}")) == "/v1/{x}"
    assert parse("/v1/{x=*}") == parse("/v1/{x}")
    assert compiled("/v1/{x=*}:get").source == "/v1/{x}:get"


INVALID = [
    "",
    "/",
    "//",
    "/{}",
    "/a/",
    "/a//b",
    "/:verb",
    "/{var}:",
    "/a/{x=var:verb}",
    "/{var=a/{nested=b}}",
    "/a{x}",
    "/{x}a",
    "a/b",
    "/a:b c",
    "/a:b/c",
    "/a:{x}",
    "/a:b:c",
    "/a:*",
    "/{x}/{x}",
    "/{a.b}/{a.b}",
    "/{a}/{a.b}",
    "/{a.b.c}/{a.b}",
    "/**/**",
    "/{a=**}/{b=**}",
    "/{a=**}/**",
    "/***",
    "/a*",
    "/*a",
    "/a b",
    "/a?b",
    "/a#b",
    "/a[0]",
    "/caf\u00e9",
    "/a\x00",
    "/a%",
    "/a%2",
    "/a%2g",
    "/{1x}",
    "/{x.}",
    "/{.x}",
    "/{x-y}",
    "/{x",
    "/{x=a",
    "/{x=}",
    "/{x=a/}",
    "/{x=/a}",
    "/a}",
    "/{x}}",
    "/a/:v",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid(text: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse(text)
    message = str(info.value)
    assert f'invalid path template "{text}": ' in message
    assert info.value.template == text


def test_error_message_format() -> None:
    with pytest.raises(TemplateError, match=r'^invalid path template "/a//b": empty segment at offset 3$'):
        parse("/a//b")


@pytest.mark.parametrize(
    "template",
    [
        Template((), None),
        Template((L(""),), None),
        Template((L("a/b"),), None),
        Template((L("a"),), ""),
        Template((L("a"),), "b/c"),
        Template((Variable((), (W,)),), None),
        Template((Variable(("x",), ()),), None),
        Template((Variable(("1",), (W,)),), None),
        Template((Variable(("x",), (Variable(("y",), (W,)),)),), None),  # type: ignore[arg-type]
        Template((DW, Variable(("x",), (DW,))), None),
        Template((Variable(("x",), (W,)), Variable(("x", "y"), (W,))), None),
    ],
)
def test_compile_rejects_hand_built(template: Template) -> None:
    with pytest.raises(TemplateError):
        compile_template(template)


def test_shape() -> None:
    assert compiled("/v1/{a}").shape() == compiled("/v1/{b=*}").shape()
    assert compiled("/v1/{a}").shape() == compiled("/v1/*").shape()
    assert compiled("/v1/{a=x/**}:v").shape() == compiled("/v1/x/{b=**}:v").shape()
    assert compiled("/v1/{a}:get").shape() != compiled("/v1/{a}:put").shape()
    assert compiled("/v1/{a}:get").shape() != compiled("/v1/{a}").shape()
    assert compiled("/v1/{a}").shape() != compiled("/v2/{a}").shape()
    assert compiled("/v1/{a}").shape() != compiled("/v1/{a=**}").shape()
    assert compiled("/v1/a").shape() != compiled("/v1/*").shape()


@pytest.mark.parametrize(
    "ordered",
    [
        ["/v1/books/special", "/v1/books/{id}", "/v1/{name=**}"],
        ["/v1/books/*", "/v1/*/special", "/v1/**"],
        ["/a/**/b", "/a/**"],  # longer first once the common prefix ties
        ["/a/*:v", "/a/*"],  # verb first
        ["/a/**:v", "/a/**/*"],  # verb beats "more segments"
        ["/a/**/*:v", "/a/**:v"],  # same verb-ness: more segments first
        ["/*/*/*:v", "/a/b/*"],  # verb beats literals
        ["/v1/{name=**}:cancel", "/v1/{a=**}/{b}", "/v1/{name=**}"],
        ["/v1/*/*/*", "/v1/**"],
    ],
)
def test_specificity(ordered: list[str]) -> None:
    templates = [compiled(t) for t in ordered]
    assert sorted(reversed(templates), key=CompiledTemplate.specificity) == templates
    keys = [t.specificity() for t in templates]
    assert keys == sorted(set(keys))  # strictly increasing


def test_specificity_ignores_names() -> None:
    assert compiled("/v1/{a}").specificity() == compiled("/v1/*").specificity()


# --- reference matcher ------------------------------------------------------------------------

REFERENCE = [
    # template, path, expected captures (None = no match)
    ("/v1/*", "/v1/x", {}),
    ("/v1/*", "/v1/", None),
    ("/v1/*", "/v1/x/y", None),
    ("/v1/*", "/v1/a:b", {}),
    ("/v1/{x=a}", "/v1/a", {("x",): "a"}),
    ("/v1/{x=a}", "/v1/b", None),
    ("/v1/{name=shelves/*/books/*}", "/v1/shelves/s1/books/b%2F1", {("name",): "shelves/s1/books/b%2F1"}),
    ("/v1/{name=shelves/*/books/*}", "/v1/shelves/s1/books", None),
    ("/v1/{name=**}", "/v1/a/b/c", {("name",): "a/b/c"}),
    ("/v1/{name=**}", "/v1", {("name",): ""}),
    ("/v1/{name=**}", "/v1/", None),
    ("/v1/{name=**}", "/v1x", None),
    (
        "/v1/{name=projects/*/files/**}:download",
        "/v1/projects/p/files:download",
        {("name",): "projects/p/files"},
    ),
    (
        "/v1/{name=projects/*/files/**}:download",
        "/v1/projects/p/files/a/b.txt:download",
        {("name",): "projects/p/files/a/b.txt"},
    ),
    ("/v1/{name=projects/*/files/**}:download", "/v1/projects/p/files/a", None),
    ("/v1/a/**/b", "/v1/a/b", {}),
    ("/v1/a/**/b", "/v1/a/x/y/b", {}),
    ("/v1/a/**/b", "/v1/ab", None),
    ("/v1/a/**/b", "/v1/a/x/b/c", None),
    ("/v1/{book.id}:publish", "/v1/42:publish", {("book", "id"): "42"}),
    ("/v1/{book.id}:publish", "/v1/4:2:publish", {("book", "id"): "4:2"}),
    ("/v1/{book.id}:publish", "/v1/42", None),
    ("/v1/{book.id}:publish", "/v1/:publish", None),
    ("/v1/{book.id}", "/v1/42:publish", {("book", "id"): "42:publish"}),
    ("/v1/a%2Fb", "/v1/a%2Fb", {}),
    ("/v1/a%2Fb", "/v1/a/b", None),
    ("/**", "/", {}),
    ("/**", "/a/b", {}),
    ("/{x=**}:v", "/:v", {("x",): ""}),
    ("/{x=**}/b", "/b", {("x",): ""}),
    ("/{x=**}/b", "/a/c/b", {("x",): "a/c"}),
    ("/{x=**}/b", "//b", None),
    ("/a/{x=**/c}/d", "/a/c/d", {("x",): "c"}),
    ("/a/{x=**/c}/d", "/a/p/q/c/d", {("x",): "p/q/c"}),
    ("/{a}/{b=x/*}/{c=**}", "/1/x/2/3/4", {("a",): "1", ("b",): "x/2", ("c",): "3/4"}),
]


@pytest.mark.parametrize(("text", "path", "expected"), REFERENCE)
def test_reference(text: str, path: str, expected: dict[tuple[str, ...], str] | None) -> None:
    assert match(compiled(text), path) == expected


def test_reference_group_names() -> None:
    m = to_regex(compiled("/{a}/{b=x/*}")).match("/1/x/2")
    assert m is not None
    assert m.groupdict() == {"c0": "1", "c1": "x/2"}


# --- properties -------------------------------------------------------------------------------

PCHARS = sorted(set("abcXYZ019-._~!$&'()+,;=@"))
literals = st.lists(
    st.one_of(
        st.sampled_from(PCHARS), st.text("0123456789abcdefABCDEF", min_size=2, max_size=2).map("%".__add__)
    ),
    min_size=1,
    max_size=5,
).map("".join)
idents = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,4}", fullmatch=True)
plain: st.SearchStrategy[PlainSegment] = st.one_of(literals.map(Literal), st.just(W), st.just(DW))
variables = st.builds(
    Variable,
    st.lists(idents, min_size=1, max_size=3).map(tuple),
    st.lists(plain, min_size=1, max_size=3).map(tuple),
)


@st.composite
def templates(draw: st.DrawFn) -> Template:
    """Valid templates: only the first ** is kept, field paths get unique first components."""
    raw = draw(st.lists(st.one_of(plain, variables), min_size=1, max_size=6))
    deep_seen = False

    def one_deep(segment: PlainSegment) -> PlainSegment:
        nonlocal deep_seen
        if isinstance(segment, DeepWildcard):
            if deep_seen:
                return W
            deep_seen = True
        return segment

    segments: list[Segment] = []
    for i, segment in enumerate(raw):
        if isinstance(segment, Variable):
            path = (f"{segment.field_path[0]}_{i}", *segment.field_path[1:])
            segments.append(Variable(path, tuple(one_deep(s) for s in segment.segments)))
        else:
            segments.append(one_deep(segment))
    return Template(tuple(segments), draw(st.none() | literals))


@given(templates())
def test_render_parse_roundtrip(template: Template) -> None:
    text = render(template)
    assert parse(text) == template
    assert compile_template(template).source == text


@given(st.text())
def test_parse_only_raises_template_error(text: str) -> None:
    try:
        template = parse(text)
    except TemplateError as err:
        assert text in str(err)
    else:
        assert parse(render(template)) == template


# The syntax (not the semantic rules) as one regex, as an independent oracle for the parser.
_LIT = r"(?:[A-Za-z0-9\-._~!$&'()+,;=@]|%[0-9A-Fa-f]{2})+"
_SEG = rf"(?:\*\*|\*|{_LIT})"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_VAR = rf"\{{{_IDENT}(?:\.{_IDENT})*(?:={_SEG}(?:/{_SEG})*)?\}}"
SYNTAX = re.compile(rf"/(?:{_SEG}|{_VAR})(?:/(?:{_SEG}|{_VAR}))*(?::{_LIT})?")


@given(st.text(alphabet="/{}*:=.%_aZ9 2F", max_size=20))
def test_parse_grammar_alphabet(text: str) -> None:
    try:
        template = parse(text)
    except TemplateError as err:
        assert text in str(err)
        semantic = err.offset is None
        assert bool(SYNTAX.fullmatch(text)) == semantic
    else:
        assert SYNTAX.fullmatch(text)
        assert parse(render(template)) == template
        to_regex(compile_template(template))


path_segments = st.text("abz09-%~=", min_size=1, max_size=4)


@given(st.data(), templates())
def test_reference_matches_generated_paths(data: st.DataObject, template: Template) -> None:
    ct = compile_template(template)
    parts: list[list[str]] = []
    for segment in ct.segments:
        if segment.kind is SegmentKind.LITERAL:
            parts.append([segment.value])
        elif segment.kind is SegmentKind.SINGLE:
            parts.append([data.draw(path_segments)])
        else:
            parts.append(data.draw(st.lists(path_segments, max_size=3)))
    path = "/" + "/".join(p for part in parts for p in part)
    if ct.verb is not None:
        path += ":" + ct.verb
    expected = {
        c.field_path: "/".join(p for part in parts[c.start : c.stop] for p in part) for c in ct.captures
    }
    assert match(ct, path) == expected

"""Parse and render ``google.api.http`` path templates.

Grammar (google/api/http.proto)::

    Template  = "/" Segments [ Verb ] ;
    Segments  = Segment { "/" Segment } ;
    Segment   = "*" | "**" | LITERAL | Variable ;
    Variable  = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb      = ":" LITERAL ;

Lexical choices made here:

* IDENT is ``[A-Za-z_][A-Za-z0-9_]*``.
* LITERAL (also used for the verb) is a non-empty run of RFC 3986 ``pchar`` minus the characters
  that carry meaning in the template grammar: ASCII letters and digits, ``- . _ ~``, the
  sub-delims ``! $ & ' ( ) + , ; =`` (``*`` excluded), ``@``, and ``%XX`` escapes with two hex
  digits. ``/ { } * :`` and everything else (space, ``? # [ ]``, control and non-ASCII
  characters, a bare ``%``) are rejected. ``=`` is allowed: only the first ``=`` inside a
  variable separates the field path, so ``{x=a=b}`` binds ``x`` to the literal ``a=b``.
* ``"/"`` alone is invalid: the grammar requires at least one segment.

Semantic rules (checked by :func:`validate`, which :func:`parse` and the compiler both run):
at most one ``**`` per template (a ``**`` may be followed by further segments), and no field
may be bound twice, either repeated (``/{x}/{x}``) or nested (``/{a}/{a.b}``).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "DeepWildcard",
    "Literal",
    "PlainSegment",
    "Segment",
    "Template",
    "TemplateError",
    "Variable",
    "Wildcard",
    "parse",
    "render",
    "validate",
]

_PCHARS = frozenset(string.ascii_letters + string.digits + "-._~" + "!$&'()+,;=" + "@")
_HEX = frozenset(string.hexdigits)
_LITERAL_RE = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()+,;=@]|%[0-9A-Fa-f]{2})+")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateError(ValueError):
    """An invalid path template; ``str(err)`` names the template and the problem.

    ``offset`` is where a syntax error was found; it is ``None`` for semantic errors
    (repeated or overlapping fields, two ``**``) and for hand-built templates.
    """

    def __init__(self, template: str, reason: str, offset: int | None = None) -> None:
        self.template = template
        self.reason = reason
        self.offset = offset
        where = "" if offset is None else f" at offset {offset}"
        super().__init__(f'invalid path template "{template}": {reason}{where}')


@dataclass(frozen=True)
class Literal:
    """A literal segment, as written (percent-escapes kept)."""

    value: str


@dataclass(frozen=True)
class Wildcard:
    """``*``: exactly one non-empty segment."""


@dataclass(frozen=True)
class DeepWildcard:
    """``**``: zero or more segments."""


PlainSegment: TypeAlias = Literal | Wildcard | DeepWildcard


@dataclass(frozen=True)
class Variable:
    """``{a.b=segments}``; ``{x}`` parses as ``segments == (Wildcard(),)``."""

    field_path: tuple[str, ...]
    segments: tuple[PlainSegment, ...]


Segment: TypeAlias = Literal | Wildcard | DeepWildcard | Variable


@dataclass(frozen=True)
class Template:
    segments: tuple[Segment, ...]
    verb: str | None


def parse(text: str) -> Template:
    """Parse ``text``; raise :class:`TemplateError` (never anything else) if it is invalid."""
    template = _Parser(text).template()
    validate(template, text)
    return template


def render(template: Template) -> str:
    """Canonical text of ``template``: ``parse(render(t)) == t`` for every valid ``t``."""
    text = "/" + "/".join(_render_segment(s) for s in template.segments)
    return text if template.verb is None else f"{text}:{template.verb}"


def _render_segment(segment: Segment) -> str:
    if isinstance(segment, Literal):
        return segment.value
    if isinstance(segment, Wildcard):
        return "*"
    if isinstance(segment, DeepWildcard):
        return "**"
    name = ".".join(segment.field_path)
    if segment.segments == (Wildcard(),):
        return "{" + name + "}"
    return "{" + name + "=" + "/".join(_render_segment(s) for s in segment.segments) + "}"


def validate(template: Template, text: str | None = None) -> None:
    """Check ``template`` (possibly built by hand) against the grammar and the semantic rules.

    ``text`` is the source named in error messages; it defaults to ``render(template)``.
    """
    source = render(template) if text is None else text

    def fail(reason: str) -> TemplateError:
        return TemplateError(source, reason)

    if not template.segments:
        raise fail("at least one segment is required")
    if template.verb is not None and not _LITERAL_RE.fullmatch(template.verb):
        raise fail(f"invalid verb {template.verb!r}")
    deep = 0
    bound: list[tuple[str, ...]] = []
    for segment in template.segments:
        plain: tuple[Segment, ...] = (segment,)
        if isinstance(segment, Variable):
            path = segment.field_path
            if not path or not all(_IDENT_RE.fullmatch(p) for p in path):
                raise fail(f"invalid field path {'.'.join(path)!r}")
            for other in bound:
                if other == path:
                    raise fail(f"field {'.'.join(path)!r} is bound more than once")
                shorter, longer = sorted((other, path), key=len)
                if longer[: len(shorter)] == shorter:
                    raise fail(f"fields {'.'.join(shorter)!r} and {'.'.join(longer)!r} overlap")
            bound.append(path)
            if not segment.segments:
                raise fail(f"variable {'.'.join(path)!r} has no segments")
            plain = segment.segments
        for part in plain:
            if isinstance(part, Variable):
                raise fail("variables cannot be nested")
            if isinstance(part, Literal) and not _LITERAL_RE.fullmatch(part.value):
                raise fail(f"invalid literal {part.value!r}")
            if isinstance(part, DeepWildcard):
                deep += 1
    if deep > 1:
        raise fail("at most one '**' is allowed")


class _Parser:
    """Recursive descent over ``text``; every helper advances ``self.pos``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, reason: str, offset: int | None = None) -> TemplateError:
        return TemplateError(self.text, reason, self.pos if offset is None else offset)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def template(self) -> Template:
        if self.peek() != "/":
            raise self.error("must start with '/'")
        if self.text == "/":
            raise self.error("at least one segment is required", 1)
        self.pos += 1
        segments = self.segments(in_variable=False)
        verb: str | None = None
        if self.peek() == ":":
            self.pos += 1
            if self.pos == len(self.text):
                raise self.error("empty verb")
            verb = self.literal("verb")
        if self.pos != len(self.text):
            raise self.error(f"unexpected character {self.peek()!r}")
        return Template(tuple(segments), verb)

    def segments(self, *, in_variable: bool) -> list[Segment]:
        segments = [self.segment(in_variable=in_variable)]
        while self.peek() == "/":
            self.pos += 1
            segments.append(self.segment(in_variable=in_variable))
        return segments

    def segment(self, *, in_variable: bool) -> Segment:
        c = self.peek()
        if c == "*":
            if self.text.startswith("**", self.pos):
                self.pos += 2
                return DeepWildcard()
            self.pos += 1
            return Wildcard()
        if c == "{":
            if in_variable:
                raise self.error("variables cannot be nested")
            return self.variable()
        if c in ("", "/", ":", "}"):
            raise self.error("empty segment")
        return Literal(self.literal("segment"))

    def variable(self) -> Variable:
        self.pos += 1  # "{"
        path = [self.ident()]
        while self.peek() == ".":
            self.pos += 1
            path.append(self.ident())
        segments: list[Segment] = [Wildcard()]
        if self.peek() == "=":
            self.pos += 1
            segments = self.segments(in_variable=True)
        if self.peek() == ":":
            raise self.error("a verb cannot appear inside a variable")
        if self.peek() != "}":
            raise self.error("expected '}'" if self.peek() == "" else f"unexpected character {self.peek()!r}")
        self.pos += 1
        # in_variable=True guarantees no nested Variable; the filter only narrows the type.
        plain = tuple(s for s in segments if not isinstance(s, Variable))
        return Variable(tuple(path), plain)

    def ident(self) -> str:
        m = _IDENT_RE.match(self.text, self.pos)
        if m is None:
            raise self.error("expected a field name")
        self.pos = m.end()
        return m.group()

    def literal(self, what: str) -> str:
        """Consume a LITERAL; stops at the first character that cannot belong to one."""
        start = self.pos
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in _PCHARS:
                self.pos += 1
            elif c == "%":
                if not (
                    self.pos + 2 < len(text) and text[self.pos + 1] in _HEX and text[self.pos + 2] in _HEX
                ):
                    raise self.error("'%' must be followed by two hex digits")
                self.pos += 3
            else:
                break
        if self.pos == start or (what == "verb" and self.pos != len(text)):
            raise self.error(f"invalid character {self.peek()!r} in {what}")
        return text[start : self.pos]

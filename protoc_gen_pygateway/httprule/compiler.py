"""Compile a parsed :class:`~.parser.Template` into a flat segment list plus captures."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .parser import DeepWildcard, Literal, PlainSegment, Template, Variable, Wildcard, render, validate

__all__ = ["Capture", "CompiledSegment", "CompiledTemplate", "SegmentKind", "compile_template"]


class SegmentKind(enum.Enum):
    LITERAL = "literal"  # matches its value exactly
    SINGLE = "single"  # *: one non-empty segment
    MULTI = "multi"  # **: zero or more segments


@dataclass(frozen=True)
class CompiledSegment:
    kind: SegmentKind
    value: str = ""  # only for LITERAL, as written (percent-escapes kept)


@dataclass(frozen=True)
class Capture:
    """A variable: it binds ``segments[start:stop]`` of the compiled template to ``field_path``.

    ``multi`` is true when the capture spans several template segments or contains ``**``; such
    values keep reserved characters percent-encoded at run time, single-segment ones are fully
    decoded.
    """

    field_path: tuple[str, ...]
    start: int
    stop: int
    multi: bool


# Rank of each segment kind in specificity(); _END closes the rank list.
_RANK = {SegmentKind.LITERAL: 0, SegmentKind.SINGLE: 1, SegmentKind.MULTI: 2}
_END = 3


@dataclass(frozen=True)
class CompiledTemplate:
    segments: tuple[CompiledSegment, ...]
    captures: tuple[Capture, ...]
    verb: str | None
    source: str  # canonical rendered template

    def shape(self) -> tuple[object, ...]:
        """What a request can match, ignoring variable names: equal shapes are conflicting routes.

        ``/v1/{a}``, ``/v1/{b=*}`` and ``/v1/*`` all have the same shape.
        """
        return (self.segments, self.verb)

    def specificity(self) -> tuple[int, ...]:
        """Sort key: when several templates match a request, the smallest key is tried first.

        The key is ``(0 if verb else 1, rank of every segment..., 3)`` with ranks literal 0,
        ``*`` 1, ``**`` 2. Comparing keys therefore means:

        1. a template with a verb comes first: the verb is an exact suffix match, so a custom
           method (``/v1/{name=**}:cancel``) is never swallowed by a wildcard route;
        2. then segment by segment from the left, a literal beats ``*``, which beats ``**``;
        3. if one rank list is a prefix of the other, the longer template comes first (3 is
           above every rank), e.g. ``/a/**/b`` before ``/a/**``.

        The verb goes first because "verb before no verb" and "more segments first" cannot
        both be decided after a left-to-right scan in a flat key (``/a/**:v`` vs ``/a/**/*``
        vs ``/a/**/*:v``). Templates with equal keys that can match the same request have the
        same :meth:`shape`.
        """
        return (0 if self.verb is not None else 1, *(_RANK[s.kind] for s in self.segments), _END)


def compile_template(template: Template) -> CompiledTemplate:
    """Flatten ``template``; raise :class:`~.parser.TemplateError` if it is not valid."""
    validate(template)
    segments: list[CompiledSegment] = []
    captures: list[Capture] = []
    for segment in template.segments:
        if isinstance(segment, Variable):
            start = len(segments)
            segments.extend(_compile_plain(s) for s in segment.segments)
            multi = len(segment.segments) > 1 or DeepWildcard() in segment.segments
            captures.append(Capture(segment.field_path, start, len(segments), multi))
        else:
            segments.append(_compile_plain(segment))
    return CompiledTemplate(tuple(segments), tuple(captures), template.verb, render(template))


def _compile_plain(segment: PlainSegment) -> CompiledSegment:
    if isinstance(segment, Literal):
        return CompiledSegment(SegmentKind.LITERAL, segment.value)
    if isinstance(segment, Wildcard):
        return CompiledSegment(SegmentKind.SINGLE)
    return CompiledSegment(SegmentKind.MULTI)

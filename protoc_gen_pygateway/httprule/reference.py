"""A deliberately simple reference matcher (a regex per template), for tests and fuzzing.

The regex runs over the raw, still percent-encoded request path. A path is ``"/"`` followed by
its segments joined with ``"/"`` and, when the template has a verb, ``":" + verb``. Segments are
non-empty and contain no ``"/"``; literals match exactly as written (no escape normalisation);
``*`` matches one segment, ``**`` zero or more. Without a verb the last segment may contain
``":"``. Zero segments is the path ``"/"`` (only ``/**`` or ``/{x=**}`` match it).
"""

from __future__ import annotations

import re

from .compiler import CompiledSegment, CompiledTemplate, SegmentKind

__all__ = ["group_name", "match", "to_regex"]

_ONE = "[^/]+"
_MANY = f"{_ONE}(?:/{_ONE})*"  # one or more segments; "zero" is handled by the caller


def group_name(index: int) -> str:
    """Name of the regex group for ``ct.captures[index]``."""
    return f"c{index}"


def to_regex(ct: CompiledTemplate) -> re.Pattern[str]:
    """A regex matching exactly the paths ``ct`` matches, one named group per capture.

    A capture that is a bare ``**`` matching zero segments leaves its group unset (``None``).
    """
    # Chunks: each capture's segment range, and every uncaptured segment on its own.
    chunks: list[tuple[int, int, int | None]] = []
    pos = 0
    for n, capture in enumerate(ct.captures):
        chunks.extend((i, i + 1, None) for i in range(pos, capture.start))
        chunks.append((capture.start, capture.stop, n))
        pos = capture.stop
    chunks.extend((i, i + 1, None) for i in range(pos, len(ct.segments)))

    out = "/"
    sep = ""  # separator before the next chunk
    for n, (start, stop, index) in enumerate(chunks):
        segments = ct.segments[start:stop]
        if segments == (CompiledSegment(SegmentKind.MULTI),):
            # A chunk that may be empty takes one adjacent "/" into its optional group.
            inner = _MANY if index is None else f"(?P<{group_name(index)}>{_MANY})"
            if len(chunks) == 1:
                out += f"(?:{inner})?"
            elif n == 0:
                out += f"(?:{inner}/)?"
                continue  # sep stays "": the "/" after it is already consumed
            else:
                out += f"(?:/{inner})?"
        else:
            body = _chunk(segments)
            out += sep + (body if index is None else f"(?P<{group_name(index)}>{body})")
        sep = "/"
    if ct.verb is not None:
        out += ":" + re.escape(ct.verb)
    return re.compile(rf"\A{out}\Z")


def _chunk(segments: tuple[CompiledSegment, ...]) -> str:
    """Regex for a non-empty run of segments, without leading or trailing "/"."""
    bodies = [re.escape(s.value) if s.kind is SegmentKind.LITERAL else _ONE for s in segments]
    kinds = [s.kind for s in segments]
    if SegmentKind.MULTI not in kinds:
        return "/".join(bodies)
    k = kinds.index(SegmentKind.MULTI)
    left, right = "/".join(bodies[:k]), "/".join(bodies[k + 1 :])
    if k == 0:
        return f"(?:{_MANY}/)?{right}"
    if k == len(bodies) - 1:
        return f"{left}(?:/{_MANY})?"
    return f"{left}(?:/{_MANY})?/{right}"


def match(ct: CompiledTemplate, path: str) -> dict[tuple[str, ...], str] | None:
    """Captured raw values by field path if ``path`` matches ``ct``, else ``None``."""
    m = to_regex(ct).match(path)
    if m is None:
        return None
    return {c.field_path: m.group(group_name(i)) or "" for i, c in enumerate(ct.captures)}

"""Routes: compiled path templates matched against request paths (one Route per binding)."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .errors import HttpError
from .values import _unescape

if TYPE_CHECKING:
    from .asgi import Handler
    from .options import HeaderPolicy


#: Segment kinds: a literal, `*` (one segment), `**` (the rest, at most one per template).
LITERAL, SINGLE, MULTI = 0, 1, 2


class Capture(NamedTuple):
    """One path variable: the segments `[start, stop)` it takes; `multi` if it may span several."""

    start: int
    stop: int
    multi: bool


def segments(*texts: str) -> tuple[tuple[int, str], ...]:
    """A template's segments as the generated route table writes them, e.g. `segments("v1", "*", "**")`:
    `*` and `**` are the wildcards (never literals: the template grammar has no such literal), anything
    else a literal. Returns the (kind, literal) pairs `Route` matches with."""
    kinds = {"*": SINGLE, "**": MULTI}
    return tuple((kinds[t], "") if t in kinds else (LITERAL, t) for t in texts)


class Route:
    """One binding: HTTP method + compiled path template -> handler.

    `segments` are (kind, literal) pairs; at most one is MULTI (`**`), which takes as many request
    segments as the others leave. `captures` are (start, stop, multi) ranges over `segments`.
    """

    __slots__ = (
        "captures",
        "deep",
        "handler",
        "method",
        "name",
        "policy",
        "rank",
        "segments",
        "template",
        "unary",
        "verb",
        "websocket",
    )

    def __init__(
        self,
        method: str,
        segments: tuple[tuple[int, str], ...],
        verb: str | None,
        captures: tuple[Capture, ...],
        rank: tuple[int, ...],
        handler: Handler,
        name: str,
        template: str,
        websocket: Handler | None = None,
        unary: bool = False,
    ) -> None:
        self.method = method
        self.segments = segments
        self.verb = verb
        self.captures = captures
        self.rank = rank
        self.handler = handler
        self.name = name
        self.template = template
        #: Handler for a WebSocket handshake on this path (streaming RPCs only), else None.
        self.websocket = websocket
        #: A unary RPC's route (its handler calls `unary_call` or `http_body_call`): with metrics the
        #: only observer, such a request is tallied on its Request, without an observe.Exchange.
        self.unary = unary
        #: The generated module's header policy (set by its Gateway; CORS reads it for preflights).
        self.policy: HeaderPolicy | None = None
        self.deep = next((i for i, (kind, _) in enumerate(segments) if kind == MULTI), -1)

    def match(self, parts: list[str], verb: str | None) -> list[str] | None:
        """Raw (still percent-encoded) captured values, or None."""
        if verb != self.verb:
            return None
        segments = self.segments
        extra = len(parts) - len(segments)
        if (extra != 0) if self.deep < 0 else (extra < -1):
            return None
        for i, (kind, literal) in enumerate(segments):
            if kind == MULTI:
                continue
            part = parts[i if self.deep < 0 or i < self.deep else i + extra]
            if kind == LITERAL:
                if part != literal and not (("%" in part or "%" in literal) and _same_text(part, literal)):
                    return None
            elif not part:
                return None
        if self.deep >= 0 and "" in parts[self.deep : self.deep + extra + 1]:
            return None
        values = []
        for start, stop, _ in self.captures:
            if self.deep >= 0:
                start = start if start <= self.deep else start + extra
                stop = stop if stop <= self.deep else stop + extra
            values.append("/".join(parts[start:stop]))
        return values


def _index_by_first_literal(routes: tuple[Route, ...]) -> dict[str, tuple[Route, ...]]:
    """First literal segment -> the routes (in rank order) a path starting with it can match; key ""
    -> the routes any path can match (a wildcard or percent-encoded first segment)."""

    def indexed(route: Route) -> bool:
        return bool(route.segments) and route.segments[0][0] == LITERAL and "%" not in route.segments[0][1]

    firsts = {route.segments[0][1] for route in routes if indexed(route)}
    index: dict[str, list[Route]] = {first: [] for first in (*sorted(firsts), "")}
    for route in routes:
        for first in (route.segments[0][1],) if indexed(route) else index:
            index[first].append(route)
    return {first: tuple(bucket) for first, bucket in index.items()}


def _split_path(path: str) -> tuple[list[str], list[str] | None, str | None]:
    """Split a raw path into segments; with a `:verb` on the last segment, also the verb-less variant.

    `/` (and `/:verb` without its verb) has zero segments: only `/**` and `/{x=**}` match it.
    """
    parts = path[1:].split("/") if len(path) > 1 else []
    last = parts[-1] if parts else ""
    colon = last.rfind(":")
    if colon < 0:
        return parts, None, None
    verbless = [*parts[:-1], last[:colon]]
    return parts, [] if verbless == [""] else verbless, last[colon + 1 :]


def _same_text(part: str, literal: str) -> bool:
    """Whether a request segment and a template literal percent-decode to the same text. A malformed or
    non-UTF-8 escape equals no literal: the route does not match, and routing goes on."""
    try:
        return _unescape(part) == _unescape(literal)
    except HttpError:
        return False

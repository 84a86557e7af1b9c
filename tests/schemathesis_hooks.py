"""schemathesis hooks for tests/test_openapi_e2e.py (loaded by `st run` through SCHEMATHESIS_HOOKS).

- NDJSON in both directions: a client-streaming request body is a sequence of JSON lines, and an NDJSON
  response is read as the array of its lines, which is what the document's `schema` for
  `application/x-ndjson` describes (OpenAPI 3.2's reading of a sequential media type's `schema`).
- Path parameters often name the demo's seeded shelves and books, so that operations reach real data
  (and replies with every field set) instead of NOT_FOUND.
- The demo backend's test knobs stay small: Watch streams at most 5 events, 10 ms apart, with little
  padding; `fail_code`/`code` (Watch and Fail, whose whole purpose is to fail with the code they are
  given) are kept only when they map to a 4xx status, so every 5xx in the run is the gateway's own.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import schemathesis

NDJSON = "application/x-ndjson"

#: gRPC codes whose HTTP status is a 4xx (CANCELLED 499, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
#: PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNAUTHENTICATED).
CLIENT_ERROR_CODES = frozenset({0, 1, 3, 5, 6, 7, 8, 9, 10, 11, 16})
#: Watch's knobs (JSON and proto names) and their bounds.
BOUNDS = {"count": 5, "intervalMs": 10, "interval_ms": 10, "padding": 64, "failAfter": 5, "fail_after": 5}
CODE_KNOBS = ("failCode", "fail_code", "code")
#: Path parameter -> the seeded values it is replaced by (two times out of three).
SEEDED = {
    "shelvesId": ("fiction", "science"),
    "shelves_id": ("fiction", "science"),
    "booksId": ("dune", "cosmos"),
    "books_id": ("dune", "cosmos"),
}


@schemathesis.serializer(NDJSON)
def ndjson_body(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode("utf-8") + b"\n" for item in items)


@schemathesis.deserializer(NDJSON)
def ndjson_lines(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> Any:
    # Lines end at "\n" only: str.splitlines would also split at U+0085, U+2028, ... inside JSON strings.
    return [json.loads(line) for line in response.content.decode("utf-8").split("\n") if line.strip()]


def _small(value: Any, bound: int) -> Any:
    """An integer in [0, bound] standing for `value` (scalar or the elements of a repeated value)."""
    if isinstance(value, list):
        return [_small(v, bound) for v in value]
    try:
        return min(abs(int(value)), bound)
    except (TypeError, ValueError, OverflowError):
        return 0


def _code(value: Any) -> Any:
    if isinstance(value, list):
        return [_code(v) for v in value]
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return 3
    return number if number in CLIENT_ERROR_CODES else 3


def _tame(values: Any) -> None:
    if not isinstance(values, dict):
        return
    for key, bound in BOUNDS.items():
        if key in values:
            values[key] = _small(values[key], bound)
    for key in CODE_KNOBS:
        if key in values:
            values[key] = _code(values[key])


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    operation = context.operation
    op_id = operation.definition.raw.get("operationId", "") if operation is not None else ""
    if op_id.startswith(("FeedService_Watch", "ShopService_Fail")):
        _tame(case.query)
        _tame(case.body)
    return case


@schemathesis.hook
def map_path_parameters(context: schemathesis.HookContext, path_parameters: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(path_parameters, dict):  # negative generation may produce anything
        return path_parameters
    if context.operation is not None and context.operation.method.upper() == "DELETE":
        return path_parameters  # the seeded books stay for the other operations
    for name, seeded in SEEDED.items():
        value = path_parameters.get(name)
        if isinstance(value, str):
            # A choice fixed by the generated value: the run stays reproducible under its seed.
            pick = zlib.crc32(value.encode("utf-8", "surrogatepass")) % (len(seeded) + 1)
            if pick < len(seeded):
                path_parameters[name] = seeded[pick]
    return path_parameters

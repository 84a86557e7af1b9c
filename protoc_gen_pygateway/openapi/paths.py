"""Path items: adding an operation, with OpenAPI's rule that templated paths differing only in parameter
names are the same path (used by the document builder and by merge)."""

from __future__ import annotations

import re
from typing import Any

#: Path item keys that are operations, in the order the OpenAPI specification lists them.
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_TEMPLATE = re.compile(r"\{([^{}]*)\}")


class MergeError(ValueError):
    """Documents (or operations) that cannot be combined."""


def _shape(path: str) -> str:
    return _TEMPLATE.sub("{}", path)


def _rename(operation: dict[str, Any], old: list[str], new: list[str]) -> dict[str, Any]:
    """A copy of `operation` whose path parameters `old` are called `new` (same positions)."""
    mapping = dict(zip(old, new, strict=True))

    def text(value: str) -> str:
        return _TEMPLATE.sub(lambda m: "{" + mapping.get(m.group(1), m.group(1)) + "}", value)

    renamed = dict(operation)
    parameters = []
    for param in operation.get("parameters", []):
        if param.get("in") == "path":
            param = {**param, "name": mapping.get(param["name"], param["name"])}
            if "description" in param:
                param["description"] = text(param["description"])
        parameters.append(param)
    if parameters:
        renamed["parameters"] = parameters
    websocket = operation.get("x-websocket")
    if isinstance(websocket, dict) and "path" in websocket:
        renamed["x-websocket"] = {**websocket, "path": text(websocket["path"])}
    return renamed


def add_operation(
    paths: dict[str, dict[str, Any]], path: str, method: str, operation: dict[str, Any]
) -> None:
    """Add one operation to `paths` (path -> path item); raise MergeError on a conflict."""
    shape = _shape(path)
    existing = next((p for p in paths if _shape(p) == shape), None)
    if existing is None:
        paths[path] = {method: operation}
        return
    if existing != path:
        operation = _rename(operation, _TEMPLATE.findall(path), _TEMPLATE.findall(existing))
    item = paths[existing]
    if method in item:
        ours, theirs = operation.get("operationId", "?"), item[method].get("operationId", "?")
        raise MergeError(f"{method.upper()} {path} of {ours} is also {method.upper()} {existing} of {theirs}")
    item[method] = operation
    order = {name: i for i, name in enumerate(HTTP_METHODS)}
    paths[existing] = dict(sorted(item.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


__all__ = ["HTTP_METHODS", "MergeError", "add_operation"]

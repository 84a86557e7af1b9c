"""Query parameters -> request message fields (grpc-gateway's rules)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import (
    duration_pb2,
    field_mask_pb2,
    message,
    timestamp_pb2,
)

from .errors import HttpError, bad_request
from .values import _BAD_ESCAPE, _FD, MAX_URL_VALUE_BYTES, _scalar, _too_long

_WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)


#: `field[key]`: the field name has no `[`, the key is anything (also `[` and line feeds) up to the last `]`.
_MAP_KEY = re.compile(r"^([^\[]+)\[(.*)\]\Z", re.DOTALL)


_NAMES_CACHE: dict[str, dict[str, Any]] = {}


def _fields_by_any_name(desc: Any) -> dict[str, Any]:
    names = _NAMES_CACHE.get(desc.full_name)
    if names is None:
        names = {}
        for f in desc.fields:
            names[f.json_name] = f
        for f in desc.fields:
            names[f.name] = f  # the proto name wins where a JSON name equals another field's proto name
        _NAMES_CACHE[desc.full_name] = names
    return names


def _set_wkt(target: message.Message, text: str, name: str) -> None:
    full = target.DESCRIPTOR.full_name
    try:
        if full in _WRAPPERS:
            value_field: Any = target.DESCRIPTOR.fields_by_name["value"]
            target.value = _scalar(value_field, text, name)  # type: ignore[attr-defined]
        elif isinstance(target, (timestamp_pb2.Timestamp, duration_pb2.Duration)):
            target.FromJsonString(text)
        elif isinstance(target, field_mask_pb2.FieldMask):
            # Accept both protojson's lowerCamelCase paths and proto snake_case paths, path by path.
            for path in (p.strip() for p in text.split(",")):
                if "_" in path:
                    target.paths.append(path)
                elif path:
                    camel = field_mask_pb2.FieldMask()
                    camel.FromJsonString(path)
                    target.paths.extend(camel.paths)
        else:
            raise bad_request(f"query parameter {name}: message type {full} cannot be set from a query value")
    except ValueError as err:
        if isinstance(err, HttpError):
            raise
        raise bad_request(f"invalid value for {name}: {err}") from None


def set_path_message(target: message.Message, text: str, name: str) -> None:
    """A path variable bound to a Timestamp, Duration, wrapper or FieldMask field: read from its JSON
    string form by the code that reads query values, so a bad value gets the same 400 message."""
    _set_wkt(target, text, name)


#: `bound` for bindings whose body is `*` (every field comes from the body or the path).
NOTHING_BOUND: frozenset[str] = frozenset()


def apply_query(
    payload: message.Message,
    query: bytes,
    bound: frozenset[str],
    closed: bool,
    reject_unknown: bool,
) -> None:
    """Set fields from query parameters: dotted paths (proto or JSON names), repeated keys for repeated
    fields, `map[key]=value`, enums by name or number, wrappers, Timestamp, Duration and FieldMask.

    `bound` lists dotted proto paths already bound by the path or body; `closed` means the body is `*`.
    """
    if not query:
        return
    if len(query) > MAX_URL_VALUE_BYTES:
        raise _too_long("query string")
    try:  # raw non-ASCII bytes (granian passes them on) are UTF-8, like their percent-encoded form
        text = query.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("query string is not UTF-8") from None
    if _BAD_ESCAPE.search(text):
        raise bad_request("malformed percent-escape in the query string")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise bad_request("query string is not percent-encoded UTF-8") from None
    seen: set[str] = set()
    for key, value in pairs:
        map_key: str | None = None
        match = _MAP_KEY.match(key)
        if match:
            key, map_key = match.group(1), match.group(2)
        target = payload
        proto_path: list[str] = []
        parts = key.split(".")
        field: Any | None = None
        for depth, part in enumerate(parts):
            field = _fields_by_any_name(target.DESCRIPTOR).get(part)
            if field is None:
                break
            proto_path.append(field.name)
            if depth < len(parts) - 1:
                if field.type != _FD.TYPE_MESSAGE or _is_repeated(field) or _is_leaf_message(field):
                    field = None
                    break
                _check_oneof(target, field, key)
                target = getattr(target, field.name)
        dotted = ".".join(proto_path)
        if field is None:
            if reject_unknown:
                raise bad_request(f"unknown query parameter {key!r}")
            continue
        if closed or any(dotted == b or dotted.startswith(b + ".") for b in bound):
            if reject_unknown:
                raise bad_request(f"query parameter {key!r} sets a field bound by the path or body")
            continue
        _check_oneof(target, field, key)
        _set_query_value(target, field, key, value, map_key, dotted in seen)
        seen.add(dotted)


def _is_repeated(field: Any) -> bool:
    try:
        return bool(field.is_repeated)  # protobuf >= 6: `label` is deprecated, gone under upb
    except AttributeError:  # pragma: no cover - older protobuf
        return bool(field.label == _FD.LABEL_REPEATED)  # type: ignore[attr-defined,unused-ignore]


def _is_map(field: Any) -> bool:
    return (
        field.type == _FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry and _is_repeated(field)
    )


def _is_leaf_message(field: Any) -> bool:
    """Message fields set from one query value: wrappers and the string-valued well-known types."""
    name = field.message_type.full_name if field.type == _FD.TYPE_MESSAGE else ""
    return name in _WRAPPERS or name in (
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
    )


def _check_oneof(target: message.Message, field: Any, key: str) -> None:
    oneof = field.containing_oneof
    if oneof is None:
        return
    current = target.WhichOneof(oneof.name)
    if current is not None and current != field.name:
        raise bad_request(
            f"query parameter {key!r}: field {current!r} of oneof {oneof.name!r} is already set"
        )


def _set_query_value(
    target: message.Message,
    field: Any,
    key: str,
    value: str,
    map_key: str | None,
    again: bool,
) -> None:
    if _is_map(field):
        if map_key is None:
            raise bad_request(f"query parameter {key!r} is a map: use {key}[KEY]=VALUE")
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        entries = getattr(target, field.name)
        parsed_key = _scalar(key_field, map_key, f"{key}[{map_key}]")
        if parsed_key in entries:
            raise bad_request(f"query parameter {key}[{map_key}] given more than once")
        if value_field.type == _FD.TYPE_MESSAGE:
            if not _is_leaf_message(value_field):
                raise bad_request(
                    f"query parameter {key!r}: map values of this type cannot come from a query"
                )
            _set_wkt(entries[parsed_key], value, f"{key}[{map_key}]")
        else:
            entries[parsed_key] = _scalar(value_field, value, f"{key}[{map_key}]")
        return
    if map_key is not None:
        raise bad_request(f"query parameter {key}[{map_key}]: {key} is not a map")
    if _is_repeated(field):
        items = getattr(target, field.name)
        if field.type == _FD.TYPE_MESSAGE:
            if not _is_leaf_message(field):
                raise bad_request(f"query parameter {key!r}: repeated messages cannot come from a query")
            _set_wkt(items.add(), value, key)
        else:
            items.append(_scalar(field, value, key))
        return
    if again:
        raise bad_request(f"query parameter {key!r} given more than once for a non-repeated field")
    if field.type == _FD.TYPE_MESSAGE:
        if not _is_leaf_message(field):
            raise bad_request(f"query parameter {key!r} is a message: set its fields as {key}.<field>")
        _set_wkt(getattr(target, field.name), value, key)
        return
    setattr(target, field.name, _scalar(field, value, key))

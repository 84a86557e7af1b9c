"""JSON bodies: parsing with protojson's rules (depth, duplicates, numbers) and printing."""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf import (
    json_format,
    message,
)

from .errors import bad_request
from .jsonfast import _FLOATING, _float_json
from .query import _WRAPPERS, _fields_by_any_name, _is_map, _is_repeated
from .values import _FD, _NUMBER_TYPES

if TYPE_CHECKING:
    from .jsonfast import FastDecoder


@dataclass(frozen=True)
class JsonStyle:
    """protojson printing and parsing choices, fixed at generation time."""

    use_proto_names: bool
    emit_unpopulated: bool
    enums_as_ints: bool
    ignore_unknown_fields: bool
    #: Deepest nesting of JSON objects/arrays accepted in a request body (400 above it).
    max_depth: int = 64

    def data(self, msg: message.Message, emit_unpopulated: bool | None = None) -> Any:
        return json_format.MessageToDict(
            msg,
            preserving_proto_field_name=self.use_proto_names,
            always_print_fields_with_no_presence=self.emit_unpopulated
            if emit_unpopulated is None
            else emit_unpopulated,
            use_integers_for_enums=self.enums_as_ints,
        )

    def encode(self, msg: message.Message) -> bytes:
        return dump_json(self.data(msg))

    def field_data(self, msg: message.Message, key: str) -> Any:
        """A non-message response_body field's JSON value: its default when unpopulated."""
        data = self.data(msg)
        if key not in data:
            data = self.data(msg, emit_unpopulated=True)
        return data.get(key)

    def encode_field(self, msg: message.Message, key: str) -> bytes:
        return dump_json(self.field_data(msg, key))

    def parse(self, payload: message.Message, body: bytes, fast: FastDecoder | None = None) -> None:
        """Body `*`: the whole JSON object into the (new, empty) request message; an empty body: all
        defaults. `fast`: the module's generated decoder of the message, tried first (see `_fast`)."""
        if body.strip():
            data = _load_json(body, self.max_depth)
            if fast is None or not self._fast(fast, data, payload):
                self._parse_dict(data, payload)

    def parse_field(
        self,
        payload: message.Message,
        json_name: str,
        body: bytes,
        required: bool = False,
        fast: FastDecoder | None = None,
    ) -> None:
        """Body `<field>`: the JSON value into one top-level field. `required`: an empty body is a 400."""
        if not body.strip():
            if required:
                raise bad_request(
                    "request body required: the JSON value of field "
                    f"{json_name} of {payload.DESCRIPTOR.full_name}"
                )
            return
        data = {json_name: _load_json(body, self.max_depth)}
        if fast is None or not self._fast(fast, data, payload):
            self._parse_dict(data, payload)

    def _fast(self, fast: FastDecoder, data: Any, payload: message.Message) -> bool:
        """The generated fast path: True when it filled `payload` (new and empty) from `data`; otherwise
        `payload` is cleared again and the caller runs `_parse_dict`.

        Same result by construction: a generated decoder returns True only for plainly valid JSON (known
        field names, each field once, at most one member per oneof, values of exactly the expected Python
        type and in range, no null, no bytes or well-known-type fields), and it sets each field with the
        very values json_format.ParseDict would set after `_check_objects` accepted the body. Anything
        else, including any exception, is left to that slow path, with its exact messages. (Modules whose
        max_json_depth would let a body reach json_format's limit of 100 message levels have no decoders.)
        """
        if type(data) is not dict:
            return False
        # Any exception (e.g. a value the message refuses) is left to the slow path, which reports it.
        with contextlib.suppress(Exception):
            if fast(data, payload):
                return True
        payload.Clear()
        return False

    def _parse_dict(self, data: Any, payload: message.Message) -> None:
        try:
            data = _check_objects(payload.DESCRIPTOR, data, "")
            # json_format keeps its own limit of 100 message levels (Struct/Value spend two per JSON
            # level): the limit protobuf's decoders (upb, C++) apply, so the backend can decode the result.
            json_format.ParseDict(data, payload, ignore_unknown_fields=self.ignore_unknown_fields)
        except json_format.ParseError as err:
            raise bad_request(f"invalid request body: {err}") from None
        except RecursionError:  # only reachable with a max_json_depth near Python's recursion limit
            raise bad_request("invalid request body: JSON nested too deeply") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):  # rare: find the first repeated key for the message
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: Python would read it as infinity, which JSON cannot express
        raise ValueError(f"number {text} is out of range")
    return value


#: A JSON string token (escapes included), and anything that is not a bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _check_depth(text: str, limit: int) -> None:
    """Refuse JSON nested deeper than `limit` before any recursive parser sees it."""
    if text.count("[") + text.count("{") <= limit:  # cannot be deeper: skip the scan
        return
    depth = 0
    for char in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > limit:
                raise bad_request(f"invalid request body: JSON nested deeper than {limit} levels")
        else:
            depth -= 1


#: Built once: `json.loads` with hooks builds a decoder per call (about 2 us of a small body's 4.5 us).
_JSON_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite
)


def _load_json(body: bytes, max_depth: int = 64) -> Any:
    """The body as strict JSON (no duplicate keys, no bare NaN/Infinity, no overflowing numbers, at most
    `max_depth` levels of objects/arrays), as protojson reads it."""
    text = _utf8(body)
    _check_depth(text, max_depth)
    try:
        if text.startswith("\ufeff"):  # what json.loads checks before decoding, with its message
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _JSON_DECODER.decode(text)
    except (ValueError, RecursionError) as err:
        raise bad_request(f"invalid request body: malformed JSON: {err}") from None


#: Well-known types with a JSON form of their own, which json_format checks itself.
_JSON_SPECIAL = frozenset(
    f"google.protobuf.{n}"
    for n in ("Any", "Timestamp", "Duration", "FieldMask", "Struct", "Value", "ListValue")
)


_JSON_KINDS = ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "an array"))


def _json_kind(value: Any) -> str:
    return next((kind for types, kind in _JSON_KINDS if isinstance(value, types)), "null")


def _no_bool(field: Any, value: Any, where: str) -> None:
    """json_format reads `true` as 1 for numbers and enums (a bool is an int in Python); protojson refuses
    it."""
    if field.type in _NUMBER_TYPES and (
        isinstance(value, bool) or (isinstance(value, list) and any(isinstance(v, bool) for v in value))
    ):
        kind = "an enum name or number" if field.type == _FD.TYPE_ENUM else "a number"
        raise bad_request(f"invalid request body: {where} must be {kind}, not a boolean")


def _check_objects(desc: Any, value: Any, path: str) -> Any:
    """Require a JSON object wherever a message goes: json_format iterates whatever it is given, so `[]`
    and `""` would otherwise arrive at the backend as empty messages. Also refuse the same field given
    twice (by JSON and proto name) and booleans for numbers. Returns `value`, its float and double values
    as json_format should read them (`_float_json`)."""
    if desc.full_name in _WRAPPERS:
        field = desc.fields_by_name["value"]
        where = path or "the request body"
        _no_bool(field, value, where)
        return _float_json(field, value, where) if field.type in _FLOATING else value
    if desc.full_name in _JSON_SPECIAL:
        return value
    if not isinstance(value, dict):
        where = path or "the request body"
        raise bad_request(
            f"invalid request body: {where} must be a JSON object ({desc.full_name}), not {_json_kind(value)}"
        )
    names = _fields_by_any_name(desc)
    seen: dict[str, str] = {}
    for key, item in value.items():
        field = names.get(key)
        if field is None:
            continue
        if field.name in seen:  # `fString` and `f_string`: protojson refuses the same field twice
            where = f"{path}." if path else ""
            raise bad_request(
                f"invalid request body: {where}{seen[field.name]} and {where}{key} set the same field"
            )
        seen[field.name] = key
        where = f"{path}.{key}" if path else key
        if item is None or field.type != _FD.TYPE_MESSAGE:
            _no_bool(field, item, where)
            if field.type in _FLOATING and item is not None:
                if isinstance(item, list):
                    value[key] = [_float_json(field, x, f"{where}[{i}]") for i, x in enumerate(item)]
                else:
                    value[key] = _float_json(field, item, where)
            continue
        if _is_map(field):
            entry = field.message_type.fields_by_name["value"]
            if entry.type != _FD.TYPE_MESSAGE and isinstance(item, dict):
                for map_key, entry_value in item.items():
                    _no_bool(entry, entry_value, f"{where}[{map_key}]")
                    if entry.type in _FLOATING:
                        item[map_key] = _float_json(entry, entry_value, f"{where}[{map_key}]")
            elif isinstance(item, dict):
                for map_key, entry_value in item.items():
                    item[map_key] = _check_objects(entry.message_type, entry_value, f"{where}[{map_key}]")
        elif _is_repeated(field):
            for index, element in enumerate(item if isinstance(item, list) else ()):
                if element is not None:
                    item[index] = _check_objects(field.message_type, element, f"{where}[{index}]")
        else:
            value[key] = _check_objects(field.message_type, item, where)
    return value


#: Built once: `json.dumps` with options builds a new encoder per call (about 1 us of a 3.7 us reply).
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dump_json(data: Any) -> bytes:
    return _JSON_ENCODER.encode(data).encode("utf-8")


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise bad_request(f"invalid request body: not UTF-8 ({err.reason} at byte {err.start})") from None

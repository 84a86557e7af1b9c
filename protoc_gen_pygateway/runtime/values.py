"""Path and query values: percent-decoding and scalar parsing with protojson's rules."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import (
    Callable,
)
from typing import Any

from google.protobuf import (
    descriptor,
)
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from .errors import HttpError, bad_request

#: The smallest magnitude float32 rounds to infinity. Between it and _FLOAT32_MAX lie values that are
#: float32's largest once rounded, among them 3.4028235e+38, which is how protobuf prints that largest value.
#: protojson (Go, C++) accepts them; Python's json_format refuses them as "Float value too large", so the
#: gateway would refuse the JSON it produced itself: they are turned into _FLOAT32_MAX first.
_FLOAT32_ROUNDS_TO_INF = 3.4028235677973366e38


#: JSON's spellings of a float or double beyond numbers (also in query and path values), and its numbers.
_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


_FLOAT = re.compile(r"^-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def _beyond_range(number: float, single: bool) -> bool:
    """Whether a number spelled without a word is out of a double's range (float() gives infinity) or,
    `single`, a float's (it rounds to infinity from _FLOAT32_ROUNDS_TO_INF on)."""
    return math.isinf(number) or (single and abs(number) >= _FLOAT32_ROUNDS_TO_INF)


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


#: RFC 6570 reserved characters: kept percent-encoded in multi-segment captures (Envoy's
#: ALL_CHARACTERS_EXCEPT_RESERVED), so `a%2Fb` inside `**` stays distinguishable from `a/b`. `%` itself
#: stays encoded too, so that a double-encoded `a%252Fb` does not become the same value as `a%2Fb`.
_RESERVED = frozenset(b":/?#[]@!$&'()*+,;=%")


#: Longest query string, and longest path variable value, accepted (414 above it).
MAX_URL_VALUE_BYTES = 16 * 1024


def _too_long(what: str) -> HttpError:
    return HttpError(414, code_pb2.RESOURCE_EXHAUSTED, f"{what} longer than {MAX_URL_VALUE_BYTES} bytes")


def _unescape(raw: str, keep_reserved: bool = False) -> str:
    if _BAD_ESCAPE.search(raw):
        raise bad_request(f"malformed percent-escape in {raw!r}")

    def one(match: re.Match[bytes]) -> bytes:
        byte = int(match.group(1), 16)
        return match.group(0).upper() if keep_reserved and byte in _RESERVED else bytes((byte,))

    try:
        return _ESCAPE.sub(one, raw.encode("latin-1")).decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise bad_request(f"path value {raw!r} is not percent-encoded UTF-8") from None


def path_value(raw: str, multi: bool) -> str:
    """A captured path value: single segments fully decoded, multi-segment keeping reserved escapes.

    `raw` is the request target as the server gave it, bytes as latin-1: raw non-ASCII bytes (which
    granian passes on) are read as UTF-8, like their percent-encoded form.
    """
    if len(raw) > MAX_URL_VALUE_BYTES:
        raise _too_long("path value")
    if "%" not in raw and raw.isascii():
        return raw
    return _unescape(raw, keep_reserved=multi)


_INT = re.compile(r"^-?[0-9]+$")


_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}


def _integer(kind: str, text: str, name: str) -> int:
    if not _INT.match(text):
        raise bad_request(f"invalid value for {name}: {text!r} is not an integer ({kind})")
    value = int(text)
    low, high = _RANGES[kind]
    if not low <= value <= high:
        raise bad_request(f"invalid value for {name}: {text} is out of range for {kind}")
    return value


def parse_int32(text: str, name: str) -> int:
    return _integer("int32", text, name)


def parse_int64(text: str, name: str) -> int:
    return _integer("int64", text, name)


def parse_uint32(text: str, name: str) -> int:
    return _integer("uint32", text, name)


def parse_uint64(text: str, name: str) -> int:
    return _integer("uint64", text, name)


def parse_double(text: str, name: str) -> float:
    if text in _FLOAT_WORDS:
        return _FLOAT_WORDS[text]
    if not _FLOAT.fullmatch(text):
        raise bad_request(f"invalid value for {name}: {text!r} is not a number")
    value = float(text)
    if _beyond_range(value, False):
        raise bad_request(f"invalid value for {name}: {text} is out of range for double")
    return value


def parse_float(text: str, name: str) -> float:
    value = parse_double(text, name)
    if math.isfinite(value) and _beyond_range(value, True):
        raise bad_request(f"invalid value for {name}: {text} is out of range for float")
    return value


def parse_bool(text: str, name: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise bad_request(f"invalid value for {name}: {text!r} is not true or false")


def parse_string(text: str, name: str) -> str:
    return text


def parse_bytes(text: str, name: str) -> bytes:
    """Base64, standard or URL-safe alphabet, padding optional (as protojson and grpc-gateway accept)."""
    data = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"invalid value for {name}: {text!r} is not base64") from None


def parse_enum(text: str, enum: Any, name: str) -> Any:
    """An enum value by name or by number (numbers outside the enum only for open enums)."""
    value = enum.values_by_name.get(text)
    if value is not None:
        return int(value.number)
    if _INT.match(text):
        number = _integer("int32", text, name)
        if number in enum.values_by_number or not getattr(enum, "is_closed", False):
            return number
    raise bad_request(f"invalid value for {name}: {text!r} is not a value of enum {enum.full_name}")


_FD = descriptor.FieldDescriptor


_NUMBER_TYPES = frozenset(
    {
        _FD.TYPE_DOUBLE,
        _FD.TYPE_FLOAT,
        _FD.TYPE_INT64,
        _FD.TYPE_UINT64,
        _FD.TYPE_INT32,
        _FD.TYPE_FIXED64,
        _FD.TYPE_FIXED32,
        _FD.TYPE_UINT32,
        _FD.TYPE_ENUM,
        _FD.TYPE_SFIXED32,
        _FD.TYPE_SFIXED64,
        _FD.TYPE_SINT32,
        _FD.TYPE_SINT64,
    }
)


_SCALAR_PARSERS: dict[int, Callable[[str, str], Any]] = {
    _FD.TYPE_DOUBLE: parse_double,
    _FD.TYPE_FLOAT: parse_float,
    _FD.TYPE_INT64: parse_int64,
    _FD.TYPE_SFIXED64: parse_int64,
    _FD.TYPE_SINT64: parse_int64,
    _FD.TYPE_UINT64: parse_uint64,
    _FD.TYPE_FIXED64: parse_uint64,
    _FD.TYPE_INT32: parse_int32,
    _FD.TYPE_SFIXED32: parse_int32,
    _FD.TYPE_SINT32: parse_int32,
    _FD.TYPE_UINT32: parse_uint32,
    _FD.TYPE_FIXED32: parse_uint32,
    _FD.TYPE_BOOL: parse_bool,
    _FD.TYPE_STRING: parse_string,
    _FD.TYPE_BYTES: parse_bytes,
}


def _scalar(field: Any, text: str, name: str) -> Any:
    if field.type == _FD.TYPE_ENUM:
        return parse_enum(text, field.enum_type, name)
    return _SCALAR_PARSERS[field.type](text, name)

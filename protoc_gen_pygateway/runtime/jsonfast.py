"""Helpers of the generated JSON codecs: value encoders and the decoders' fast path."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import (
    Callable,
)
from typing import Any

from google.protobuf import (
    descriptor,
)
from google.protobuf.internal import type_checkers

from .errors import bad_request
from .values import _FD, _FLOAT, _FLOAT32_ROUNDS_TO_INF, _FLOAT_WORDS, _beyond_range


def json_double(value: float) -> Any:
    """A double: the number, or "NaN", "Infinity", "-Infinity"."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def json_float(value: float) -> Any:
    """A float: json_format's shortest decimal that reads back as the same float32."""
    if math.isfinite(value):
        return type_checkers.ToShortestFloat(value)
    return json_double(value)


def json_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("utf-8")


def negative_zero(value: float) -> bool:
    """-0.0 is not the default 0.0 (its bits differ): json_format lists such a field as populated."""
    return value == 0.0 and math.copysign(1.0, value) < 0


def enum_names(enum: descriptor.EnumDescriptor) -> dict[int, str]:
    """Enum number -> the name json_format prints for it (numbers not in it print as numbers). Looked up
    as json_format does: with aliases, `values_by_number.get` and iteration disagree on the name."""
    return {value.number: enum.values_by_number[value.number].name for value in enum.values}


#: A generated `_decode_<message>(data, message) -> bool`.
FastDecoder = Callable[[dict[str, Any], Any], bool]


#: json_format refuses strings holding an unpaired UTF-16 surrogate (which JSON escapes can produce).
_UNPAIRED_SURROGATE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")


_DECIMAL = re.compile(r"-?[0-9]{1,20}")


#: Map keys: only the canonical decimal form, so that two JSON keys can never name the same map key.
_CANONICAL_DECIMAL = re.compile(r"0|-?[1-9][0-9]{0,19}")


#: The largest float32 (json_format refuses larger JSON numbers for float fields).
_FLOAT32_MAX = 3.4028234663852886e38


def fast_string(value: Any) -> Any:
    if type(value) is str and (value.isascii() or not _UNPAIRED_SURROGATE.search(value)):
        return value
    return None


def fast_bool(value: Any) -> Any:
    return value if type(value) is bool else None


def fast_int32(value: Any) -> Any:
    return value if type(value) is int and -2147483648 <= value <= 2147483647 else None


def fast_uint32(value: Any) -> Any:
    return value if type(value) is int and 0 <= value <= 4294967295 else None


def fast_int64(value: Any) -> Any:
    """A JSON number or a decimal string (protojson's usual form of 64-bit integers)."""
    if type(value) is str and _DECIMAL.fullmatch(value):
        value = int(value)
    elif type(value) is not int:
        return None
    return value if -9223372036854775808 <= value <= 9223372036854775807 else None


def fast_uint64(value: Any) -> Any:
    if type(value) is str and _DECIMAL.fullmatch(value):
        value = int(value)
    elif type(value) is not int:
        return None
    return value if 0 <= value <= 18446744073709551615 else None


#: Integers beyond this (towards float's range end) are left to json_format, which words the refusal.
_DOUBLE_INT_LIMIT = 2**1023


def fast_double(value: Any) -> Any:
    if type(value) is float:
        return value
    return float(value) if type(value) is int and -_DOUBLE_INT_LIMIT < value < _DOUBLE_INT_LIMIT else None


_FLOATING = (descriptor.FieldDescriptor.TYPE_FLOAT, descriptor.FieldDescriptor.TYPE_DOUBLE)


def _float_json(field: Any, value: Any, where: str) -> Any:
    """A float or double field's JSON value as json_format should read it.

    json_format reads a quoted number with Python's float(), so a string out of the type's range ("1e400",
    or "-3.5e38" for a float) would reach the backend as infinity, and spellings only Python takes ("1_0",
    " 1", "inf") would pass as numbers: protojson (Go, C++) refuses both, and so does the gateway.
    Numbers and strings that round to float32's largest go in as _FLOAT32_MAX (see above).
    """
    single = field.type == _FD.TYPE_FLOAT
    if type(value) is str:
        if value in _FLOAT_WORDS:
            return value
        if not _FLOAT.fullmatch(value):
            raise bad_request(f"invalid request body: {where} must be a number, not {value!r}")
        number = float(value)
        if _beyond_range(number, single):
            kind = "float" if single else "double"
            raise bad_request(f"invalid request body: {where}: {value} is out of range for {kind}")
    elif type(value) is float or type(value) is int:
        try:
            number = float(value)
        except OverflowError:  # json_format words the refusal
            return value
    else:
        return value
    if single and _FLOAT32_MAX < abs(number) < _FLOAT32_ROUNDS_TO_INF:
        return math.copysign(_FLOAT32_MAX, number)
    return value


def fast_float(value: Any) -> Any:
    if type(value) is float:
        if -_FLOAT32_MAX <= value <= _FLOAT32_MAX:
            return value
        return math.copysign(_FLOAT32_MAX, value) if abs(value) < _FLOAT32_ROUNDS_TO_INF else None
    return float(value) if type(value) is int and -_FLOAT32_MAX <= value <= _FLOAT32_MAX else None


def fast_enum(enum: descriptor.EnumDescriptor) -> Callable[[Any], Any]:
    """A reader of `enum` values: names and numbers of the enum (other numbers take the slow path)."""
    numbers: dict[Any, int] = {name: value.number for name, value in enum.values_by_name.items()}
    numbers.update((number, number) for number in enum.values_by_number)

    def read(value: Any) -> Any:
        return numbers.get(value) if type(value) is str or type(value) is int else None

    return read


def fast_key_bool(key: str) -> Any:
    return True if key == "true" else (False if key == "false" else None)


def fast_key_int32(key: str) -> Any:
    return fast_int32(int(key)) if _CANONICAL_DECIMAL.fullmatch(key) else None


def fast_key_uint32(key: str) -> Any:
    return fast_uint32(int(key)) if _CANONICAL_DECIMAL.fullmatch(key) else None


def fast_key_int64(key: str) -> Any:
    return fast_int64(int(key)) if _CANONICAL_DECIMAL.fullmatch(key) else None


def fast_key_uint64(key: str) -> Any:
    return fast_uint64(int(key)) if _CANONICAL_DECIMAL.fullmatch(key) else None


def fast_list(target: Any, value: Any, read: Callable[[Any], Any]) -> bool:
    """A JSON array into an empty repeated scalar field."""
    if type(value) is not list:
        return False
    items = [read(item) for item in value]
    if None in items:
        return False
    target.extend(items)
    return True


def fast_map(target: Any, value: Any, read_key: Callable[[str], Any], read: Callable[[Any], Any]) -> bool:
    """A JSON object into an empty map field with scalar values."""
    if type(value) is not dict:
        return False
    for key, item in value.items():
        map_key, map_value = read_key(key), read(item)
        if map_key is None or map_value is None:
            return False
        target[map_key] = map_value
    return True

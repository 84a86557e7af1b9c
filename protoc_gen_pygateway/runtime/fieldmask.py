"""allow_patch_feature: the FieldMask of a PATCH request that left it empty, from the JSON body's members.

grpc-gateway's rule (runtime.FieldMaskFromRequestBody), decided per binding at generation time: a PATCH
whose body is one message field, on a request with exactly one google.protobuf.FieldMask field. The
generated request builder calls `body_field_mask` after the body, path and query filled the message, and
only when the mask has no paths: a mask sent in the query wins unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import descriptor, field_mask_pb2

from .query import _fields_by_any_name, _is_repeated

#: Message types written as one JSON value (a string, number, array or free-form object): a member holding
#: one is a whole path, never descended into (as Struct/Value in the issue's rule, unlike grpc-gateway,
#: whose paths go into a Struct's keys, which no FieldMask consumer can apply).
LEAF_TYPES = frozenset(
    {
        "google.protobuf.Any",
        "google.protobuf.Duration",
        "google.protobuf.Empty",
        "google.protobuf.FieldMask",
        "google.protobuf.ListValue",
        "google.protobuf.Struct",
        "google.protobuf.Timestamp",
        "google.protobuf.Value",
        *(
            f"google.protobuf.{n}Value"
            for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
        ),
    }
)


def body_field_mask(mask: field_mask_pb2.FieldMask, body: bytes, desc: Any) -> None:
    """Add to `mask` the paths the JSON object `body` sets in a `desc` message.

    A path is the proto field names from the body field's message down, joined by `.`. A member is a leaf
    (its path goes in whole) when it is a map, a repeated field, a well-known type (LEAF_TYPES), `null`,
    a scalar, or an empty object; a non-empty object of a message field is descended into. Members are
    read by JSON name or proto name. Members naming no field (kept only with unknown_body_fields=ignore)
    add nothing. The paths are sorted (byte order of the dotted proto names), as grpc-gateway sorts them:
    the same mask whatever the order of the members. An empty object gives an empty mask; the mask field
    is set (present) either way, as grpc-gateway sets it.

    The body was already parsed and validated into the request message (a malformed body never gets
    here); it is parsed again as plain JSON because the message cannot tell a member sent with its
    default value from one not sent.
    """
    mask.SetInParent()  # present even when empty, as grpc-gateway sets it
    data = json.loads(body) if body.strip() else None
    if not isinstance(data, dict):
        return
    paths: set[str] = set()
    _walk(data, desc, "", paths)
    mask.paths.extend(sorted(paths))


def _walk(data: dict[str, Any], desc: Any, prefix: str, paths: set[str]) -> None:
    fields = _fields_by_any_name(desc)
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            continue
        path = prefix + field.name
        if (
            field.type == descriptor.FieldDescriptor.TYPE_MESSAGE
            and not _is_repeated(field)
            and field.message_type.full_name not in LEAF_TYPES
            and isinstance(value, dict)
            and value
        ):
            _walk(value, field.message_type, path + ".", paths)
        else:
            paths.add(path)

"""Proto types -> JSON Schema (OpenAPI 3.1 dialect), following protojson as the gateway prints it.

The schemas describe what the gateway writes (json_format.MessageToDict under the plugin's options); the
gateway also reads each of these forms, plus protojson's alternatives (both field names, numbers as
strings, enum numbers, ...). Rules:

- field names: JSON names (`json_name`), or proto names with `use_proto_names`;
- 64-bit integers: decimal strings; 32-bit integers: numbers with their range;
- float/double: numbers, or the strings "NaN", "Infinity", "-Infinity";
- enums: value names (or their numbers with `enums_as_ints`); an open enum also prints numbers it does
  not know as numbers; bytes: base64 strings;
- well-known types in their JSON forms (Timestamp RFC 3339, Duration `1.5s`, FieldMask `a.b,c`, Struct
  object, Value any JSON, ListValue array, Any object with `@type`, wrappers as their value, Empty `{}`);
- messages are components referenced by `$ref` (recursion needs nothing more); maps are objects; oneofs
  allow at most one member; unknown members are refused (`additionalProperties: false`) unless
  `unknown_body_fields=ignore`.
"""

from __future__ import annotations

from typing import Any

from ..descriptors import SCALAR_KINDS, FieldInfo, MessageInfo, Registry
from ..options import Options
from .comments import DocIndex

Schema = dict[str, Any]

STATUS = "google.rpc.Status"
#: Component names of the gateway's own stream framing: `-` cannot occur in a proto full name.
STREAM_ERROR = "pygateway-StreamError"
STREAM_END = "pygateway-StreamEnd"

_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)
_NON_FINITE = ["NaN", "Infinity", "-Infinity"]
#: Base64 as protojson writes it (standard alphabet, padded) and reads it (also URL-safe, unpadded).
_B64 = "[A-Za-z0-9+/_-]"
_BASE64 = f"^(?:{_B64}{{4}})*(?:{_B64}{{2}}(?:==)?|{_B64}{{3}}=?)?$"

_WRAPPERS: dict[str, str] = {
    "google.protobuf.DoubleValue": "double",
    "google.protobuf.FloatValue": "float",
    "google.protobuf.Int64Value": "int64",
    "google.protobuf.UInt64Value": "uint64",
    "google.protobuf.Int32Value": "int32",
    "google.protobuf.UInt32Value": "uint32",
    "google.protobuf.BoolValue": "bool",
    "google.protobuf.StringValue": "string",
    "google.protobuf.BytesValue": "bytes",
}

#: Well-known types set from one query value (the runtime's `_is_leaf_message`).
QUERY_LEAF_TYPES = frozenset(
    {*_WRAPPERS, "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
#: Well-known types whose fields are never offered as query parameters (their JSON form is not an object
#: of their fields, or they have none).
OPAQUE_TYPES = frozenset(
    {
        "google.protobuf.Any",
        "google.protobuf.Empty",
        "google.protobuf.ListValue",
        "google.protobuf.Struct",
        "google.protobuf.Value",
    }
)


def scalar_schema(kind: str) -> Schema:
    """JSON form of a scalar kind (`SCALAR_KINDS` values other than "enum")."""
    if kind in ("double", "float"):
        return {"anyOf": [{"type": "number", "format": kind}, {"type": "string", "enum": list(_NON_FINITE)}]}
    if kind == "int32":
        return {"type": "integer", "format": "int32", "minimum": _INT32[0], "maximum": _INT32[1]}
    if kind == "uint32":
        return {"type": "integer", "format": "uint32", "minimum": _UINT32[0], "maximum": _UINT32[1]}
    if kind == "int64":
        return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
    if kind == "uint64":
        return {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
    if kind == "bool":
        return {"type": "boolean"}
    if kind == "string":
        return {"type": "string"}
    if kind == "bytes":
        return {"type": "string", "contentEncoding": "base64", "pattern": _BASE64}
    raise ValueError(f"not a scalar kind: {kind}")


def scalar_param_schema(kind: str) -> Schema:
    """A scalar as a path or query parameter: as in JSON, except that floating point is a plain number
    (the gateway also reads NaN, Infinity and -Infinity there)."""
    if kind in ("double", "float"):
        return {"type": "number", "format": kind}
    return scalar_schema(kind)


def _wkt_schema(full_name: str) -> Schema | None:
    """The JSON form of a well-known type, or None for other messages."""
    wrapped = _WRAPPERS.get(full_name)
    if wrapped is not None:
        return scalar_schema(wrapped)
    if full_name == "google.protobuf.Timestamp":
        return {"type": "string", "format": "date-time"}
    if full_name == "google.protobuf.Duration":
        return {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}
    if full_name == "google.protobuf.FieldMask":
        return {"type": "string"}
    if full_name == "google.protobuf.Struct":
        return {"type": "object"}
    if full_name == "google.protobuf.Value":
        return {}
    if full_name == "google.protobuf.ListValue":
        return {"type": "array"}
    if full_name == "google.protobuf.Any":
        return {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]}
    return None


def status_schema() -> Schema:
    """google.rpc.Status as the gateway writes it: always all three members."""
    return {
        "type": "object",
        "title": "Status",
        "description": "google.rpc.Status: the gRPC status code, a message and typed details "
        "(google.rpc.ErrorInfo, BadRequest, ...; unknown detail types as `@type` and base64 `value`).",
        "properties": {
            "code": {
                "type": "integer",
                "format": "int32",
                "description": "google.rpc.Code: 0 OK ... 16 UNAUTHENTICATED.",
            },
            "message": {"type": "string"},
            "details": {"type": "array", "items": _wkt_schema("google.protobuf.Any")},
        },
        "required": ["code", "message", "details"],
        "additionalProperties": False,
    }


def trailers_schema() -> Schema:
    return {
        "type": "object",
        "description": "Trailer metadata: key -> value (binary values base64).",
        "additionalProperties": {"type": "string"},
    }


class SchemaBuilder:
    """Schemas of fields and types; message and enum components are collected as they are referenced."""

    def __init__(self, registry: Registry, docs: DocIndex, options: Options) -> None:
        self.registry = registry
        self.docs = docs
        self.use_proto_names = options.use_proto_names
        self.enums_as_ints = options.enums_as_ints
        self.closed = options.unknown_body_fields == "reject"
        self._components: dict[str, Schema] = {}
        self._queue: list[str] = []
        self._queued: set[str] = set()

    # --------------------------------------------------------------------------------------- names

    def name(self, field: FieldInfo) -> str:
        """The field's JSON member name under the naming option."""
        return field.name if self.use_proto_names else field.json_name

    @staticmethod
    def ref(component: str) -> Schema:
        return {"$ref": f"#/components/schemas/{component}"}

    def _queue_component(self, full_name: str) -> Schema:
        if full_name not in self._queued:
            self._queued.add(full_name)
            self._queue.append(full_name)
        return self.ref(full_name)

    # --------------------------------------------------------------------------------------- types

    def message(self, full_name: str) -> Schema:
        """A message type: its well-known JSON form inline, else a `$ref` to its component."""
        full_name = full_name.lstrip(".")
        if full_name == STATUS:
            return self.status()
        inline = _wkt_schema(full_name)
        if inline is not None:
            return inline
        return self._queue_component(full_name)

    def status(self) -> Schema:
        return self._queue_component(STATUS)

    def enum(self, full_name: str) -> Schema:
        full_name = full_name.lstrip(".")
        if full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        return self._queue_component(full_name)

    def kind_schema(self, kind: str, type_name: str, *, param: bool = False) -> Schema:
        """One value of a field kind: "message", "enum" or a scalar kind."""
        if kind == "message":
            return self.message(type_name)
        if kind == "enum":
            return self.enum(type_name)
        return scalar_param_schema(kind) if param else scalar_schema(kind)

    def singular(self, field: FieldInfo, *, param: bool = False) -> Schema:
        """One element of the field (the field itself unless it is repeated or a map)."""
        kind = "message" if field.is_message else SCALAR_KINDS[field.type]
        return self.kind_schema(kind, field.type_name, param=param)

    def field(self, field: FieldInfo, owner: str = "") -> Schema:
        """The whole field's JSON value, with its description and deprecation (owner: the message's full
        name, for the description)."""
        if field.is_map:
            entry = self.registry.message(field.type_name)
            schema = self.map_schema(entry)
        elif field.repeated:
            schema = {"type": "array", "items": self.singular(field)}
        else:
            schema = dict(self.singular(field))
        if owner:
            doc = self.docs.get("field", f"{owner}.{field.name}")
            if doc.description:
                schema["description"] = doc.description
            if doc.deprecated:
                schema["deprecated"] = True
        return schema

    def map_schema(self, entry: MessageInfo) -> Schema:
        key, value = entry.field("key"), entry.field("value")
        assert key is not None and value is not None
        schema: Schema = {"type": "object", "additionalProperties": self.singular(value)}
        key_kind = SCALAR_KINDS[key.type]
        if key_kind == "bool":
            schema["propertyNames"] = {"enum": ["true", "false"]}
        elif key_kind in ("int32", "int64"):
            schema["propertyNames"] = {"pattern": "^-?[0-9]+$"}
        elif key_kind in ("uint32", "uint64"):
            schema["propertyNames"] = {"pattern": "^[0-9]+$"}
        return schema

    # ------------------------------------------------------------------------------------ components

    def _message_component(self, info: MessageInfo) -> Schema:
        doc = self.docs.get("message", info.full_name)
        schema: Schema = {"type": "object", "title": info.full_name.rsplit(".", 1)[-1]}
        if doc.description:
            schema["description"] = doc.description
        if doc.deprecated:
            schema["deprecated"] = True
        properties: Schema = {}
        oneofs: dict[str, list[str]] = {}
        for field in info.fields:
            prop = self.field(field, info.full_name)
            if field.oneof is not None:
                members = [self.name(f) for f in info.fields if f.oneof == field.oneof]
                others = ", ".join(f"`{m}`" for m in members)
                note = f"Member of oneof `{field.oneof}`: at most one of {others} is set."
                prop["description"] = f"{prop['description']}\n\n{note}" if "description" in prop else note
                oneofs.setdefault(field.oneof, members)
            properties[self.name(field)] = prop
        schema["properties"] = properties
        if self.closed:
            schema["additionalProperties"] = False
        pairs = [
            {"required": [a, b]}
            for members in oneofs.values()
            for i, a in enumerate(members)
            for b in members[i + 1 :]
        ]
        if pairs:
            schema["not"] = {"anyOf": pairs}
        return schema

    def _enum_component(self, full_name: str) -> Schema:
        info = self.registry.enum(full_name)
        doc = self.docs.get("enum", full_name)
        values = self.docs.enum_values.get(full_name, ())
        lines = [doc.description] if doc.description else []
        listed = []
        for name, number in values:
            value_doc = self.docs.get("value", f"{full_name}.{name}")
            text = value_doc.description.replace("\n", " ")
            if value_doc.deprecated:
                text = f"(deprecated) {text}".rstrip()
            listed.append(f"- `{name}` = {number}" + (f": {text}" if text else ""))
        if listed:
            lines.append("\n".join(listed))
        names = list(dict.fromkeys(name for name, _ in values))
        numbers = sorted({number for _, number in values})
        if self.enums_as_ints:
            schema: Schema = {"type": "integer", "format": "int32"}
            if info.closed:
                schema["enum"] = numbers
            else:
                lines.append("An open enum: numbers without a name are kept as they are.")
        elif info.closed:
            schema = {"type": "string", "enum": names}
        else:
            # protojson prints a number the enum does not name (an open enum keeps unknown numbers).
            schema = {"anyOf": [{"type": "string", "enum": names}, {"type": "integer", "format": "int32"}]}
            lines.append("An open enum: a number without a name is written as that number.")
        result: Schema = {"title": full_name.rsplit(".", 1)[-1]}
        if lines:
            result["description"] = "\n\n".join(lines)
        if doc.deprecated:
            result["deprecated"] = True
        result.update(schema)
        return result

    def add_component(self, name: str, schema: Schema) -> Schema:
        """A component the document defines itself (stream framing); returns its `$ref`."""
        self._components[name] = schema
        self._queued.add(name)
        return self.ref(name)

    def components(self) -> dict[str, Schema]:
        """Every referenced component (and those they reference), sorted by name."""
        while self._queue:
            name = self._queue.pop(0)
            if name in self._components:
                continue
            if name == STATUS:
                self._components[name] = status_schema()
            elif name in self.registry.enums:
                self._components[name] = self._enum_component(name)
            else:
                self._components[name] = self._message_component(self.registry.message(name))
        return {name: self._components[name] for name in sorted(self._components)}


__all__ = [
    "OPAQUE_TYPES",
    "QUERY_LEAF_TYPES",
    "STATUS",
    "STREAM_END",
    "STREAM_ERROR",
    "Schema",
    "SchemaBuilder",
    "scalar_param_schema",
    "scalar_schema",
    "status_schema",
    "trailers_schema",
]

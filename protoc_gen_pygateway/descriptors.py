"""Descriptor resolution: the request's FileDescriptorProtos indexed by full name.

Only what the model needs: messages, their fields (with protoc-computed json_name), enums, map entries,
and the Python module/attribute path under which protoc's python plugin emits each type.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass

from google.protobuf import descriptor_pb2

FieldProto = descriptor_pb2.FieldDescriptorProto

#: Field type -> the scalar kind name the generated code and runtime use.
SCALAR_KINDS: dict[int, str] = {
    FieldProto.TYPE_DOUBLE: "double",
    FieldProto.TYPE_FLOAT: "float",
    FieldProto.TYPE_INT64: "int64",
    FieldProto.TYPE_UINT64: "uint64",
    FieldProto.TYPE_INT32: "int32",
    FieldProto.TYPE_FIXED64: "uint64",
    FieldProto.TYPE_FIXED32: "uint32",
    FieldProto.TYPE_BOOL: "bool",
    FieldProto.TYPE_STRING: "string",
    FieldProto.TYPE_BYTES: "bytes",
    FieldProto.TYPE_UINT32: "uint32",
    FieldProto.TYPE_ENUM: "enum",
    FieldProto.TYPE_SFIXED32: "int32",
    FieldProto.TYPE_SFIXED64: "int64",
    FieldProto.TYPE_SINT32: "int32",
    FieldProto.TYPE_SINT64: "int64",
}


def python_module(proto_file: str) -> str:
    """`shop/v1/shop.proto` -> `shop.v1.shop_pb2` (protoc's python generator naming)."""
    base = proto_file[: -len(".proto")] if proto_file.endswith(".proto") else proto_file
    return base.replace("-", "_").replace("/", ".") + "_pb2"


def module_alias(module: str) -> str:
    """Import alias for a _pb2 module, grpc_tools style: `shop.v1.shop_pb2` -> `shop_dot_v1_dot_shop__pb2`."""
    return module.replace("_", "__").replace(".", "_dot_")


@dataclass(frozen=True)
class FieldInfo:
    name: str
    json_name: str
    number: int
    type: int  # FieldDescriptorProto.Type
    repeated: bool
    type_name: str  # full name without leading dot, for message and enum fields; "" otherwise
    oneof: str | None  # name of the real (non-synthetic) oneof holding the field
    is_map: bool

    @property
    def is_message(self) -> bool:
        return self.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_GROUP)

    @property
    def python_name(self) -> str:
        """Attribute access needs getattr/setattr for names that are Python keywords."""
        return self.name

    @property
    def is_keyword(self) -> bool:
        return keyword.iskeyword(self.name)


@dataclass(frozen=True)
class MessageInfo:
    full_name: str
    proto_file: str
    python_path: str  # attribute path inside the _pb2 module, e.g. `Outer.Inner`
    fields: tuple[FieldInfo, ...]
    is_map_entry: bool

    def field(self, name: str) -> FieldInfo | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True)
class EnumInfo:
    full_name: str
    proto_file: str
    python_path: str
    closed: bool


class Registry:
    """Every message and enum of a CodeGeneratorRequest, by full name (no leading dot)."""

    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        self.files = {f.name: f for f in files}
        self.messages: dict[str, MessageInfo] = {}
        self.enums: dict[str, EnumInfo] = {}
        for file in files:
            prefix = f"{file.package}." if file.package else ""
            closed = file.syntax == "proto2" or file.syntax == ""
            for enum in file.enum_type:
                self._add_enum(enum, file.name, prefix, "", closed)
            for message in file.message_type:
                self._add_message(message, file.name, prefix, "", closed)

    def _add_enum(
        self, enum: descriptor_pb2.EnumDescriptorProto, file: str, prefix: str, py: str, closed: bool
    ) -> None:
        full = prefix + enum.name
        self.enums[full] = EnumInfo(full, file, py + enum.name, closed)

    def _add_message(
        self, message: descriptor_pb2.DescriptorProto, file: str, prefix: str, py: str, closed: bool
    ) -> None:
        full = prefix + message.name
        python_path = py + message.name
        real_oneofs = {
            i: o.name
            for i, o in enumerate(message.oneof_decl)
            if not any(f.proto3_optional and f.oneof_index == i for f in message.field)
        }
        nested_maps = {f"{full}.{n.name}" for n in message.nested_type if n.options.map_entry}
        fields = tuple(
            FieldInfo(
                name=f.name,
                json_name=f.json_name or f.name,
                number=f.number,
                type=f.type,
                repeated=f.label == FieldProto.LABEL_REPEATED,
                type_name=f.type_name.lstrip("."),
                oneof=real_oneofs.get(f.oneof_index) if f.HasField("oneof_index") else None,
                is_map=f.type_name.lstrip(".") in nested_maps,
            )
            for f in message.field
        )
        self.messages[full] = MessageInfo(full, file, python_path, fields, message.options.map_entry)
        for enum in message.enum_type:
            self._add_enum(enum, file, full + ".", python_path + ".", closed)
        for nested in message.nested_type:
            self._add_message(nested, file, full + ".", python_path + ".", closed)

    def message(self, full_name: str) -> MessageInfo:
        return self.messages[full_name.lstrip(".")]

    def enum(self, full_name: str) -> EnumInfo:
        return self.enums[full_name.lstrip(".")]

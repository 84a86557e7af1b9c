"""Generation-time JSON specialisation: per-message encode and decode functions for a service module.

json_format walks descriptors for every message it prints or parses; the functions built here do the
same work with every decision taken at generation time (issue 5).

- `_encode_<message>(m) -> dict` returns exactly what `json_format.MessageToDict` returns for `m` under the
  module's options (equal as dicts; keys in declaration order, where json_format puts set fields first).
  Well-known types (and messages json_format prints specially: extendable messages, enums with custom
  JSON names) are delegated to json_format, value by value.
- `_decode_<message>(data, m) -> bool` is a fast path for request bodies: it fills `m` only from plainly
  valid JSON and answers False on anything else, after which the runtime clears `m` and runs the
  unchanged json_format path (`JsonStyle.parse`), so results and errors never differ.

Names, presence, oneofs and enums come from a descriptor pool built from the CodeGeneratorRequest: the
same descriptor objects json_format consults at run time.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

from .descriptors import Registry
from .model import CodecFunction, EnumTable, JsonCodecs, Method, ReplyCodec, TypeRef
from .options import Options
from .pyliteral import pyrepr

_FD = descriptor.FieldDescriptor

#: Messages json_format prints and parses by rules of their own (plus google.protobuf.Empty, kept with
#: them): never specialised, always handed to json_format.
WELL_KNOWN = frozenset(
    f"google.protobuf.{name}"
    for name in (
        "Any",
        "Duration",
        "Empty",
        "FieldMask",
        "ListValue",
        "Struct",
        "Timestamp",
        "Value",
        *(
            f"{kind}Value"
            for kind in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
        ),
    )
)
_NULL_VALUE = "google.protobuf.NullValue"

_INT32 = frozenset({_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32})
_UINT32 = frozenset({_FD.TYPE_UINT32, _FD.TYPE_FIXED32})
_INT64 = frozenset({_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64})
_UINT64 = frozenset({_FD.TYPE_UINT64, _FD.TYPE_FIXED64})
_MESSAGES = frozenset({_FD.TYPE_MESSAGE, _FD.TYPE_GROUP})


def build_pool(registry: Registry) -> descriptor_pool.DescriptorPool:
    """The request's files in a pool of their own (protoc sends dependencies first)."""
    pool = descriptor_pool.DescriptorPool()
    for file in registry.files.values():
        pool.Add(file)
    return pool


def _snake(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _python_path(desc: descriptor.Descriptor | descriptor.EnumDescriptor) -> str:
    """`Outer.Inner` for a nested type (the name below its package)."""
    package = desc.file.package
    return desc.full_name[len(package) + 1 :] if package else desc.full_name


def _attr(var: str, name: str) -> str:
    return f'getattr({var}, "{name}")' if keyword.iskeyword(name) else f"{var}.{name}"


def _is_map(field: descriptor.FieldDescriptor) -> bool:
    entry = field.message_type
    return field.type == _FD.TYPE_MESSAGE and entry is not None and entry.GetOptions().map_entry


def _map_parts(
    field: descriptor.FieldDescriptor,
) -> tuple[descriptor.FieldDescriptor, descriptor.FieldDescriptor]:
    entry = field.message_type
    assert entry is not None
    return entry.fields_by_name["key"], entry.fields_by_name["value"]


def _message_type(field: descriptor.FieldDescriptor) -> descriptor.Descriptor:
    assert field.message_type is not None
    return field.message_type


def _enum_type(field: descriptor.FieldDescriptor) -> descriptor.EnumDescriptor:
    assert field.enum_type is not None
    return field.enum_type


def _plain_enum(enum: descriptor.EnumDescriptor) -> bool:
    """No value option but those json_format ignores: any other (such as pb.enumvalue.json, which renames
    a value in JSON) makes messages using the enum print through json_format."""
    for value in enum.values:
        options = descriptor_pb2.EnumValueOptions()
        options.CopyFrom(value.GetOptions())
        options.ClearField("deprecated")
        options.ClearField("features")
        options.ClearField("debug_redact")
        options.ClearField("feature_support")
        if options.ByteSize():
            return False
    return True


class _Names:
    """Unique Python names, first come first served (deterministic: callers visit in a fixed order)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.by_key: dict[tuple[str, str], str] = {}

    def get(self, kind: str, key: str, base: str) -> str:
        name = self.by_key.get((kind, key))
        if name is None:
            name, n = base, 1
            while name in self.taken:
                n += 1
                name = f"{base}_{n}"
            self.taken.add(name)
            self.by_key[(kind, key)] = name
        return name


class CodecBuilder:
    """The JSON section of one service module."""

    def __init__(
        self,
        pool: descriptor_pool.DescriptorPool,
        registry: Registry,
        options: Options,
        type_ref: Callable[[str], TypeRef],
        enum_ref: Callable[[str], TypeRef],
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.options = options
        self.type_ref = type_ref
        self.enum_ref = enum_ref
        self.names = _Names()
        self.tables: dict[tuple[str, str], EnumTable] = {}
        self.encoders: dict[str, CodecFunction] = {}
        self.decoders: dict[str, CodecFunction] = {}
        self.pending_encoders: list[descriptor.Descriptor] = []
        self.pending_decoders: list[descriptor.Descriptor] = []
        #: Python modules of the types the generated functions name (imports the module needs).
        self.modules: set[str] = set()

    def ref(self, full_name: str, enum: bool = False) -> TypeRef:
        ref = self.enum_ref(full_name) if enum else self.type_ref(full_name)
        self.modules.add(ref.module)
        return ref

    # ------------------------------------------------------------------------------------------ entry

    def build(self, methods: Iterable[Method]) -> JsonCodecs:
        methods = tuple(methods)
        for m in methods:  # the request builders' names: never taken by a generated function
            for b in m.bindings:
                self.names.taken.add(f"_{m.snake_name}_{b.index}_request")
        replies: list[ReplyCodec] = []
        reply_functions: list[CodecFunction] = []
        decoder_names: dict[str, str] = {}
        for m in methods:
            output = self.pool.FindMessageTypeByName(m.output.full_name)
            made: dict[str, tuple[str, str]] = {}  # response_body name -> (data, bytes) expressions
            for b in m.bindings:
                # No fast path when max_json_depth lets a body reach json_format's limit of 100 message
                # levels: json_format alone then reports it, with its own message.
                if b.body.kind != "none" and not b.http_body_request and self.options.max_json_depth < 100:
                    request = self.pool.FindMessageTypeByName(m.input.full_name)
                    if request.full_name not in WELL_KNOWN:
                        decoder_names[request.full_name] = self.decoder(request)
                if b.http_body_response:  # raw bytes out: no JSON codec
                    continue
                key = b.response_body.name if b.response_body else ""
                if key not in made:
                    made[key] = self.reply(m, b.index, output, key, reply_functions)
                data, as_bytes = made[key]
                replies.append(ReplyCodec(m.name, b.index, data, as_bytes))
        self.drain()
        functions = [*self.encoders.values(), *self.decoders.values(), *reply_functions]
        return JsonCodecs(
            enum_tables=tuple(self.tables.values()),
            functions=tuple(functions),
            replies=tuple(replies),
            decoders=tuple(sorted(decoder_names.items())),
        )

    def drain(self) -> None:
        while self.pending_encoders or self.pending_decoders:
            if self.pending_encoders:
                desc = self.pending_encoders.pop(0)
                self.encoders[desc.full_name] = self.encoder_function(desc)
            else:
                desc = self.pending_decoders.pop(0)
                self.decoders[desc.full_name] = self.decoder_function(desc)

    # ------------------------------------------------------------------------------------------ names

    def function_name(self, kind: str, desc: descriptor.Descriptor) -> str:
        base = "_".join(_snake(part) for part in _python_path(desc).split("."))
        return self.names.get(kind, desc.full_name, f"_{kind}_{base}")

    def table(self, enum: descriptor.EnumDescriptor, factory: str) -> str:
        key = (factory, enum.full_name)
        if key not in self.tables:
            base = "_".join(_snake(part) for part in _python_path(enum).split(".")).upper()
            suffix = "NAMES" if factory == "enum_names" else "VALUES"
            name = self.names.get(factory, enum.full_name, f"_{base}_{suffix}")
            self.tables[key] = EnumTable(name, self.ref(enum.full_name, enum=True), factory)
        return self.tables[key].name

    # ------------------------------------------------------------------------------------------ encoders

    def delegated(self, desc: descriptor.Descriptor) -> bool:
        """Messages printed by json_format itself: well-known types, extendable messages (extensions
        print as `[name]` keys) and messages with enums json_format prints by custom JSON names."""
        if desc.full_name in WELL_KNOWN or desc.is_extendable:
            return True
        for field in desc.fields:
            target = _map_parts(field)[1] if _is_map(field) else field
            if target.type == _FD.TYPE_ENUM and not _plain_enum(_enum_type(target)):
                return True
        return False

    def encoder(self, desc: descriptor.Descriptor) -> str:
        if desc.full_name not in self.encoders and desc not in self.pending_encoders:
            self.pending_encoders.append(desc)
        return self.function_name("encode", desc)

    def value(self, field: descriptor.FieldDescriptor, var: str) -> str:
        """The JSON value of one value `var` of `field` (an element, if repeated): _FieldToJsonObject."""
        kind = field.type
        if kind in _MESSAGES:
            sub = _message_type(field)
            return f"_JSON.data({var})" if self.delegated(sub) else f"{self.encoder(sub)}({var})"
        if kind == _FD.TYPE_ENUM:
            enum = _enum_type(field)
            if self.options.enums_as_ints:
                return var
            if enum.full_name == _NULL_VALUE:
                return "None"
            table = self.table(enum, "enum_names")
            return f"{table}.get({var}, {var})"
        if kind in _INT64 or kind in _UINT64:
            return f"str({var})"
        if kind == _FD.TYPE_DOUBLE:
            return f"_rt.json_double({var})"
        if kind == _FD.TYPE_FLOAT:
            return f"_rt.json_float({var})"
        if kind == _FD.TYPE_BYTES:
            return f"_rt.json_bytes({var})"
        return var  # 32-bit integers, bool, string

    def field_value(self, field: descriptor.FieldDescriptor, access: str) -> str:
        """The JSON value of the whole field read by `access` (map, list or single value)."""
        if _is_map(field):
            key_field, value_field = _map_parts(field)
            if key_field.type == _FD.TYPE_BOOL:
                key = '("true" if k else "false")'
            elif key_field.type == _FD.TYPE_STRING:
                key = "k"
            else:
                key = "str(k)"
            item = self.value(value_field, "x")
            if key == "k" and item == "x":
                return f"dict({access})"
            return f"{{{key}: {item} for k, x in {access}.items()}}"
        if field.is_repeated:
            item = self.value(field, "x")
            return f"list({access})" if item == "x" else f"[{item} for x in {access}]"
        return self.value(field, access)

    def key(self, field: descriptor.FieldDescriptor) -> str:
        return field.name if self.options.use_proto_names else field.json_name

    def oneof(self, desc: descriptor.Descriptor, field: descriptor.FieldDescriptor) -> str | None:
        """The real (not proto3-optional) oneof holding `field`."""
        info = self.registry.message(desc.full_name).field(field.name)
        return info.oneof if info is not None else None

    def encoder_function(self, desc: descriptor.Descriptor) -> CodecFunction:
        cls = self.ref(desc.full_name)
        name = self.function_name("encode", desc)
        literal: list[str] = []  # leading fields printed unconditionally: one dict display
        body: list[str] = []
        done_oneofs: set[str] = set()
        walrus = False
        for field in desc.fields:
            key, access = pyrepr(self.key(field)), _attr("m", field.name)
            oneof = self.oneof(desc, field)
            if oneof is not None:
                if oneof in done_oneofs:
                    continue
                done_oneofs.add(oneof)
                which = f"which_{oneof}"
                body.append(f'{which} = m.WhichOneof("{oneof}")')
                members = [f for f in desc.fields if self.oneof(desc, f) == oneof]
                for i, member in enumerate(members):
                    body.append(f'{"if" if i == 0 else "elif"} {which} == "{member.name}":')
                    member_access = _attr("m", member.name)
                    body.append(
                        f"    d[{pyrepr(self.key(member))}] = {self.field_value(member, member_access)}"
                    )
            elif field.has_presence:
                body.append(f'if m.HasField("{field.name}"):')
                body.append(f"    d[{key}] = {self.field_value(field, access)}")
            elif self.options.emit_unpopulated:
                line = f"{key}: {self.field_value(field, access)},"
                if body:
                    body.append(f"d[{key}] = {self.field_value(field, access)}")
                else:
                    literal.append(line)
            else:  # json_format lists a field without presence when it differs from its default
                walrus = True
                if field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT) and not field.is_repeated:
                    body.append(f"if (v := {access}) or _rt.negative_zero(v):")  # -0.0 is listed too
                else:
                    body.append(f"if v := {access}:")
                body.append(f"    d[{key}] = {self.field_value(field, 'v')}")
        lines: list[str] = []
        if walrus:
            lines.append("v: Any")
        if not body:
            if literal:
                lines += ["return {", *(f"    {line}" for line in literal), "}"]
            else:
                lines.append("return {}")
        else:
            if literal:
                lines += ["d: dict[str, Any] = {", *(f"    {line}" for line in literal), "}"]
            else:
                lines.append("d: dict[str, Any] = {}")
            lines += [*body, "return d"]
        return CodecFunction(
            name,
            f"{name}(m: {cls.expr}) -> dict[str, Any]",
            f"{desc.full_name} as JSON data: what json_format.MessageToDict returns.",
            tuple(lines),
        )

    # ------------------------------------------------------------------------------------------ replies

    def reply(
        self, m: Method, index: int, output: descriptor.Descriptor, body: str, functions: list[CodecFunction]
    ) -> tuple[str, str]:
        """(data, bytes) expressions turning a reply of `m` (or its response_body field) into JSON, each
        only where the method's handler needs it ("" otherwise): data for streams, bytes for one reply."""
        if self.delegated(output):
            return self.delegated_reply(output, body)
        out = self.ref(output.full_name).expr
        prefix = f"_{m.snake_name}_{index}"
        data = ""
        if not body:
            data = self.encoder(output)
            value = f"{data}(reply)"
        else:
            field = output.fields_by_name[body]
            value = self.field_value(field, _attr("reply", field.name))
            if field.has_presence and (field.type not in _MESSAGES or field.is_repeated):
                value = f'{value} if reply.HasField("{field.name}") else None'  # as JsonStyle.field_data
            what = f"{m.name}'s {output.full_name}.{field.name}"
            if m.streaming:
                data = self.names.get("result", prefix, f"{prefix}_result")
                signature = f"{data}(reply: {out}) -> Any"
                functions.append(
                    CodecFunction(data, signature, f"JSON data of {what}.", (f"return {value}",))
                )
        if m.kind == "unary_stream":
            return data, ""
        if not body:  # one function per reply type: `_dump_<message>`
            name = self.function_name("dump", output)
            if any(f.name == name for f in functions):
                return data, name
            what = output.full_name
        else:
            name = self.names.get("reply", prefix, f"{prefix}_reply")
        signature = f"{name}(reply: {out}) -> bytes"
        functions.append(
            CodecFunction(name, signature, f"JSON of {what}.", (f"return _rt.dump_json({value})",))
        )
        return data, name

    def delegated_reply(self, output: descriptor.Descriptor, body: str) -> tuple[str, str]:
        """Replies json_format prints: the JsonStyle methods, as before specialisation."""
        if not body:
            return "_JSON.data", "_JSON.encode"
        field = output.fields_by_name[body]
        if field.type in _MESSAGES and not field.is_repeated:
            access = _attr("reply", field.name)
            return f"lambda reply: _JSON.data({access})", f"lambda reply: _JSON.encode({access})"
        key = pyrepr(self.key(field))
        return (
            f"lambda reply: _JSON.field_data(reply, {key})",
            f"lambda reply: _JSON.encode_field(reply, {key})",
        )

    # ------------------------------------------------------------------------------------------ decoders

    def decoder(self, desc: descriptor.Descriptor) -> str:
        if desc.full_name not in self.decoders and desc not in self.pending_decoders:
            self.pending_decoders.append(desc)
        return self.function_name("decode", desc)

    def keys(self, desc: descriptor.Descriptor) -> dict[descriptor.FieldDescriptor, list[str]]:
        """field -> the JSON keys naming it, as json_format resolves keys (JSON name first, then proto
        name). A key the runtime's checks would resolve to another field (a json_name equal to another
        field's proto name) is left out: the fast path refuses it and json_format decides."""
        by_json = {f.json_name: f for f in desc.fields}
        by_name = {f.name: f for f in desc.fields}
        keys: dict[descriptor.FieldDescriptor, list[str]] = {f: [] for f in desc.fields}
        for key in [*by_json, *(n for n in by_name if n not in by_json)]:
            json_field, name_field = by_json.get(key), by_name.get(key)
            if json_field is not None and name_field is not None and json_field is not name_field:
                continue
            field = json_field or name_field
            assert field is not None
            keys[field].append(key)
        return keys

    def converter(self, field: descriptor.FieldDescriptor) -> str | None:
        """The runtime function reading one JSON value of `field`'s scalar type (None: no fast path)."""
        kind = field.type
        if kind == _FD.TYPE_ENUM:
            return self.table(_enum_type(field), "fast_enum")
        simple = {
            _FD.TYPE_DOUBLE: "_rt.fast_double",
            _FD.TYPE_FLOAT: "_rt.fast_float",
            _FD.TYPE_BOOL: "_rt.fast_bool",
            _FD.TYPE_STRING: "_rt.fast_string",
        }
        if kind in simple:
            return simple[kind]
        for kinds, name in ((_INT32, "int32"), (_UINT32, "uint32"), (_INT64, "int64"), (_UINT64, "uint64")):
            if kind in kinds:
                return f"_rt.fast_{name}"
        return None  # bytes: json_format decides

    def map_key_converter(self, field: descriptor.FieldDescriptor) -> str:
        kind = field.type
        if kind == _FD.TYPE_STRING:
            return "_rt.fast_string"
        if kind == _FD.TYPE_BOOL:
            return "_rt.fast_key_bool"
        for kinds, name in ((_INT32, "int32"), (_UINT32, "uint32"), (_INT64, "int64"), (_UINT64, "uint64")):
            if kind in kinds:
                return f"_rt.fast_key_{name}"
        raise AssertionError(f"map key type {kind}")

    def sub_decoder(self, field: descriptor.FieldDescriptor) -> str | None:
        sub = _message_type(field)
        return None if sub.full_name in WELL_KNOWN else self.decoder(sub)

    def branch(self, field: descriptor.FieldDescriptor) -> list[str] | None:
        """Statements reading the JSON value `v` into `field` of `m`, returning False when `v` is not
        plainly valid; None when the field has no fast path."""
        access = _attr("m", field.name)
        if _is_map(field):
            key_field, value_field = _map_parts(field)
            key = self.map_key_converter(key_field)
            if value_field.type in _MESSAGES:
                sub = self.sub_decoder(value_field)
                if sub is None:
                    return None
                return [
                    "if type(v) is not dict:",
                    "    return False",
                    "for k, item in v.items():",
                    f"    if (x := {key}(k)) is None or type(item) is not dict:",
                    "        return False",
                    f"    if not {sub}(item, {access}[x]):",
                    "        return False",
                ]
            convert = self.converter(value_field)
            if convert is None:
                return None
            return [f"if not _rt.fast_map({access}, v, {key}, {convert}):", "    return False"]
        if field.type in _MESSAGES:
            sub = self.sub_decoder(field)
            if sub is None:
                return None
            if field.is_repeated:
                return [
                    "if type(v) is not list:",
                    "    return False",
                    "for item in v:",
                    f"    if type(item) is not dict or not {sub}(item, {access}.add()):",
                    "        return False",
                ]
            return [
                "if type(v) is not dict:",
                "    return False",
                f"{access}.SetInParent()",
                f"if not {sub}(v, {access}):",
                "    return False",
            ]
        convert = self.converter(field)
        if convert is None:
            return None
        if field.is_repeated:
            return [f"if not _rt.fast_list({access}, v, {convert}):", "    return False"]
        assign = f'setattr(m, "{field.name}", x)' if keyword.iskeyword(field.name) else f"{access} = x"
        return [f"if (x := {convert}(v)) is None:", "    return False", assign]

    def decoder_function(self, desc: descriptor.Descriptor) -> CodecFunction:
        cls = self.ref(desc.full_name)
        name = self.function_name("decode", desc)
        lines: list[str] = []
        keys = self.keys(desc)
        for field in desc.fields:
            names = keys[field]
            branch = self.branch(field) if names else None
            if branch is None:
                continue
            test = " or ".join(f"key == {pyrepr(k)}" for k in names)
            lines.append(f"{'elif' if lines else 'if'} {test}:")
            if len(names) > 1:  # protojson refuses one field given by both names
                both = " and ".join(f"{pyrepr(k)} in data" for k in names)
                lines += [f"    if {both}:", "        return False"]
            oneof = self.oneof(desc, field)
            if oneof is not None:  # two members of one oneof: json_format's error
                lines += [f'    if m.WhichOneof("{oneof}") is not None:', "        return False"]
            lines += [f"    {line}" for line in branch]
        if lines:
            body = ["for key, v in data.items():", *(f"    {line}" for line in lines)]
            body += ["    else:", "        return False", "return True"]
        else:
            body = ["return not data"]
        return CodecFunction(
            name,
            f"{name}(data: dict[str, Any], m: {cls.expr}) -> bool",
            f"Fast path of JSON into {desc.full_name}: False on anything not plainly valid.",
            tuple(body),
        )

"""The generated JSON codecs (protoc_gen_pygateway/codecs.py) agree with json_format, property-tested.

Modules are generated from testdata/protos/alltypes (every scalar type, repeated and map fields of each
kind, oneofs, proto3 optional, recursive messages, enums with an alias, every well-known type, proto2
presence, closed enums, groups and extensions) under every combination of the options that change JSON
output (use_proto_names, emit_unpopulated, enums_as_ints).

* Encoders: `_encode_<message>(m)` equals `json_format.MessageToDict(m, <module options>)` for random
  messages (compared as canonical JSON, so that 1 and 1.0 or True and 1 differ; key order does not
  matter), and every binding's reply function gives what the JsonStyle expression it replaced gave.
* Decoders: `JsonStyle.parse`/`parse_field` with the generated fast path give the same message (wire
  bytes) or the same error (status, code, message) as without it, for bodies printed from random
  messages and for mutated and malformed ones; the fast path is taken for plain bodies.
* `_load_json` (prebuilt decoder, faster duplicate check) behaves exactly as the original `json.loads`
  call, errors included.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import json
import keyword
import math
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import (
    any_pb2,
    descriptor,
    descriptor_pool,
    json_format,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)
from google.protobuf.compiler import plugin_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protoc_gen_pygateway.builder import build_services
from protoc_gen_pygateway.descriptors import Registry
from protoc_gen_pygateway.model import Binding
from protoc_gen_pygateway.options import Options, parse_options
from protoc_gen_pygateway.plugin import generate
from protoc_gen_pygateway.render import _reply
from tests.golden import OTHER_CASES
from tests.protoc_support import code_generator_request, generate_tree

PROTOS = OTHER_CASES["alltypes"][0]
FD = descriptor.FieldDescriptor
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
#: (use_proto_names, emit_unpopulated, enums_as_ints) for every module variant.
STYLES = list(itertools.product((False, True), repeat=3))
#: The reply functions only combine encoders (tested under every style): a few styles suffice.
REPLY_STYLES = [(False, True, False), (True, False, True), (False, False, False)]


def parameter(style: tuple[bool, bool, bool], extra: str = "") -> str:
    names, unpopulated, ints = (str(v).lower() for v in style)
    text = f"use_proto_names={names},emit_unpopulated={unpopulated},enums_as_ints={ints}"
    return f"{text},{extra}" if extra else text


class Variant:
    """The gateway modules generated with one plugin parameter, loaded under names of their own."""

    def __init__(self, base: plugin_pb2.CodeGeneratorRequest, param: str, out: Path, tag: str) -> None:
        request = plugin_pb2.CodeGeneratorRequest()
        request.CopyFrom(base)
        request.parameter = param
        response = generate(request)
        assert not response.error, response.error
        self.options = parse_options(param)
        self.services = {
            s.output_file: s for s in build_services(Registry(list(request.proto_file)), PROTOS, self.options)
        }
        self.modules: dict[str, types.ModuleType] = {}
        for file in response.file:
            if "_gateway_" not in file.name:
                continue
            path = out / tag / file.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(file.content)
            spec = importlib.util.spec_from_file_location(f"codec_{tag}_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.modules[file.name] = module

    @property
    def main(self) -> types.ModuleType:
        return self.modules["alltypes/v1/alltypes_pb2_gateway_all_types_service.py"]

    @property
    def legacy(self) -> types.ModuleType:
        return self.modules["alltypes/v1/legacy_pb2_gateway_legacy_service.py"]


REQUEST: list[plugin_pb2.CodeGeneratorRequest] = []


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pb2 modules and the runtime (default options), on sys.path for the variants."""
    out = tmp_path_factory.mktemp("alltypes")
    generate_tree(out, PROTOS)
    sys.path.insert(0, str(out))
    REQUEST.append(code_generator_request(PROTOS))
    return out


@pytest.fixture(scope="module")
def variants(tree: Path) -> dict[tuple[bool, bool, bool], Variant]:
    return {
        style: Variant(REQUEST[0], parameter(style), tree, "v" + "".join("01"[v] for v in style))
        for style in STYLES
    }


@pytest.fixture(scope="module")
def pb(tree: Path) -> types.ModuleType:
    from alltypes.v1 import alltypes_pb2  # type: ignore[import-not-found]

    return alltypes_pb2  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def legacy_pb(tree: Path) -> types.ModuleType:
    from alltypes.v1 import legacy_pb2  # type: ignore[import-not-found]

    return legacy_pb2  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def rt(tree: Path) -> types.ModuleType:
    import pygateway_runtime

    return pygateway_runtime


# ---------------------------------------------------------------------------------------------- messages

INTS = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}


def ints(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, 0, 1, -1, 2**31, 2**53 + 1) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


TEXT = st.text(max_size=8) | st.sampled_from(["", "é", "\U0001f600", '"\\', "a\nb"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
FIELD_PATHS = st.lists(
    st.from_regex(r"[a-z]{1,4}(_[a-z]{1,4}){0,2}(\.[a-z]{1,4}){0,1}", fullmatch=True), max_size=3
)


def scalar(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in INTS:
        return ints(*INTS[kind])
    if kind == FD.TYPE_DOUBLE:
        return st.floats() | st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1e300, 5e-324])
    if kind == FD.TYPE_FLOAT:
        return st.floats(width=32) | st.sampled_from([0.1, -0.0, 3.4028234663852886e38, math.nan, 1e-45])
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind == FD.TYPE_STRING:
        return TEXT
    if kind == FD.TYPE_BYTES:
        return st.binary(max_size=6)
    if kind == FD.TYPE_ENUM:
        assert field.enum_type is not None
        known = st.sampled_from(sorted(field.enum_type.values_by_number))
        return known if field.enum_type.is_closed else known | st.integers(-3, 9)
    raise AssertionError(kind)


def well_known(desc: descriptor.Descriptor) -> st.SearchStrategy[Any] | None:
    """Valid values of the well-known types (json_format cannot print every message, e.g. NaN Values)."""
    name = desc.full_name.removeprefix("google.protobuf.")
    cls = message_factory.GetMessageClass(desc)

    def build(apply: Callable[[Any], None]) -> Any:
        msg = cls()
        apply(msg)
        return msg

    if name == "Timestamp":
        return st.builds(
            lambda s, n: cls(seconds=s, nanos=n),
            st.integers(-62135596800, 253402300799),
            st.integers(0, 999999999),
        )
    if name == "Duration":
        return st.builds(
            lambda s, n: cls(seconds=s, nanos=n if s >= 0 else -n),
            st.integers(-315576000000, 315576000000),
            st.integers(0, 999999999),
        )
    if name == "FieldMask":
        return FIELD_PATHS.map(lambda paths: cls(paths=paths))
    if name in ("Struct", "Value", "ListValue"):
        shapes = {
            "Struct": st.dictionaries(TEXT, JSON_VALUES, max_size=3),
            "ListValue": st.lists(JSON_VALUES, max_size=3),
        }
        return shapes.get(name, JSON_VALUES).map(lambda value: json_format.ParseDict(value, cls()))
    if name == "Any":
        inner = st.one_of(
            st.builds(lambda s: timestamp_pb2.Timestamp(seconds=s), st.integers(0, 10**9)),
            st.dictionaries(TEXT, JSON_VALUES, max_size=2).map(
                lambda d: json_format.ParseDict(d, struct_pb2.Struct())
            ),
        )
        return st.one_of(st.just(any_pb2.Any()), inner.map(lambda m: build(lambda a: a.Pack(m))))
    if name == "Empty":
        return st.just(cls())
    if name.endswith("Value"):  # wrappers
        return scalar(desc.fields_by_name["value"]).map(lambda v: cls(value=v))
    return None


@st.composite
def messages(draw: st.DrawFn, cls: Any, depth: int = 0) -> Any:
    """A random message of `cls`: each field set or not, at most one member per oneof."""
    msg = cls()
    desc = msg.DESCRIPTOR
    chosen: set[str] = set()
    for oneof in desc.oneofs:
        members = list(oneof.fields)
        if len(members) > 1 or oneof.name != f"_{members[0].name}":  # not a proto3 `optional`
            pick = draw(st.sampled_from([None, *members]))
            chosen.update(f.name for f in members if f is not pick)
    for field in desc.fields:
        if field.name in chosen or not draw(st.booleans()):
            continue
        set_field(draw, msg, field, depth)
    if desc.is_extendable and draw(st.booleans()):
        for extension in desc.file.extensions_by_name.values():
            if extension.containing_type is desc:
                msg.Extensions[extension] = draw(scalar(extension))
    return msg


def value_of(draw: st.DrawFn, field: descriptor.FieldDescriptor, depth: int) -> Any:
    if field.type in (FD.TYPE_MESSAGE, FD.TYPE_GROUP):
        assert field.message_type is not None
        strategy = (
            well_known(field.message_type) if field.message_type.full_name.startswith("google.") else None
        )
        if strategy is None:
            cls = message_factory.GetMessageClass(field.message_type)
            strategy = messages(cls, depth + 1)
        return draw(strategy)
    return draw(scalar(field))


def set_field(draw: st.DrawFn, msg: Any, field: descriptor.FieldDescriptor, depth: int) -> None:
    target = getattr(msg, field.name)
    is_message = field.type in (FD.TYPE_MESSAGE, FD.TYPE_GROUP)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field, value_field = (
            field.message_type.fields_by_name["key"],
            field.message_type.fields_by_name["value"],
        )
        for _ in range(draw(st.integers(0, 3 if depth < 2 else 0))):
            key = draw(scalar(key_field))
            if value_field.type == FD.TYPE_MESSAGE:
                target[key].CopyFrom(value_of(draw, value_field, depth))
            else:
                target[key] = draw(scalar(value_field))
    elif field.is_repeated:
        for _ in range(draw(st.integers(0, 3 if depth < 2 or not is_message else 0))):
            if is_message:
                target.add().CopyFrom(value_of(draw, field, depth))
            else:
                target.append(draw(scalar(field)))
    elif is_message:
        if depth < 3:
            target.SetInParent()
            target.CopyFrom(value_of(draw, field, depth))
    else:
        setattr(msg, field.name, draw(scalar(field)))


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, allow_nan=False)


def to_dict(msg: Any, style: tuple[bool, bool, bool]) -> Any:
    names, unpopulated, ints_ = style
    return json_format.MessageToDict(
        msg,
        preserving_proto_field_name=names,
        always_print_fields_with_no_presence=unpopulated,
        use_integers_for_enums=ints_,
    )


# ---------------------------------------------------------------------------------------------- encoders


def encoder_cases() -> Iterator[tuple[str, str, str]]:
    for module, cls in [("main", "Everything"), ("main", "Scalars"), ("main", "Node"), ("legacy", "Legacy")]:
        yield (
            module,
            cls,
            f"_encode_{''.join('_' + c.lower() if c.isupper() else c for c in cls).lstrip('_')}",
        )


@pytest.mark.parametrize("style", STYLES, ids=lambda s: "".join("01"[v] for v in s))
@pytest.mark.parametrize(("module", "cls", "function"), list(encoder_cases()))
def test_encoders_equal_message_to_dict(
    variants: dict[tuple[bool, bool, bool], Variant],
    pb: types.ModuleType,
    legacy_pb: types.ModuleType,
    style: tuple[bool, bool, bool],
    module: str,
    cls: str,
    function: str,
) -> None:
    encode = getattr(getattr(variants[style], module), function)
    message_class = getattr(legacy_pb if module == "legacy" else pb, cls)

    @SETTINGS
    @given(messages(message_class))
    def check(msg: Any) -> None:
        assert canonical(encode(msg)) == canonical(to_dict(msg, style))

    check()


def test_encoder_edge_values(variants: dict[tuple[bool, bool, bool], Variant], pb: types.ModuleType) -> None:
    """Values worth naming: -0.0 is populated, NaN/Infinity print as strings, unknown enum numbers as
    numbers, float32 in its shortest form, an alias as the first name of its number."""
    scalars = pb.Scalars(f_double=-0.0, f_float=0.1, f_enum=7)
    oneofs = pb.Oneofs(o_double=0.0)  # a oneof member set to its default is printed
    repeated = pb.Repeated(r_double=[math.nan, math.inf, -math.inf, -0.0], r_enum=[1, 2, -1, 42])
    for style, variant in variants.items():
        for msg, encode in [
            (scalars, variant.main._encode_scalars),
            (oneofs, variant.main._encode_oneofs),
            (repeated, variant.main._encode_repeated),
            (pb.Scalars(), variant.main._encode_scalars),
        ]:
            assert canonical(encode(msg)) == canonical(to_dict(msg, style))
    data = variants[(False, False, False)].main._encode_scalars(scalars)
    assert data == {"fDouble": -0.0, "fFloat": 0.1, "fEnum": 7}
    assert math.copysign(1.0, data["fDouble"]) < 0
    assert variants[(False, False, False)].main._encode_scalars(pb.Scalars(f_enum=1))["fEnum"] == "COLOR_RED"


def json_style_expression(binding: Binding, level: str, options: Options) -> str:
    """The reference: the `_JSON.*` expression handlers passed before specialisation (JsonStyle, i.e.
    json_format), for JSON bytes (`level="bytes"`) or JSON data (`"data"`)."""
    field = binding.response_body
    whole, part = (
        ("_JSON.encode", "_JSON.encode_field") if level == "bytes" else ("_JSON.data", "_JSON.field_data")
    )
    if field is None:
        return whole
    if field.kind == "message" and not field.repeated:
        access = f'getattr(reply, "{field.name}")' if keyword.iskeyword(field.name) else f"reply.{field.name}"
        return f"lambda reply: {whole}({access})"
    key = field.name if options.use_proto_names else field.json_name
    return f"lambda reply: {part}(reply, {key!r})"


def reply_cases(variant: Variant) -> Iterator[tuple[str, Any, Callable[[Any], Any], Callable[[Any], Any]]]:
    """(label, output class name, new function, old function) for every reply codec of the variant."""
    for file, service in variant.services.items():
        module = variant.modules[file]
        for method in service.methods:
            for binding in method.bindings:
                levels = ["data"] if method.kind == "unary_stream" else ["bytes"]
                if method.streaming and method.kind != "unary_stream":
                    levels.append("data")
                for level in levels:
                    new = eval(_reply(binding, method, service, level), module.__dict__)
                    old = eval(json_style_expression(binding, level, service.options), module.__dict__)
                    label = f"{method.name}[{binding.index}] {level}"
                    yield label, method.output, new, old


@pytest.mark.parametrize("style", REPLY_STYLES, ids=lambda s: "".join("01"[v] for v in s))
def test_reply_functions_equal_the_json_style_expressions(
    variants: dict[tuple[bool, bool, bool], Variant], style: tuple[bool, bool, bool]
) -> None:
    """Every binding's generated reply codec (whole reply or response_body field, data or bytes) gives
    what the `_JSON.*` expression used before specialisation gives."""
    variant = variants[style]
    cases = list(reply_cases(variant))
    assert len(cases) >= 12

    @settings(SETTINGS, max_examples=8)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        for label, output, new, old in cases:
            desc = descriptor_pool.Default().FindMessageTypeByName(output.full_name)
            strategy = well_known(desc)
            if strategy is None:
                strategy = messages(message_factory.GetMessageClass(desc))
            msg = data.draw(strategy, label=label)
            assert printed(new, msg) == printed(old, msg), label

    check()


def printed(encode: Callable[[Any], Any], msg: Any) -> tuple[str, str]:
    """What `encode` gives for `msg` (bytes read back), or the exception it raises."""
    try:
        value = encode(msg)
    except Exception as err:  # e.g. response_body into a well-known reply: the same error before and after
        return type(err).__name__, str(err)
    return ("bytes", canonical(json.loads(value))) if isinstance(value, bytes) else ("data", canonical(value))


# ---------------------------------------------------------------------------------------------- decoders


def all_keys(pb: types.ModuleType, legacy_pb: types.ModuleType) -> list[str]:
    keys: set[str] = {"[alltypes.v1.rank]", "unknownField", "@type"}
    pending = [pb.Everything.DESCRIPTOR, legacy_pb.Legacy.DESCRIPTOR]
    seen: set[str] = set()
    while pending:
        desc = pending.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        for field in desc.fields:
            keys.update((field.name, field.json_name))
            if field.message_type is not None:
                pending.append(field.message_type)
    return sorted(keys)


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63, 2**64, -(2**63) - 1, 10**400]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, -0.0, 1.5, 3.5e38, 1e308]),
    st.sampled_from(
        ["", "1", "-1", "01", "-0", "1.0", "1e3", "0x10", " 1", "+1", "1_000", "٣", "NaN", "Infinity"]
    ),
    st.sampled_from(
        ["COLOR_RED", "COLOR_CRIMSON", "MODE_A", "KIND_A", "nope", "true", "false", "AAEC", "a\ud800"]
    ),
    st.sampled_from(["2024-01-01T00:00:00Z", "1.5s", "a.b,cD", "\udc00x"]),
    st.lists(st.integers(-3, 3) | TEXT, max_size=2),
    st.dictionaries(TEXT, st.integers(-3, 3) | TEXT, max_size=2),
    # Fresh containers per draw (st.just would hand out one shared object, which `mutated` then edits).
    st.builds(dict),
    st.builds(list),
    st.builds(lambda: [None]),
)


def containers(doc: Any) -> Iterator[Any]:
    if isinstance(doc, (dict, list)):
        yield doc
        for item in doc.values() if isinstance(doc, dict) else doc:
            yield from containers(item)


def variants_of(value: Any) -> list[Any]:
    """Other spellings json_format may or may not accept for the same value."""
    if isinstance(value, bool):
        return [int(value), str(value).lower()]
    if isinstance(value, int):
        as_float = [float(value)] if abs(value) < 2**1023 else []  # float() of a larger int overflows
        return [str(value), *as_float, value + 2**64, -value - 1, True]
    if isinstance(value, float):
        return [int(value) if math.isfinite(value) else 0, str(value), repr(value)]
    if isinstance(value, str):
        return [value + "x", value.lower(), 1, [value], None]
    return [None]


@st.composite
def mutated(draw: st.DrawFn, doc: Any, keys: list[str], names: dict[str, str]) -> Any:
    """`doc` with 1-3 random changes: replaced or respelled values, added, removed or twinned keys."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(list(containers(doc))))
        op = draw(st.sampled_from(["replace", "respell", "add", "delete", "twin"]))
        if isinstance(target, list):
            if target and op in ("replace", "respell", "delete"):
                i = draw(st.integers(0, len(target) - 1))
                target[i] = draw(JUNK) if op == "replace" else draw(st.sampled_from(variants_of(target[i])))
            else:
                target.append(draw(JUNK))
            continue
        present = sorted(target)
        if op == "add" or not present:
            target[draw(st.sampled_from(keys))] = draw(JUNK)
        elif op == "delete":
            del target[draw(st.sampled_from(present))]
        elif op == "twin":  # the same field by its other name
            key = draw(st.sampled_from(present))
            other = names.get(key)
            if other is not None:
                target[other] = draw(st.sampled_from([target[key], *variants_of(target[key])]))
        else:
            key = draw(st.sampled_from(present))
            value = target[key]
            target[key] = draw(JUNK) if op == "replace" else draw(st.sampled_from(variants_of(value)))
    return doc


def twin_names(pb: types.ModuleType, legacy_pb: types.ModuleType) -> dict[str, str]:
    names: dict[str, str] = {}
    pending = [pb.Everything.DESCRIPTOR, legacy_pb.Legacy.DESCRIPTOR]
    seen: set[str] = set()
    while pending:
        desc = pending.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        for field in desc.fields:
            if field.name != field.json_name:
                names[field.name], names[field.json_name] = field.json_name, field.name
            if field.message_type is not None:
                pending.append(field.message_type)
    return names


def outcome(rt: types.ModuleType, run: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("message", run().SerializeToString(deterministic=True))
    except rt.HttpError as err:
        return ("error", err.status, err.code, err.message)
    except Exception as err:  # whatever the old path raised, the new one must too
        return ("exception", type(err).__name__, str(err))


class Target:
    """One request builder's body call: `parse` (body `*`) or `parse_field` (body field)."""

    def __init__(self, module: types.ModuleType, cls: Any, field: str | None, decoder: str) -> None:
        self.module, self.cls, self.field = module, cls, field
        self.fast = getattr(module, decoder)

    def run(self, body: bytes, fast: bool) -> Any:
        payload = self.cls()
        style = self.module._JSON
        decoder = self.fast if fast else None
        if self.field is None:
            style.parse(payload, body, decoder)
        else:
            style.parse_field(payload, self.field, body, required=True, fast=decoder)
        return payload


def targets(
    variant: Variant, pb: types.ModuleType, legacy_pb: types.ModuleType
) -> dict[str, tuple[Target, Any]]:
    """name -> (target, class of the JSON value the body holds)."""
    main = variant.main
    return {
        "Everything": (Target(main, pb.Everything, None, "_decode_everything"), pb.Everything),
        "Scalars": (Target(main, pb.Scalars, None, "_decode_scalars"), pb.Scalars),
        "Node": (Target(main, pb.Node, None, "_decode_node"), pb.Node),
        "Everything.node": (Target(main, pb.Everything, "node", "_decode_everything"), pb.Node),
        "Everything.oneofs": (Target(main, pb.Everything, "oneofs", "_decode_everything"), pb.Oneofs),
        "Legacy": (Target(variant.legacy, legacy_pb.Legacy, None, "_decode_legacy"), legacy_pb.Legacy),
    }


def renamed(doc: Any, names: dict[str, str], flip: Callable[[], bool]) -> Any:
    """`doc` with some keys in their other spelling (proto vs JSON name)."""
    if isinstance(doc, dict):
        return {(names.get(k, k) if flip() else k): renamed(v, names, flip) for k, v in doc.items()}
    if isinstance(doc, list):
        return [renamed(v, names, flip) for v in doc]
    return doc


DECODE_VARIANTS = [(False, True, False), (True, False, True)]


@pytest.mark.parametrize("ignore", [False, True], ids=["reject-unknown", "ignore-unknown"])
@pytest.mark.parametrize(
    "name", ["Everything", "Scalars", "Node", "Everything.node", "Everything.oneofs", "Legacy"]
)
def test_fast_path_gives_the_slow_path_result(
    tree: Path,
    rt: types.ModuleType,
    pb: types.ModuleType,
    legacy_pb: types.ModuleType,
    name: str,
    ignore: bool,
    tmp_path: Path,
) -> None:
    style = DECODE_VARIANTS[ignore]
    extra = "unknown_body_fields=ignore" if ignore else ""
    variant = Variant(
        REQUEST[0], parameter(style, extra), tmp_path, f"d{int(ignore)}{name.replace('.', '_')}"
    )
    target, cls = targets(variant, pb, legacy_pb)[name]
    keys, names = all_keys(pb, legacy_pb), twin_names(pb, legacy_pb)
    taken = [0, 0]

    def compare(body: bytes) -> None:
        fast = outcome(rt, lambda: target.run(body, True))
        slow = outcome(rt, lambda: target.run(body, False))
        assert fast == slow, body

    @SETTINGS
    @given(messages(cls), st.randoms(use_true_random=False), st.data())
    def check(msg: Any, random: Any, data: st.DataObject) -> None:
        doc = renamed(
            to_dict(msg, (data.draw(st.booleans()), data.draw(st.booleans()), False)),
            names,
            lambda: random.random() < 0.3,
        )
        body = json.dumps(doc).encode()
        compare(body)
        taken[1] += 1
        probe = cls() if target.field is None else target.cls()
        wrapped = doc if target.field is None else {target.field: doc}
        taken[0] += bool(target.fast(wrapped, probe))
        compare(json.dumps(data.draw(mutated(doc, keys, names))).encode())

    check()
    assert taken[0] > 0, "the fast path was never taken"


@SETTINGS
@given(st.data())
def test_fast_path_on_arbitrary_json(
    tree: Path, rt: types.ModuleType, pb: types.ModuleType, data: st.DataObject
) -> None:
    """Bodies that are not a message's JSON at all: same outcome with and without the fast path."""
    target = plain_target(tree, pb)
    doc = data.draw(
        st.dictionaries(
            st.sampled_from(["scalars", "maps", "repeated", "oneofs", "node", "color"]), JUNK | JSON_VALUES
        )
    )
    body = json.dumps(doc).encode()
    assert outcome(rt, lambda: target.run(body, True)) == outcome(rt, lambda: target.run(body, False))


VARIANT_CACHE: dict[str, Variant] = {}


def plain_target(tree: Path, pb: types.ModuleType) -> Target:
    """Everything's body decoder in a module generated with default options (generated once)."""
    variant = VARIANT_CACHE.get("plain")
    if variant is None:
        variant = VARIANT_CACHE["plain"] = Variant(REQUEST[0], "", tree, "arbitrary")
    return Target(variant.main, pb.Everything, None, "_decode_everything")


def test_fast_path_taken_for_plain_bodies(
    variants: dict[tuple[bool, bool, bool], Variant], pb: types.ModuleType
) -> None:
    main = variants[(False, True, False)].main
    body = {
        "scalars": {
            "fInt64": "-9223372036854775808",
            "f_uint64": 18446744073709551615,
            "fEnum": "COLOR_CRIMSON",
        },
        "maps": {
            "int32Int64": {"-5": "7"},
            "boolFixed64": {"true": "1"},
            "stringMessage": {"a": {"weight": 3}},
        },
        "repeated": {"rFloat": [1.5, 2], "rEnum": [2, "COLOR_GREEN"], "rMessage": [{}, {"name": "n"}]},
        "oneofs": {"oInt64": 5, "sBool": False},
        "optionals": {"pString": "", "pMessage": {}},
        "otherName": "x",
        "from": "y",
        "import": [1, 2],
    }
    msg = pb.Everything()
    assert main._decode_everything(body, msg)
    reference = json_format.ParseDict(body, pb.Everything())
    assert msg.SerializeToString(deterministic=True) == reference.SerializeToString(deterministic=True)
    for refused in [
        {"scalars": {"fBytes": "AAEC"}},  # bytes: json_format decides
        {"wellKnown": {"timestamp": "2024-01-01T00:00:00Z"}},  # well-known types: json_format decides
        {"scalars": {"fInt32": 1.0}},
        {"scalars": {"fInt32": True}},
        {"scalars": {"fInt64": "01x"}},
        {"scalars": {"fString": None}},
        {"scalars": {"fString": "a", "f_string": "b"}},
        {"oneofs": {"oInt64": 5, "oString": "x"}},
        {"maps": {"int32Int64": {"05": "7"}}},
        {"scalars": {"fEnum": "1"}},
        {"unknown": 1},
    ]:
        assert not main._decode_everything(refused, pb.Everything()), refused


# ---------------------------------------------------------------------------------------------- _load_json


def original_load_json(rt: types.ModuleType, body: bytes, max_depth: int) -> Any:
    """`_load_json` before issue 5: json.loads with the hooks, one decoder per call."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate key {key!r}")
            result[key] = value
        return result

    text = rt.jsonstyle._utf8(body)
    rt.jsonstyle._check_depth(text, max_depth)
    try:
        return json.loads(
            text,
            object_pairs_hook=no_duplicates,
            parse_constant=rt.jsonstyle._no_constant,
            parse_float=rt.jsonstyle._finite,
        )
    except (ValueError, RecursionError) as err:
        raise rt.bad_request(f"invalid request body: malformed JSON: {err}") from None


RAW_BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(
        st.sampled_from(
            ['{"a":1', ',"a":2', ',"b":[', "]", "}", "NaN", "1e400", " ", "\ufeff", '"\\ud800"', "[[{}]]"]
        ),
        max_size=6,
    ).map(lambda parts: "".join(parts).encode()),
    st.builds(
        lambda prefix, v: prefix + json.dumps(v).encode(),
        st.sampled_from([b"\xef\xbb\xbf", b"\xff", b" "]),
        JSON_VALUES,
    ),
    st.binary(max_size=12),
)


@SETTINGS
@given(RAW_BODIES, st.sampled_from([2, 64]))
def test_load_json_unchanged(tree: Path, rt: types.ModuleType, body: bytes, depth: int) -> None:
    assert outcome_data(rt, lambda: rt.jsonstyle._load_json(body, depth)) == outcome_data(
        rt, lambda: original_load_json(rt, body, depth)
    )


def outcome_data(rt: types.ModuleType, run: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("data", canonical(run()))
    except rt.HttpError as err:
        return ("error", err.status, err.code, err.message)


def test_load_json_errors(tree: Path, rt: types.ModuleType) -> None:
    for body, message in [
        (b'{"a":1,"b":2,"a":3}', "malformed JSON: duplicate key 'a'"),
        (
            '\ufeff{"a":1}'.encode(),
            "malformed JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1",
        ),
        (b'{"a":NaN}', "malformed JSON: NaN is not JSON"),
    ]:
        with pytest.raises(rt.HttpError) as caught:
            rt.jsonstyle._load_json(body, 64)
        assert message in caught.value.message


FLT_MAX = 3.4028234663852886e38


@pytest.mark.parametrize(
    ("doc", "where", "problem"),
    [
        ({"scalars": {"fFloat": "-3.5e38"}}, "scalars.fFloat", "-3.5e38 is out of range for float"),
        ({"scalars": {"fDouble": "1e400"}}, "scalars.fDouble", "1e400 is out of range for double"),
        ({"repeated": {"rFloat": [1, "1e39"]}}, "repeated.rFloat[1]", "1e39 is out of range for float"),
        ({"maps": {"uint64Float": {"7": "4e38"}}}, "maps.uint64Float[7]", "4e38 is out of range for float"),
        ({"wellKnown": {"floatValue": "5e38"}}, "wellKnown.floatValue", "5e38 is out of range for float"),
        ({"wellKnown": {"doubleValue": "-1e999"}}, "wellKnown.doubleValue", "-1e999 is out of range"),
        ({"scalars": {"fDouble": "1_0"}}, "scalars.fDouble", "must be a number, not '1_0'"),
        ({"scalars": {"fFloat": " 1"}}, "scalars.fFloat", "must be a number, not ' 1'"),
        ({"scalars": {"fDouble": "inf"}}, "scalars.fDouble", "must be a number, not 'inf'"),
    ],
)
def test_quoted_floats_out_of_range_or_not_numbers_are_refused(
    tree: Path, rt: types.ModuleType, pb: types.ModuleType, doc: Any, where: str, problem: str
) -> None:
    """json_format reads a quoted float with Python's float(): "1e400" would become infinity and "1_0" ten.
    protojson refuses both; so does the gateway, on the fast and the slow path alike."""
    target = plain_target(tree, pb)
    body = json.dumps(doc).encode()
    for fast in (True, False):
        with pytest.raises(rt.HttpError) as refused:
            target.run(body, fast)
        assert refused.value.status == 400
        assert refused.value.message.startswith(f"invalid request body: {where}"), refused.value.message
        assert problem in refused.value.message


def _floats(msg: Any) -> Any:
    """Every float and double the tests below set, as one comparable value."""
    return (
        msg.scalars.f_float,
        msg.scalars.f_double,
        msg.well_known.float_value.value,
        list(msg.repeated.r_float),
        dict(msg.maps.uint64_float),
    )


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"scalars": {"fFloat": "Infinity", "fDouble": "-Infinity"}}, (math.inf, -math.inf, 0, [], {})),
        ({"scalars": {"fFloat": "-1.5e3", "fDouble": "1e308"}}, (-1500, 1e308, 0, [], {})),
        ({"wellKnown": {"floatValue": "3.4028235e+38"}}, (0, 0, FLT_MAX, [], {})),
        ({"wellKnown": {"floatValue": -3.4028235e38}}, (0, 0, -FLT_MAX, [], {})),
        (
            {"repeated": {"rFloat": ["3.4028235e38", -3.4028235e38, "1.5"]}},
            (0, 0, 0, [FLT_MAX, -FLT_MAX, 1.5], {}),
        ),
        ({"maps": {"uint64Float": {"1": "3.4028235e38"}}}, (0, 0, 0, [], {1: FLT_MAX})),
    ],
)
def test_quoted_floats_in_range_are_read(
    tree: Path, rt: types.ModuleType, pb: types.ModuleType, doc: Any, expected: Any
) -> None:
    """Special values, quoted numbers in range, and float32's largest value as protobuf prints it
    (3.4028235e+38, just above FLT_MAX, which json_format alone refuses) wherever a float goes."""
    target = plain_target(tree, pb)
    body = json.dumps(doc).encode()
    for fast in (True, False):
        assert _floats(target.run(body, fast)) == expected

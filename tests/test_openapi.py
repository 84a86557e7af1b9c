"""The OpenAPI 3.1 documents (`openapi=true`): schema mapping of every field shape, paths, parameters,
bodies, replies, errors, streaming, comments and deprecation, naming options, determinism, validity
(openapi-spec-validator), merging, and that the schemas accept what protojson really prints.

The documents are checked against the running gateway in tests/test_openapi_e2e.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from openapi_spec_validator import validate

from protoc_gen_pygateway.openapi.merge import main as merge_main
from protoc_gen_pygateway.openapi.merge import merge
from protoc_gen_pygateway.openapi.paths import MergeError
from protoc_gen_pygateway.plugin import generate
from tests.golden import PROTOS as SHOP_PROTOS
from tests.protoc_support import ROOT, code_generator_request, descriptor_set

WKT = "".join(
    f'import "google/protobuf/{name}.proto";\n'
    for name in ("any", "duration", "empty", "field_mask", "struct", "timestamp", "wrappers")
)

TYPES = (
    'syntax = "proto3";\npackage t.v1;\nimport "google/api/annotations.proto";\n'
    + WKT
    + """
// Colors of things.
enum Color {
  COLOR_UNSPECIFIED = 0;
  // Like the sky.
  COLOR_BLUE = 1;
  COLOR_RED = 2 [deprecated = true];
}

// Every field shape.
message All {
  double f_double = 1;
  float f_float = 2;
  int64 f_int64 = 3;
  uint64 f_uint64 = 4;
  int32 f_int32 = 5;
  fixed64 f_fixed64 = 6;
  fixed32 f_fixed32 = 7;
  bool f_bool = 8;
  string f_string = 9;  // A trailing comment.
  bytes f_bytes = 10;
  uint32 f_uint32 = 11;
  Color f_enum = 12;
  sfixed32 f_sfixed32 = 13;
  sfixed64 f_sfixed64 = 14;
  sint32 f_sint32 = 15;
  sint64 f_sint64 = 16;
  repeated int64 r_int64 = 17;
  repeated Color r_enum = 18;
  repeated Inner r_inner = 19;
  map<string, int64> m_string_int64 = 20;
  map<int32, Inner> m_int32_inner = 21;
  map<bool, string> m_bool_string = 22;
  map<uint64, Color> m_uint64_enum = 23;
  google.protobuf.Timestamp t_timestamp = 24;
  google.protobuf.Duration t_duration = 25;
  google.protobuf.FieldMask t_field_mask = 26;
  google.protobuf.Struct t_struct = 27;
  google.protobuf.Value t_value = 28;
  google.protobuf.ListValue t_list_value = 29;
  google.protobuf.Any t_any = 30;
  google.protobuf.Empty t_empty = 31;
  google.protobuf.DoubleValue w_double = 32;
  google.protobuf.FloatValue w_float = 33;
  google.protobuf.Int64Value w_int64 = 34;
  google.protobuf.UInt64Value w_uint64 = 35;
  google.protobuf.Int32Value w_int32 = 36;
  google.protobuf.UInt32Value w_uint32 = 37;
  google.protobuf.BoolValue w_bool = 38;
  google.protobuf.StringValue w_string = 39;
  google.protobuf.BytesValue w_bytes = 40;
  google.protobuf.NullValue t_null = 41;
  optional string o_string = 42;
  oneof choice {
    string c_text = 43;
    Inner c_inner = 44;
    int64 c_number = 45;
  }
  string custom = 46 [json_name = "customName"];
  // Use `custom`.
  string old = 47 [deprecated = true];
  Node tree = 48;

  message Inner {
    string label = 1;
  }
}

// A recursive message.
message Node {
  option deprecated = true;
  string name = 1;
  repeated Node children = 2;
  Node parent = 3;
}

message GetRequest {
  // Resource name.
  string name = 1;
  All.Inner inner = 2;
  Node node = 3;
  google.protobuf.Struct opaque = 4;
  map<string, All.Inner> m_msg = 5;
  repeated google.protobuf.Timestamp times = 6;
  map<string, google.protobuf.Duration> m_dur = 7;
  google.protobuf.Int32Value w = 8;
  Color color = 9;
  oneof pick {
    string a = 10;
    string b = 11;
  }
  repeated All.Inner r_msg = 12;
  google.protobuf.FieldMask mask = 13;
}

// Things and their parts.
service Things {
  // Gets one thing.
  //
  // More details here.
  rpc Get(GetRequest) returns (All) {
    option (google.api.http) = {
      get: "/v1/{name=things/*/parts/*}"
      additional_bindings { get: "/v1/by-name/{name}" }
      additional_bindings { custom { kind: "HEAD" path: "/v1/{name=files/**}:stat" } }
    };
  }
  rpc Put(All) returns (All) {
    option (google.api.http) = { put: "/v1/all/{f_int64}/{f_enum}" body: "*" };
  }
  rpc Title(GetRequest) returns (All) {
    option deprecated = true;
    option (google.api.http) = { get: "/v1/{name=things/*}/title" response_body: "f_string" };
  }
  rpc Wild(GetRequest) returns (All) {
    option (google.api.http) = { get: "/v1/wild/*/{name}" };
  }
  rpc Eq1(GetRequest) returns (All) {
    option (google.api.http) = { get: "/v1/eq/{name}" };
  }
  rpc Eq2(GetRequest) returns (All) {
    option (google.api.http) = { post: "/v1/eq/{a}" body: "inner" };
  }
  rpc Nested(All) returns (All) {
    option (google.api.http) = { patch: "/v1/nested/{tree.name}" body: "tree" };
  }
  rpc Upload(stream All.Inner) returns (All) {
    option (google.api.http) = { post: "/v1/upload" body: "*" };
  }
  rpc Watch(GetRequest) returns (stream All) {
    option (google.api.http) = { get: "/v1/watch/{name}" };
  }
  rpc Chat(stream Node) returns (stream Node) {
    option (google.api.http) = { post: "/v1/chat" body: "*" };
  }
}
"""
)

LEGACY = """syntax = "proto2";
package t2.v1;
import "google/api/annotations.proto";
enum Closed {
  CLOSED_A = 1;
  CLOSED_B = 2;
}
message Req {
  optional Closed value = 1;
  optional string name = 2;
}
service Legacy {
  rpc Get(Req) returns (Req) { option (google.api.http) = {get: "/v2/{name}"}; }
}
"""

FILES = {"t/v1/types.proto": TYPES, "t2/v1/legacy.proto": LEGACY}


@pytest.fixture(scope="module")
def include(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("protos")
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def documents(include: Path, parameter: str = "", files: list[str] | None = None) -> dict[str, Any]:
    """Generated file name -> parsed document, for `files` (default: both fixture protos)."""
    request = code_generator_request(files or sorted(FILES), f"openapi=true,{parameter}", include)
    response = generate(request)
    assert not response.error, response.error
    return {f.name: json.loads(f.content) for f in response.file if f.name.endswith(".openapi.json")}


@pytest.fixture(scope="module")
def doc(include: Path) -> dict[str, Any]:
    return documents(include)["t/v1/types.openapi.json"]


@pytest.fixture(scope="module")
def proto_doc(include: Path) -> dict[str, Any]:
    return documents(include, "use_proto_names=true,enums_as_ints=true,unknown_body_fields=ignore")[
        "t/v1/types.openapi.json"
    ]


def schemas(document: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = document["components"]["schemas"]
    return result


def operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    result: dict[str, Any] = document["paths"][path][method]
    return result


def params(op: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == where}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# ---------------------------------------------------------------------------------------- files, validity


def test_one_document_per_proto_file_with_served_services(include: Path) -> None:
    assert set(documents(include)) == {"t/v1/types.openapi.json", "t2/v1/legacy.openapi.json"}
    assert documents(include, files=["t2/v1/legacy.proto"]).keys() == {"t2/v1/legacy.openapi.json"}


def test_no_document_without_the_option(include: Path) -> None:
    response = generate(code_generator_request(sorted(FILES), "", include))
    assert not [f.name for f in response.file if f.name.endswith(".json")]


@pytest.mark.parametrize(
    "parameter",
    [
        "",
        "use_proto_names=true,enums_as_ints=true,unknown_body_fields=ignore,unknown_query_params=ignore",
        "websocket=false,generate_unbound_methods=true",
    ],
)
def test_documents_validate(include: Path, parameter: str) -> None:
    for document in documents(include, parameter).values():
        validate(document)
        assert document["openapi"] == "3.1.0"


def test_shop_documents_validate() -> None:
    response = generate(code_generator_request(SHOP_PROTOS, "openapi=true"))
    docs = [json.loads(f.content) for f in response.file if f.name.endswith(".openapi.json")]
    assert len(docs) == 2
    for document in docs:
        validate(document)
    validate(merge(docs))


def test_output_is_deterministic_and_canonical(include: Path) -> None:
    first = generate(code_generator_request(sorted(FILES), "openapi=true", include))
    second = generate(code_generator_request(list(reversed(sorted(FILES))), "openapi=true", include))
    texts = {f.name: f.content for f in first.file if f.name.endswith(".json")}
    assert texts == {f.name: f.content for f in second.file if f.name.endswith(".json")}
    for text in texts.values():
        assert text.endswith("}\n") and not text.endswith("\n\n")
        assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------- schema mapping

INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
UINT32 = {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}


def number(fmt: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "number", "format": fmt},
            {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]},
        ]
    }


BYTES_PATTERN = "^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$"
BYTES = {"type": "string", "contentEncoding": "base64", "pattern": BYTES_PATTERN}

EXPECTED_PROPERTIES: dict[str, Any] = {
    "fDouble": number("double"),
    "fFloat": number("float"),
    "fInt64": INT64,
    "fUint64": UINT64,
    "fInt32": INT32,
    "fFixed64": UINT64,
    "fFixed32": UINT32,
    "fBool": {"type": "boolean"},
    "fString": {"type": "string", "description": "A trailing comment."},
    "fBytes": BYTES,
    "fUint32": UINT32,
    "fEnum": ref("t.v1.Color"),
    "fSfixed32": INT32,
    "fSfixed64": INT64,
    "fSint32": INT32,
    "fSint64": INT64,
    "rInt64": {"type": "array", "items": INT64},
    "rEnum": {"type": "array", "items": ref("t.v1.Color")},
    "rInner": {"type": "array", "items": ref("t.v1.All.Inner")},
    "mStringInt64": {"type": "object", "additionalProperties": INT64},
    "mInt32Inner": {
        "type": "object",
        "additionalProperties": ref("t.v1.All.Inner"),
        "propertyNames": {"pattern": "^-?[0-9]+$"},
    },
    "mBoolString": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "propertyNames": {"enum": ["true", "false"]},
    },
    "mUint64Enum": {
        "type": "object",
        "additionalProperties": ref("t.v1.Color"),
        "propertyNames": {"pattern": "^[0-9]+$"},
    },
    "tTimestamp": {"type": "string", "format": "date-time"},
    "tDuration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
    "tFieldMask": {"type": "string"},
    "tStruct": {"type": "object"},
    "tValue": {},
    "tListValue": {"type": "array"},
    "tAny": {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]},
    "tEmpty": ref("google.protobuf.Empty"),
    "wDouble": number("double"),
    "wFloat": number("float"),
    "wInt64": INT64,
    "wUint64": UINT64,
    "wInt32": INT32,
    "wUint32": UINT32,
    "wBool": {"type": "boolean"},
    "wString": {"type": "string"},
    "wBytes": BYTES,
    "tNull": {"type": "null"},
    "oString": {"type": "string"},
    "cText": {"type": "string", "description": ""},
    "cInner": {**ref("t.v1.All.Inner"), "description": ""},
    "cNumber": {**INT64, "description": ""},
    "customName": {"type": "string"},
    "old": {"type": "string", "description": "Use `custom`.", "deprecated": True},
    "tree": ref("t.v1.Node"),
}


def test_every_field_shape(doc: dict[str, Any]) -> None:
    all_ = schemas(doc)["t.v1.All"]
    oneof_note = "Member of oneof `choice`: at most one of `cText`, `cInner`, `cNumber` is set."
    expected = {
        name: ({**schema, "description": oneof_note} if schema.get("description") == "" else schema)
        for name, schema in EXPECTED_PROPERTIES.items()
    }
    assert list(all_["properties"]) == list(expected)  # declaration order
    for name, schema in expected.items():
        assert all_["properties"][name] == schema, name
    assert all_["type"] == "object"
    assert all_["title"] == "All"
    assert all_["description"] == "Every field shape."
    assert all_["additionalProperties"] is False
    assert all_["not"] == {
        "anyOf": [
            {"required": ["cText", "cInner"]},
            {"required": ["cText", "cNumber"]},
            {"required": ["cInner", "cNumber"]},
        ]
    }


def test_components_are_the_referenced_types(doc: dict[str, Any]) -> None:
    assert list(schemas(doc)) == sorted(schemas(doc))
    assert set(schemas(doc)) == {
        "google.protobuf.Empty",
        "google.rpc.Status",
        "pygateway-StreamEnd",
        "pygateway-StreamError",
        "t.v1.All",
        "t.v1.All.Inner",
        "t.v1.Color",
        "t.v1.Node",
    }
    # GetRequest is only ever read from the path and the query: no schema of its own.


def test_recursion_is_a_reference(doc: dict[str, Any]) -> None:
    node = schemas(doc)["t.v1.Node"]
    assert node["properties"]["children"] == {"type": "array", "items": ref("t.v1.Node")}
    assert node["properties"]["parent"] == ref("t.v1.Node")
    assert node["deprecated"] is True
    assert node["description"] == "A recursive message."


def test_enums(doc: dict[str, Any], proto_doc: dict[str, Any], include: Path) -> None:
    color = schemas(doc)["t.v1.Color"]
    names = ["COLOR_UNSPECIFIED", "COLOR_BLUE", "COLOR_RED"]
    assert color["anyOf"] == [{"type": "string", "enum": names}, {"type": "integer", "format": "int32"}]
    assert color["description"].splitlines() == [
        "Colors of things.",
        "",
        "- `COLOR_UNSPECIFIED` = 0",
        "- `COLOR_BLUE` = 1: Like the sky.",
        "- `COLOR_RED` = 2: (deprecated)",
        "",
        "An open enum: a number without a name is written as that number.",
    ]
    as_int = schemas(proto_doc)["t.v1.Color"]
    assert (as_int["type"], as_int["format"]) == ("integer", "int32")
    assert "enum" not in as_int  # open: any int32
    legacy = documents(include)["t2/v1/legacy.openapi.json"]
    assert schemas(legacy)["t2.v1.Closed"]["type"] == "string"
    assert schemas(legacy)["t2.v1.Closed"]["enum"] == ["CLOSED_A", "CLOSED_B"]  # closed: names only
    legacy_ints = documents(include, "enums_as_ints=true")["t2/v1/legacy.openapi.json"]
    assert schemas(legacy_ints)["t2.v1.Closed"]["enum"] == [1, 2]


def test_proto_names(proto_doc: dict[str, Any]) -> None:
    all_ = schemas(proto_doc)["t.v1.All"]
    assert list(all_["properties"])[:3] == ["f_double", "f_float", "f_int64"]
    assert "custom" in all_["properties"] and "customName" not in all_["properties"]
    assert "additionalProperties" not in all_  # unknown_body_fields=ignore
    assert all_["not"]["anyOf"][0] == {"required": ["c_text", "c_inner"]}
    get = operation(proto_doc, "/v1/things/{things_id}/parts/{parts_id}", "get")
    assert set(params(get, "path")) == {"things_id", "parts_id"}
    assert "inner.label" in params(get, "query") and "m_dur" in params(get, "query")


def test_status_schema(doc: dict[str, Any]) -> None:
    status = schemas(doc)["google.rpc.Status"]
    assert status["required"] == ["code", "message", "details"]
    assert status["properties"]["details"]["items"]["required"] == ["@type"]


# ------------------------------------------------------------------------ the schemas accept protojson


@pytest.fixture(scope="module")
def pool(include: Path) -> descriptor_pool.DescriptorPool:
    result = descriptor_pool.DescriptorPool()
    for file in descriptor_set(sorted(FILES), include).file:
        result.Add(file)
    return result


def message(pool: descriptor_pool.DescriptorPool, name: str) -> Message:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))()


def full_all(pool: descriptor_pool.DescriptorPool) -> Message:
    """t.v1.All with every field set, at the edges of each type (and an enum number without a name)."""
    data = {
        "fDouble": "NaN",
        "fFloat": "-Infinity",
        "fInt64": str(-(2**63)),
        "fUint64": str(2**64 - 1),
        "fInt32": -(2**31),
        "fFixed64": "0",
        "fFixed32": 2**32 - 1,
        "fBool": True,
        "fString": "ünïcode \u2028",
        "fBytes": "AP8=",
        "fUint32": 7,
        "fEnum": 7,
        "fSfixed32": 1,
        "fSfixed64": "-5",
        "fSint32": -1,
        "fSint64": "9",
        "rInt64": ["1", "-2"],
        "rEnum": ["COLOR_BLUE", 2],
        "rInner": [{"label": "x"}, {}],
        "mStringInt64": {"a": "1", "": "0"},
        "mInt32Inner": {"-3": {"label": "y"}},
        "mBoolString": {"true": "t", "false": "f"},
        "mUint64Enum": {"18446744073709551615": "COLOR_RED"},
        "tTimestamp": "0001-01-01T00:00:00.000000001Z",
        "tDuration": "-315576000000.999999999s",
        "tFieldMask": "fDouble,tree.name",
        "tStruct": {"a": [1, "b", None, {"c": True}]},
        "tValue": None,
        "tListValue": [1, {"x": []}],
        "tAny": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1.5s"},
        "tEmpty": {},
        "wDouble": 1.5,
        "wFloat": "Infinity",
        "wInt64": "-1",
        "wUint64": "1",
        "wInt32": 3,
        "wUint32": 4,
        "wBool": False,
        "wString": "",
        "wBytes": "",
        "tNull": None,
        "oString": "",
        "cInner": {"label": "z"},
        "customName": "c",
        "old": "o",
        "tree": {"name": "root", "children": [{"name": "leaf", "parent": {"name": "root"}}]},
    }
    result = message(pool, "t.v1.All")
    json_format.ParseDict(data, result, descriptor_pool=pool)
    return result


def validator(document: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.mark.parametrize("emit_unpopulated", [True, False])
def test_schema_accepts_protojson_output(
    pool: descriptor_pool.DescriptorPool, doc: dict[str, Any], emit_unpopulated: bool
) -> None:
    check = validator(doc, "t.v1.All")
    full = json_format.MessageToDict(
        full_all(pool), always_print_fields_with_no_presence=emit_unpopulated, descriptor_pool=pool
    )
    assert full["fDouble"] == "NaN" and full["fEnum"] == 7 and full["tValue"] is None  # the edges are there
    empty = json_format.MessageToDict(
        message(pool, "t.v1.All"), always_print_fields_with_no_presence=emit_unpopulated, descriptor_pool=pool
    )
    for printed in (full, empty):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in check.iter_errors(printed)]
        assert not errors


def test_proto_name_schema_accepts_protojson_output(
    pool: descriptor_pool.DescriptorPool, proto_doc: dict[str, Any]
) -> None:
    printed = json_format.MessageToDict(
        full_all(pool), preserving_proto_field_name=True, use_integers_for_enums=True, descriptor_pool=pool
    )
    assert not [e.message for e in validator(proto_doc, "t.v1.All").iter_errors(printed)]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"fInt64": 1}, "64-bit integers are strings"),
        ({"fInt32": 2**31}, "int32 range"),
        ({"fEnum": "COLOR_GREEN"}, "unknown enum name"),
        ({"tDuration": "1.5"}, "duration needs its s"),
        ({"tTimestamp": "yesterday"}, "RFC 3339"),
        ({"cText": "a", "cNumber": "1"}, "two members of a oneof"),
        ({"unknown": 1}, "unknown member"),
        ({"fBytes": "A"}, "not base64"),
        ({"mBoolString": {"yes": "y"}}, "bool map keys"),
        ({"tAny": {"value": "x"}}, "Any without @type"),
    ],
)
def test_schema_refuses(doc: dict[str, Any], change: dict[str, Any], problem: str) -> None:
    assert list(validator(doc, "t.v1.All").iter_errors(change)), problem


# ---------------------------------------------------------------------------------------- paths


def test_paths(doc: dict[str, Any]) -> None:
    assert list(doc["paths"]) == sorted(doc["paths"])
    assert {path: sorted(item) for path, item in doc["paths"].items()} == {
        "/v1/all/{fInt64}/{fEnum}": ["put"],
        "/v1/by-name/{name}": ["get"],
        "/v1/chat": ["post"],
        "/v1/eq/{name}": ["get", "post"],
        "/v1/files/{filesPath}:stat": ["head"],
        "/v1/nested/{tree.name}": ["patch"],
        "/v1/things/{thingsId}/parts/{partsId}": ["get"],
        "/v1/things/{thingsId}/title": ["get"],
        "/v1/upload": ["post"],
        "/v1/watch/{name}": ["get"],
        "/v1/wild/{segment3}/{name}": ["get"],
    }


def test_path_parameters(doc: dict[str, Any]) -> None:
    get = operation(doc, "/v1/things/{thingsId}/parts/{partsId}", "get")
    things = params(get, "path")["thingsId"]
    assert things["required"] is True and things["schema"] == {"type": "string"}
    assert "receives `things/{thingsId}/parts/{partsId}`" in things["description"]
    assert "`name`: Resource name." in things["description"]
    typed = params(operation(doc, "/v1/all/{fInt64}/{fEnum}", "put"), "path")
    assert typed["fInt64"]["schema"] == INT64
    assert typed["fEnum"]["schema"] == ref("t.v1.Color")
    by_name = params(operation(doc, "/v1/by-name/{name}", "get"), "path")["name"]
    assert by_name["description"] == "The field `name`.\n\nResource name."
    deep = params(operation(doc, "/v1/files/{filesPath}:stat", "head"), "path")["filesPath"]
    assert "May span several segments" in deep["description"]
    wild = params(operation(doc, "/v1/wild/{segment3}/{name}", "get"), "path")
    assert wild["segment3"]["description"].startswith("Any value; not bound to a field.")
    nested = params(operation(doc, "/v1/nested/{tree.name}", "patch"), "path")
    assert set(nested) == {"tree.name"}


def test_equivalent_paths_share_parameter_names(doc: dict[str, Any]) -> None:
    """`/v1/eq/{name}` and `/v1/eq/{a}` are one OpenAPI path: the second operation's parameter is renamed."""
    post = operation(doc, "/v1/eq/{name}", "post")
    assert set(params(post, "path")) == {"name"}
    assert params(post, "path")["name"]["description"].startswith("The field `a`.")


def test_query_parameters(doc: dict[str, Any]) -> None:
    query = params(operation(doc, "/v1/by-name/{name}", "get"), "query")
    assert list(query) == [
        "inner.label",
        "node.name",  # node.children (repeated message) and node.parent (recursion) are not settable
        "times",
        "mDur",
        "w",
        "color",
        "a",
        "b",
        "mask",
    ]  # opaque (Struct), mMsg (message values) and rMsg (repeated messages) cannot come from a query
    assert query["mDur"]["style"] == "deepObject" and query["mDur"]["explode"] is True
    assert query["mDur"]["schema"]["additionalProperties"] == EXPECTED_PROPERTIES["tDuration"]
    assert query["times"]["style"] == "form" and query["times"]["explode"] is True
    assert query["times"]["schema"] == {"type": "array", "items": {"type": "string", "format": "date-time"}}
    assert query["w"]["schema"] == INT32
    assert query["color"]["schema"] == ref("t.v1.Color")
    assert "Member of oneof `pick`" in query["a"]["description"]
    assert "Comma-separated field paths" in query["mask"]["description"]


def test_query_leaves_out_bound_fields(doc: dict[str, Any]) -> None:
    put = operation(doc, "/v1/all/{fInt64}/{fEnum}", "put")
    assert not params(put, "query")  # body `*`: nothing comes from the query
    post = operation(doc, "/v1/eq/{name}", "post")
    assert "a" not in params(post, "query") and "inner.label" not in params(post, "query")
    patch = operation(doc, "/v1/nested/{tree.name}", "patch")
    query = params(patch, "query")
    assert "tree.name" not in query and "fDouble" in query  # body `tree`: its fields are all bound
    assert not any(name.startswith("tree.") for name in query)


# ---------------------------------------------------------------------------------------- bodies, replies


def test_request_bodies(doc: dict[str, Any]) -> None:
    put = operation(doc, "/v1/all/{fInt64}/{fEnum}", "put")["requestBody"]
    assert put["required"] is False and put["content"] == {"application/json": {"schema": ref("t.v1.All")}}
    patch = operation(doc, "/v1/nested/{tree.name}", "patch")["requestBody"]
    assert patch["required"] is True and patch["content"]["application/json"]["schema"] == ref("t.v1.Node")
    upload = operation(doc, "/v1/upload", "post")["requestBody"]
    assert upload["content"] == {
        "application/x-ndjson": {"schema": {"type": "array", "items": ref("t.v1.All.Inner")}},
        "application/json": {"schema": ref("t.v1.All.Inner")},
    }
    assert "requestBody" not in operation(doc, "/v1/by-name/{name}", "get")


def test_replies(doc: dict[str, Any]) -> None:
    get = operation(doc, "/v1/by-name/{name}", "get")
    assert get["responses"]["200"]["content"] == {"application/json": {"schema": ref("t.v1.All")}}
    title = operation(doc, "/v1/things/{thingsId}/title", "get")
    assert title["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "string",
        "description": "A trailing comment.",
    }
    head = operation(doc, "/v1/files/{filesPath}:stat", "head")
    assert "content" not in head["responses"]["200"]


def test_error_responses(doc: dict[str, Any]) -> None:
    get = operation(doc, "/v1/by-name/{name}", "get")["responses"]
    expected = [
        "200",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "414",
        "429",
        "499",
        "500",
        "501",
        "502",
        "503",
    ]
    assert list(get) == [*expected, "504"]  # no 415 without a body
    assert get["404"] == {"$ref": "#/components/responses/Error404"}
    assert "415" in operation(doc, "/v1/all/{fInt64}/{fEnum}", "put")["responses"]
    error = doc["components"]["responses"]["Error401"]
    assert error["content"] == {"application/json": {"schema": ref("google.rpc.Status")}}
    assert "WWW-Authenticate" in error["headers"]
    assert "UNAUTHENTICATED" in error["description"]
    stream = doc["components"]["responses"]["StreamError404"]
    assert set(stream["content"]) == {"application/json", "application/x-ndjson", "text/event-stream"}
    assert stream["content"]["application/x-ndjson"]["schema"]["items"] == ref("pygateway-StreamError")


def test_server_streaming(doc: dict[str, Any]) -> None:
    watch = operation(doc, "/v1/watch/{name}", "get")
    ok = watch["responses"]["200"]
    line = ok["content"]["application/x-ndjson"]["schema"]["items"]["anyOf"]
    assert line[0]["properties"] == {"result": ref("t.v1.All")} and line[0]["required"] == ["result"]
    assert line[1] == ref("pygateway-StreamError")
    events = ok["content"]["text/event-stream"]["schema"]["anyOf"]
    assert [e["properties"]["event"]["const"] for e in events] == ["message", "error", "end"]
    assert events[0]["properties"]["data"]["contentSchema"] == ref("t.v1.All")
    assert watch["responses"]["404"] == {"$ref": "#/components/responses/StreamError404"}
    assert watch["x-websocket"]["path"] == "/v1/watch/{name}"
    assert "clientMessage" not in watch["x-websocket"]  # no body: the call starts at once


def test_client_and_bidi_streaming(doc: dict[str, Any]) -> None:
    upload = operation(doc, "/v1/upload", "post")
    assert upload["responses"]["200"]["content"] == {"application/json": {"schema": ref("t.v1.All")}}
    assert upload["responses"]["400"] == {"$ref": "#/components/responses/Error400"}
    assert upload["x-websocket"]["clientMessage"] == ref("t.v1.All.Inner")
    chat = operation(doc, "/v1/chat", "post")
    assert "application/x-ndjson" in chat["requestBody"]["content"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert set(chat["x-websocket"]["closeCodes"]) == {"1000", "1001", "4000+code"}


def test_websocket_off(include: Path) -> None:
    document = documents(include, "websocket=false")["t/v1/types.openapi.json"]
    for item in document["paths"].values():
        for op in item.values():
            assert "x-websocket" not in op
            assert "WebSocket" not in op["description"]


# ---------------------------------------------------------------------------------------- descriptions


def test_operations(doc: dict[str, Any]) -> None:
    get = operation(doc, "/v1/things/{thingsId}/parts/{partsId}", "get")
    assert get["operationId"] == "Things_Get"
    assert operation(doc, "/v1/by-name/{name}", "get")["operationId"] == "Things_Get_2"
    assert operation(doc, "/v1/files/{filesPath}:stat", "head")["operationId"] == "Things_Get_3"
    assert get["tags"] == ["Things"]
    assert get["summary"] == "Gets one thing."
    assert get["description"].startswith("Gets one thing.\n\nMore details here.\n\ngRPC `/t.v1.Things/Get`")
    assert get["x-grpc-method"] == "/t.v1.Things/Get"
    assert "deprecated" not in get
    assert operation(doc, "/v1/things/{thingsId}/title", "get")["deprecated"] is True
    assert doc["tags"] == [
        {"name": "Things", "description": "Things and their parts.\n\ngRPC service `t.v1.Things`."}
    ]
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_unknown_query_parameters_note(include: Path, doc: dict[str, Any]) -> None:
    note = "Query parameters naming no field listed here are refused with 400."
    assert note in operation(doc, "/v1/by-name/{name}", "get")["description"]
    assert note not in operation(doc, "/v1/all/{fInt64}/{fEnum}", "put")["description"]  # body `*`
    lenient = documents(include, "unknown_query_params=ignore")["t/v1/types.openapi.json"]
    assert note not in operation(lenient, "/v1/by-name/{name}", "get")["description"]


def test_info(doc: dict[str, Any], include: Path) -> None:
    assert doc["info"]["title"] == "t/v1/types.proto"
    assert doc["info"]["version"] == "v1"
    assert "protojson" in doc["info"]["description"]
    assert documents(include)["t2/v1/legacy.openapi.json"]["info"]["version"] == "v1"


def test_conflicting_routes_of_two_services_are_a_generation_error(tmp_path: Path) -> None:
    proto = (
        'syntax = "proto3";\npackage c.v1;\nimport "google/api/annotations.proto";\n'
        "message M { string a = 1; }\n"
        'service A { rpc Get(M) returns (M) { option (google.api.http) = {get: "/v1/{a}"}; } }\n'
        'service B { rpc Get(M) returns (M) { option (google.api.http) = {get: "/v1/{a=*}"}; } }\n'
    )
    (tmp_path / "c.proto").write_text(proto)
    assert not generate(code_generator_request(["c.proto"], "", tmp_path)).error  # the modules are fine
    error = generate(code_generator_request(["c.proto"], "openapi=true", tmp_path)).error
    assert error.startswith(
        "protoc-gen-pygateway: c.proto: service B, method Get: OpenAPI document: GET /v1/{a}"
    )


# ---------------------------------------------------------------------------------------- merge


def _op(op_id: str) -> dict[str, Any]:
    return {"operationId": op_id, "responses": {"200": {"description": "ok"}}}


def _doc(title: str, paths: dict[str, Any], schemas_: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "v1"},
        "tags": [{"name": title}],
        "paths": paths,
        "components": {"schemas": schemas_ or {}},
    }


def test_merge() -> None:
    key = {
        "name": "key",
        "in": "path",
        "required": True,
        "description": "`{key}`",
        "schema": {"type": "string"},
    }
    ident = {**key, "name": "id", "description": "id"}
    a_x = {**_op("A_X"), "parameters": [ident]}
    a = _doc("a", {"/v1/b": {"get": _op("A_Get")}, "/v1/x/{id}": {"get": a_x}}, {"A": {"type": "object"}})
    renamed = {"parameters": [key]}
    b = _doc("b", {"/v1/a": {"post": _op("B_Post")}, "/v1/x/{key}": {"delete": {**_op("B_X"), **renamed}}})
    merged = merge([a, b])
    validate(merged)
    assert merged["info"] == {
        "title": "a + b",
        "version": "v1",
        "description": "Merged from the OpenAPI documents of `a`, `b`.",
    }
    assert list(merged["paths"]) == ["/v1/a", "/v1/b", "/v1/x/{id}"]
    assert list(merged["paths"]["/v1/x/{id}"]) == ["get", "delete"]
    assert merged["paths"]["/v1/x/{id}"]["delete"]["parameters"][0]["name"] == "id"
    assert merged["paths"]["/v1/x/{id}"]["delete"]["parameters"][0]["description"] == "`{id}`"
    assert merged["tags"] == [{"name": "a"}, {"name": "b"}]
    assert merge([a, b], title="T", version="2")["info"]["title"] == "T"


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (_doc("b", {"/v1/b": {"get": _op("B_Get")}}), "GET /v1/b of B_Get is also GET /v1/b of A_Get"),
        (_doc("b", {"/v1/c": {"get": _op("A_Get")}}), "operationId 'A_Get' is in a and b"),
        (_doc("b", {}, {"A": {"type": "string"}}), "components.schemas.A is defined differently in b"),
        ({**_doc("b", {}), "openapi": "3.0.3"}, "documents of different OpenAPI versions"),
    ],
)
def test_merge_conflicts(second: dict[str, Any], message: str) -> None:
    first = _doc("a", {"/v1/b": {"get": _op("A_Get")}}, {"A": {"type": "object"}})
    with pytest.raises(MergeError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        merge([first, second])


def test_merge_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    response = generate(code_generator_request(SHOP_PROTOS, "openapi=true"))
    paths = []
    for f in response.file:
        if f.name.endswith(".openapi.json"):
            paths.append(tmp_path / Path(f.name).name)
            paths[-1].write_text(f.content)
    result = subprocess.run(
        [sys.executable, "-m", "protoc_gen_pygateway.openapi.merge", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not result.stderr
    merged = json.loads(result.stdout)
    validate(merged)
    assert merged == merge([json.loads(p.read_text()) for p in paths])
    assert result.stdout.endswith("}\n")
    assert merge_main([str(paths[0]), str(paths[0])]) == 1
    assert "merge: operationId" in capsys.readouterr().err
    assert merge_main([str(tmp_path / "missing.json")]) == 1
    out = tmp_path / "all.json"
    assert merge_main([*map(str, paths), "-o", str(out)]) == 0
    assert out.read_text() == result.stdout

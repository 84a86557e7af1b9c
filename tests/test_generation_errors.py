"""Every invalid input becomes CodeGeneratorResponse.error naming file, service, method and offending text.

All case protos are compiled by one protoc run (one FileDescriptorSet); each case is then a request that
generates only its own file, so the table stays fast. A few cases also go through the real protoc to
prove the message reaches the user without a Python traceback.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf.compiler import plugin_pb2
from hypothesis import event, given, settings
from hypothesis import strategies as st

from protoc_gen_pygateway.plugin import generate
from tests.protoc_support import code_generator_request, protoc
from tests.test_plugin import SUPPORT

PREFIX = "protoc-gen-pygateway: "
SERVICE = "RouteService"

MESSAGES = """
message Inner { string leaf = 1; }
message Req {
  string name = 1;
  int32 count = 2;
  Inner inner = 3;
  repeated string tags = 4;
  string a = 5;
  string b = 6;
  string x = 7;
  string y = 8;
  Inner quoted = 9 [json_name = "a\\"b"];
  Inner slashed = 10 [json_name = "c\\\\d"];
}
message Resp { string title = 1; Inner detail = 2; string weird = 3 [json_name = "w\\"); x = (\\""]; }
"""


@dataclass(frozen=True)
class Case:
    id: str
    #: The rpcs of the service; `rule(...)` wraps a single http option into `rpc Do(Req) returns (Resp)`.
    rpcs: str
    #: Texts the error must contain (besides file and service), e.g. the template or the field.
    offending: tuple[str, ...]
    method: str = "Do"


def rule(body: str, *, client_streaming: bool = False) -> str:
    stream = "stream " if client_streaming else ""
    return f"rpc Do({stream}Req) returns (Resp) {{ option (google.api.http) = {{ {body} }}; }}"


def template_case(case_id: str, template: str) -> Case:
    escaped = template.replace("\\", "\\\\").replace('"', '\\"')
    return Case(case_id, rule(f'get: "{escaped}"'), (f'invalid path template "{template}"',))


CASES: list[Case] = [
    template_case("empty", ""),
    template_case("only_slashes", "//"),
    template_case("empty_variable", "/{}"),
    template_case("trailing_slash", "/a/"),
    template_case("empty_segment", "/a//b"),
    template_case("verb_without_segment", "/:verb"),
    template_case("empty_verb", "/{name}:"),
    template_case("verb_inside_variable", "/a/{name=var:verb}"),
    template_case("nested_variable", "/{name=a/{nested=b}}"),
    template_case("literal_then_variable", "/a{name}"),
    template_case("variable_then_literal", "/{name}a"),
    template_case("no_leading_slash", "a/b"),
    template_case("verb_with_space", "/v1/a:b c"),
    template_case("verb_with_question_mark", "/v1/a:b?c"),
    template_case("repeated_variable", "/v1/{name}/{name}"),
    Case("unknown_path_field", rule('get: "/v1/{nope}"'), ("{nope}", "'nope'")),
    Case("unknown_nested_path_field", rule('get: "/v1/{inner.nope}"'), ("{inner.nope}", "'nope'")),
    Case("message_path_field", rule('get: "/v1/{inner}"'), ("{inner}", "message")),
    Case("repeated_path_field", rule('get: "/v1/{tags}"'), ("{tags}", "repeated")),
    Case("path_through_scalar", rule('get: "/v1/{name.x}"'), ("{name.x}", "'name'")),
    Case("path_through_repeated", rule('get: "/v1/{tags.x}"'), ("{tags.x}", "'tags'")),
    Case("body_on_get", rule('get: "/v1/x" body: "*"'), ("body '*'", "GET")),
    Case("body_field_on_get", rule('get: "/v1/x" body: "inner"'), ("body 'inner'", "GET")),
    Case("body_on_delete", rule('delete: "/v1/x" body: "*"'), ("body '*'", "DELETE", "allow_delete_body")),
    Case("body_on_head", rule('custom { kind: "HEAD" path: "/v1/x" } body: "*"'), ("body '*'", "HEAD")),
    Case("unknown_body_field", rule('post: "/v1/x" body: "nope"'), ("body field 'nope'",)),
    Case("nested_body_field", rule('post: "/v1/x" body: "inner.leaf"'), ("body field 'inner.leaf'",)),
    Case(
        "unknown_response_body",
        rule('post: "/v1/x" body: "*" response_body: "nope"'),
        ("response_body field 'nope'",),
    ),
    Case(
        "nested_additional_bindings",
        rule('get: "/v1/x" additional_bindings { get: "/v1/y" additional_bindings { get: "/v1/z" } }'),
        ("additional_bindings[0]", "nested additional_bindings"),
    ),
    Case(
        "error_in_additional_binding",
        rule('get: "/v1/ok" additional_bindings { get: "/v1/ok2" } additional_bindings { get: "/v1//bad" }'),
        ("additional_bindings[1]", 'invalid path template "/v1//bad"'),
    ),
    Case(
        "client_streaming_path_params",
        rule('post: "/v1/{name}" body: "*"', client_streaming=True),
        ("'/v1/{name}'", "client-streaming"),
    ),
    Case(
        "client_streaming_without_body",
        rule('post: "/v1/upload"', client_streaming=True),
        ("client-streaming", "body"),
    ),
    Case(
        "client_streaming_scalar_body",
        rule('post: "/v1/upload" body: "name"', client_streaming=True),
        ("body field 'name'", "client-streaming"),
    ),
    Case(
        "duplicate_route_variable_names",
        'rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{a}" }; }\n'
        'rpc B(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{b}" }; }',
        ("GET /v1/{b}", "GET /v1/{a}", "method A"),
        method="B",
    ),
    Case(
        "duplicate_route_explicit_star",
        'rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{x=*}" }; }\n'
        'rpc B(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{y}" }; }',
        ("GET /v1/{y}", "/v1/{x}", "method A"),
        method="B",
    ),
    Case(
        "duplicate_route_wildcard",
        'rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/{x=shelves/*}/items" }; }\n'
        'rpc B(Req) returns (Resp) { option (google.api.http) = { get: "/v1/shelves/*/items" }; }',
        ("GET /v1/shelves/*/items", "method A"),
        method="B",
    ),
    Case(
        "duplicate_route_in_additional_bindings",
        rule('get: "/v1/{x}" additional_bindings { get: "/v1/{y}" }'),
        ("GET /v1/{y}", "GET /v1/{x}"),
    ),
    Case(
        "duplicate_route_custom_get",
        'rpc A(Req) returns (Resp) { option (google.api.http) = { get: "/v1/x" }; }\n'
        'rpc B(Req) returns (Resp) { option (google.api.http) = { custom { kind: "GET" path: "/v1/x" } }; }',
        ("GET /v1/x", "method A"),
        method="B",
    ),
    Case("body_json_name_quote", rule('post: "/v1/x" body: "quoted"'), ("body field 'quoted'", "json_name")),
    Case(
        "body_json_name_backslash",
        rule('post: "/v1/x" body: "slashed"'),
        ("body field 'slashed'", "json_name"),
    ),
    Case(
        "response_body_json_name",
        rule('post: "/v1/x" body: "*" response_body: "weird"'),
        ("response_body field 'weird'", "json_name"),
    ),
    Case("custom_kind_not_token", rule('custom { kind: "GE T" path: "/v1/x" }'), ("'GE T'",)),
    Case("custom_kind_empty", rule('custom { kind: "" path: "/v1/x" }'), ("custom kind ''",)),
    Case("custom_kind_newline", rule('custom { kind: "GET\\n" path: "/v1/x" }'), ("'GET\\n'",)),
    Case("custom_kind_any", rule('custom { kind: "*" path: "/v1/x" }'), ("custom kind '*'",)),
    Case("no_pattern", rule('body: "*"'), ("http rule", "no HTTP method")),
    Case(
        "no_pattern_in_additional_binding",
        rule('get: "/v1/x" additional_bindings { body: "*" }'),
        ("additional_bindings[0]",),
    ),
    Case(
        "python_name_collision",
        'rpc HTTPGet(Req) returns (Resp) { option (google.api.http) = { get: "/v1/a" }; }\n'
        'rpc HttpGet(Req) returns (Resp) { option (google.api.http) = { get: "/v1/b" }; }',
        ("HTTPGet", "'http_get'"),
        method="HttpGet",
    ),
]


def case_proto(case: Case) -> str:
    return (
        'syntax = "proto3";\n'
        f"package errors.{case.id};\n"
        'import "google/api/annotations.proto";\n'
        f"{MESSAGES}\n"
        f"service {SERVICE} {{\n{case.rpcs}\n}}\n"
    )


@pytest.fixture(scope="module")
def protos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("error_protos")
    for case in CASES:
        (root / f"{case.id}.proto").write_text(case_proto(case))
    (root / "valid.proto").write_text(
        case_proto(Case("valid", rule('get: "/v1/{name}"'), ()))
        + "service Other {\n"
        + 'rpc Ok(Req) returns (Resp) { option (google.api.http) = { post: "/v1/ok" body: "*" }; }\n'
        + "}\n"
    )
    (root / "collision.proto").write_text(
        'syntax = "proto3";\npackage errors.collision;\nimport "google/api/annotations.proto";\n'
        "message M { string name = 1; }\n"
        'service ShopService { rpc A(M) returns (M) { option (google.api.http) = { get: "/v1/a" }; } }\n'
        'service Shop_Service { rpc B(M) returns (M) { option (google.api.http) = { get: "/v1/b" }; } }\n'
    )
    return root


@pytest.fixture(scope="module")
def base_request(protos: Path) -> plugin_pb2.CodeGeneratorRequest:
    """One protoc run for every case file; tests narrow file_to_generate to their own file."""
    files = sorted(p.name for p in protos.glob("*.proto"))
    return code_generator_request(files, include=protos)


def request_for(
    base: plugin_pb2.CodeGeneratorRequest, file: str, parameter: str = ""
) -> plugin_pb2.CodeGeneratorRequest:
    request = plugin_pb2.CodeGeneratorRequest()
    request.CopyFrom(base)
    request.file_to_generate[:] = [file]
    request.parameter = parameter
    return request


def assert_error(response: plugin_pb2.CodeGeneratorResponse, *texts: str) -> None:
    assert response.error.startswith(PREFIX), response.error
    assert "internal error" not in response.error
    assert "Traceback" not in response.error
    for text in texts:
        assert text in response.error, f"{text!r} missing from: {response.error}"
    assert not response.file, [f.name for f in response.file]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid_binding_is_reported(base_request: plugin_pb2.CodeGeneratorRequest, case: Case) -> None:
    file = f"{case.id}.proto"
    response = generate(request_for(base_request, file))
    assert_error(
        response, f"{PREFIX}{file}: ", f"service {SERVICE}", f"method {case.method}", *case.offending
    )


def test_valid_proto_generates(base_request: plugin_pb2.CodeGeneratorRequest) -> None:
    response = generate(request_for(base_request, "valid.proto"))
    assert not response.error
    assert {f.name for f in response.file} == {
        "valid_pb2_gateway_route_service.py",
        "valid_pb2_gateway_other.py",
    } | SUPPORT


def test_delete_body_allowed_by_option(base_request: plugin_pb2.CodeGeneratorRequest) -> None:
    request = request_for(base_request, "body_on_delete.proto", "allow_delete_body=true")
    response = generate(request)
    assert not response.error
    (module,) = [f.content for f in response.file if "_gateway_" in f.name]
    assert '"DELETE",' in module
    assert "_JSON.parse(payload, body, _decode_" in module


def test_output_file_collision(base_request: plugin_pb2.CodeGeneratorRequest) -> None:
    response = generate(request_for(base_request, "collision.proto"))
    assert_error(
        response,
        f"{PREFIX}collision.proto: ",
        "service Shop_Service",
        "collision_pb2_gateway_shop_service.py",
        "ShopService",
    )


def test_an_error_in_one_file_fails_the_whole_run(base_request: plugin_pb2.CodeGeneratorRequest) -> None:
    request = request_for(base_request, "valid.proto")
    request.file_to_generate.append("empty_segment.proto")
    assert_error(generate(request), "empty_segment.proto", '"/a//b"')


# ------------------------------------------------------------------------------------------ options


OPTION_ERRORS: list[tuple[str, tuple[str, ...]]] = [
    ("nope=1", ("unknown option 'nope'", "allow_delete_body")),
    ("alow_delete_body=true", ("unknown option 'alow_delete_body'",)),
    ("=true", ("unknown option ''",)),
    ("allow_delete_body=yes", ("option allow_delete_body", "'yes'")),
    ("emit_unpopulated=1", ("option emit_unpopulated", "'1'")),
    ("use_proto_names=True", ("option use_proto_names", "'True'")),
    ("unknown_query_params=drop", ("option unknown_query_params", "reject, ignore", "'drop'")),
    ("unknown_body_fields", ("option unknown_body_fields", "''")),
    ("max_body_bytes=abc", ("option max_body_bytes", "'abc'")),
    ("max_body_bytes=0", ("option max_body_bytes", "'0'")),
    ("max_body_bytes=-1", ("option max_body_bytes", "'-1'")),
    ("max_body_bytes=1e6", ("option max_body_bytes", "'1e6'")),
    ("max_body_bytes=\u00b2", ("option max_body_bytes", "'\u00b2'")),  # str.isdigit() is true for it
    ("max_body_bytes=\u0663", ("option max_body_bytes",)),  # ARABIC-INDIC DIGIT THREE
    ("max_body_bytes", ("option max_body_bytes", "''")),
    ("use_proto_names=true,use_proto_names=false", ("option use_proto_names given more than once",)),
    ("max_body_bytes=1,max_body_bytes=1", ("option max_body_bytes given more than once",)),
    ("max_json_depth=0", ("option max_json_depth", "'0'")),
    ("max_json_depth=deep", ("option max_json_depth", "'deep'")),
    ("forward_header=x request", ("option forward_header", "'x request'")),
    ("strip_header=", ("option strip_header", "''")),
    ("forward_header=x-a:b", ("option forward_header", "'x-a:b'")),
    # Header options that could never take effect.
    ("forward_header=TE", ("option forward_header", "'te'", "hop-by-hop")),
    ("forward_header=connection", ("option forward_header", "'connection'", "hop-by-hop")),
    ("forward_header=x-a,strip_header=x-a", ("option forward_header", "'x-a'", "strip_header")),
    ("forward_header=content-type", ("option forward_header", "'content-type'", "reserved")),
    ("forward_header=x-forwarded-for", ("option forward_header", "'x-forwarded-for'", "reserved")),
    ("forward_header=grpc-trace-bin", ("option forward_header", "'grpc-trace-bin'", "reserved")),
    ("forward_header=grpc-metadata-x", ("option forward_header", "'grpc-metadata-x'", "reserved")),
    ("protocols=soap", ("option protocols", "unknown protocol 'soap'", "rest, grpcweb, connect")),
    ("protocols=rest,grpcweb", ("unknown option 'grpcweb'",)),
    ("protocols=", ("option protocols", "unknown protocol ''")),
    ("protocols=grpcweb,openapi=true", ("option openapi", "protocols omits rest")),
]


@pytest.mark.parametrize(("parameter", "texts"), OPTION_ERRORS, ids=[p for p, _ in OPTION_ERRORS])
def test_bad_option_is_reported(
    base_request: plugin_pb2.CodeGeneratorRequest, parameter: str, texts: tuple[str, ...]
) -> None:
    response = generate(request_for(base_request, "valid.proto", parameter))
    assert_error(response, *texts)


# ----------------------------------------------------------------------------------- through protoc


@pytest.mark.parametrize(
    ("file", "parameter", "texts"),
    [
        ("empty_segment.proto", "", ('invalid path template "/a//b"', f"service {SERVICE}", "method Do")),
        ("body_on_get.proto", "", ("body '*' on GET", "method Do")),
        ("valid.proto", "allow_delete_body=maybe", ("option allow_delete_body", "'maybe'")),
    ],
    ids=["template", "body", "option"],
)
def test_protoc_reports_error_without_traceback(
    protos: Path, tmp_path: Path, file: str, parameter: str, texts: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    opt = [f"--pygateway_opt={parameter}"] if parameter else []
    result = protoc([f"-I{protos}", f"--pygateway_out={out}", *opt, file])
    assert result.returncode != 0
    assert PREFIX in result.stderr
    for text in texts:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not list(out.iterdir())


# --------------------------------------------------------------------------------------- property

_TEMPLATE_PIECES = st.sampled_from(
    [
        *"/{}*=.:%_-~@!$&'()+,;aZ09 ?#[]\"\\\n\u00e9",
        "**",
        "name",
        "count",
        "inner",
        "inner.leaf",
        "tags",
        "%2F",
    ]
)
_SEGMENTS = st.sampled_from(
    ["v1", "a-b.c~d", "x%20y", "*", "**", "{name}", "{count}", "{name=*}", "{name=a/**}", "{inner.leaf}",
     "{inner.leaf=**/x}", "{tags}", "{inner}", "{nope}", "{count=*/a}", "$'()"]
)  # fmt: skip
_GRAMMAR = st.tuples(
    st.lists(_SEGMENTS, min_size=1, max_size=5), st.sampled_from(["", ":get", ":a.b", ":x%41"])
).map(lambda parts: "/" + "/".join(parts[0]) + parts[1])
_TEMPLATES = st.one_of(
    _GRAMMAR,
    st.lists(_TEMPLATE_PIECES, max_size=14).map("".join),
    st.text(max_size=20),
    st.text(alphabet=string.printable, max_size=20).map(lambda s: "/" + s),
)


@settings(max_examples=200, deadline=None)
@given(template=_TEMPLATES)
def test_any_get_template_gives_files_or_error(
    base_request: plugin_pb2.CodeGeneratorRequest, template: str
) -> None:
    request = request_for(base_request, "valid.proto")
    (file,) = [f for f in request.proto_file if f.name == "valid.proto"]
    (method,) = [m for m in file.service[0].method if m.name == "Do"]
    method.options.Extensions[annotations_pb2.http].get = template
    response = generate(request)
    assert bool(response.error) != bool(response.file)
    event("error" if response.error else "generated")
    if response.error:
        assert response.error.startswith(f"{PREFIX}valid.proto: service {SERVICE}, method Do"), response.error
        assert "internal error" not in response.error
    for generated in response.file:
        compile(generated.content, generated.name, "exec")

"""Generation-time decisions of issue 13: which bindings fill a PATCH mask from the body
(allow_patch_feature), HttpBody bindings (no JSON codec, no WebSocket route), well-known types in paths,
and the errors for what is not supported."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.compiler import plugin_pb2

from protoc_gen_pygateway.plugin import generate
from tests.protoc_support import code_generator_request

PARITY = "parity/v1/parity.proto"


@pytest.fixture(scope="module")
def base() -> plugin_pb2.CodeGeneratorRequest:
    return code_generator_request([PARITY])


def module(base: plugin_pb2.CodeGeneratorRequest, parameter: str = "") -> str:
    request = plugin_pb2.CodeGeneratorRequest()
    request.CopyFrom(base)
    request.parameter = parameter
    response = generate(request)
    assert not response.error, response.error
    return next(f.content for f in response.file if f.name.endswith("_gateway_parity_service.py"))


def builder(code: str, name: str) -> str:
    start = code.index(f"def _{name}_request(")
    return code[start : code.index("\n\n\n", start)]


def test_patch_mask_only_where_grpc_gateway_fills_it(base: plugin_pb2.CodeGeneratorRequest) -> None:
    code = module(base)
    for name in ("update_book_0", "update_book_1"):  # PATCH, body a message field, one FieldMask field
        assert "_rt.body_field_mask(payload.update_mask, body, payload.book.DESCRIPTOR)" in builder(
            code, name
        )
    for name in ("update_book_2", "update_two_masks_0", "update_book_star_0"):  # PUT; two masks; body `*`
        assert "body_field_mask" not in builder(code, name)


def test_allow_patch_feature_false_turns_it_off(base: plugin_pb2.CodeGeneratorRequest) -> None:
    code = module(base, "allow_patch_feature=false")
    assert "body_field_mask" not in code
    assert "# parameters: allow_patch_feature=false" in code


def test_http_body_bindings(base: plugin_pb2.CodeGeneratorRequest) -> None:
    code = module(base)
    assert "_rt.fill_http_body(payload.content, request, body)" in builder(code, "upload_0")
    assert "_rt.fill_http_body(payload, request, body)" in builder(code, "echo_raw_0")
    assert "_JSON.parse" not in builder(code, "upload_0") and "_JSON.parse" not in builder(code, "echo_raw_0")
    assert "lambda reply: reply.file" in code  # response_body names the HttpBody field
    assert "_rt.http_body_stream_call(" in code and "chunked=True" in code
    # Raw streams have no WebSocket route; the JSON streams keep theirs.
    assert "download_stream_0_websocket" not in code and "upload_stream_0_websocket" not in code
    assert "async def chat_0_websocket(" not in code  # Chat is unbound without generate_unbound_methods
    unbound = module(base, "generate_unbound_methods=true")
    assert "async def chat_0_websocket(" in unbound
    assert "WEBSOCKET_ROUTES = True" in unbound


def test_well_known_types_in_path_variables(base: plugin_pb2.CodeGeneratorRequest) -> None:
    code = builder(module(base), "get_event_0")
    assert '_rt.set_path_message(payload.at, _rt.path_value(request.captures[0], False), "at")' in code


def _single(tmp_path: Path, rpc: str, imports: str = "") -> plugin_pb2.CodeGeneratorResponse:
    (tmp_path / "x.proto").write_text(
        'syntax = "proto3";\npackage x;\nimport "google/api/annotations.proto";\n'
        'import "google/api/httpbody.proto";\nimport "google/protobuf/struct.proto";\n'
        f"{imports}message M {{ string name = 1; google.protobuf.Struct s = 2; "
        "google.api.HttpBody b = 3; }\n"
        f"service S {{ {rpc} }}\n"
    )
    return generate(code_generator_request(["x.proto"], include=tmp_path))


def test_http_body_reply_on_client_streams_is_refused(tmp_path: Path) -> None:
    response = _single(
        tmp_path,
        "rpc Up(stream M) returns (google.api.HttpBody) "
        '{ option (google.api.http) = { post: "/u" body: "*" }; }',
    )
    assert "method Up" in response.error and "HttpBody replies" in response.error
    assert "Traceback" not in response.error


def test_other_messages_in_paths_are_still_refused(tmp_path: Path) -> None:
    response = _single(tmp_path, 'rpc G(M) returns (M) { option (google.api.http) = { get: "/g/{s}" }; }')
    assert "{s}" in response.error and "google.protobuf.Timestamp" in response.error
    response = _single(tmp_path, 'rpc G(M) returns (M) { option (google.api.http) = { get: "/g/{b}" }; }')
    assert "{b}" in response.error and "message-typed (google.api.HttpBody)" in response.error


def test_readme_option_table_lists_every_option() -> None:
    import dataclasses
    import re

    from protoc_gen_pygateway.options import Options
    from tests.protoc_support import ROOT

    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Options", 1)[1].split("| option |", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `([a-z_]+)(?:=[A-Z]+)?` \|", table, re.MULTILINE)
    assert sorted(listed) == sorted(f.name for f in dataclasses.fields(Options))

"""grpc_api_configuration=PATH: google.api.Service YAML rules, resolved as grpc-gateway v2 resolves them,
and every problem in the file reported with the file name and line (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.compiler import plugin_pb2

from protoc_gen_pygateway.plugin import generate
from tests.protoc_support import ROOT, code_generator_request, protoc
from tests.test_generation_errors import CASES as ANNOTATION_CASES

PREFIX = "protoc-gen-pygateway: "
PARITY = "parity/v1/parity.proto"
SERVICE = "parity.v1.ParityService"
HEAD = "type: google.api.Service\nconfig_version: 3\nhttp:\n  rules:\n"


@pytest.fixture(scope="module")
def base_request() -> plugin_pb2.CodeGeneratorRequest:
    return code_generator_request([PARITY])


def run(
    base: plugin_pb2.CodeGeneratorRequest, path: Path, extra: str = ""
) -> plugin_pb2.CodeGeneratorResponse:
    request = plugin_pb2.CodeGeneratorRequest()
    request.CopyFrom(base)
    request.parameter = f"grpc_api_configuration={path}" + (f",{extra}" if extra else "")
    return generate(request)


def line_of(text: str, marker: str) -> int:
    """1-based line of the first line containing `marker`."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if marker in line)


def assert_error(response: plugin_pb2.CodeGeneratorResponse, *texts: str) -> None:
    assert response.error.startswith(PREFIX), response.error
    assert "internal error" not in response.error
    assert "Traceback" not in response.error
    for text in texts:
        assert text in response.error, f"{text!r} missing from: {response.error}"
    assert not response.file


def module(response: plugin_pb2.CodeGeneratorResponse) -> str:
    assert not response.error, response.error
    return next(f.content for f in response.file if f.name.endswith("_gateway_parity_service.py"))


# (id, YAML text, marker of the line the error must name, texts the error must contain)
FILE_CASES: list[tuple[str, str, str, tuple[str, ...]]] = [
    (
        "syntax",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    get: [oops\n",
        "",
        ("YAML syntax error",),
    ),
    ("tab_syntax", HEAD + "  - selector: x\n\tget: /v1/x\n", "\tget", ("YAML syntax error",)),
    ("wrong_type", "type: google.api.Other\nconfig_version: 3\n", "type:", ("'google.api.Other'",)),
    ("type_not_string", "type: [1]\n", "type:", ("type must be a string",)),
    (
        "config_version",
        "type: google.api.Service\nconfig_version: 2\n",
        "config_version",
        ("config_version must be 3",),
    ),
    ("unknown_top_key", "type: google.api.Service\nhtp:\n  rules: []\n", "htp:", ("unknown key 'htp'",)),
    ("unknown_http_key", "type: google.api.Service\nhttp:\n  rule: []\n", "rule:", ("unknown key 'rule'",)),
    (
        "fully_decode",
        "http:\n  fully_decode_reserved_expansion: true\n",
        "fully_decode",
        ("fully_decode_reserved_expansion is not supported",),
    ),
    ("rules_not_list", "http:\n  rules: {a: 1}\n", "rules:", ("http.rules must be a list", "a mapping")),
    ("rule_not_mapping", HEAD + "  - just text\n", "just text", ("http.rules[0] must be a mapping",)),
    (
        "unknown_rule_key",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/y\n    bodyy: '*'\n",
        "bodyy",
        ("unknown key 'bodyy'",),
    ),
    (
        "get_not_string",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    get: [a, b]\n",
        "get:",
        ("get must be a string", "a list"),
    ),
    (
        "body_not_string",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    post: /v1/y\n    body: 3\n",
        "body:",
        ("body must be a string", "a number"),
    ),
    (
        "two_patterns",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/y\n    post: /v1/y\n",
        "post:",
        ("more than one HTTP method",),
    ),
    (
        "no_pattern",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    body: '*'\n",
        "- selector",
        ("no HTTP method",),
    ),
    ("no_selector", HEAD + "  - get: /v1/y\n", "- get", ("no selector",)),
    (
        "selector_unknown",
        HEAD + "  - selector: parity.v1.ParityService.Nope\n    get: /v1/y\n",
        "selector",
        ("'parity.v1.ParityService.Nope'", "matches no method"),
    ),
    (
        "selector_wildcard",
        HEAD + "  - selector: parity.v1.ParityService.*\n    get: /v1/y\n",
        "selector",
        ("without wildcards",),
    ),
    (
        "selector_list",
        HEAD
        + "  - selector: parity.v1.ParityService.Plain, parity.v1.ParityService.Yamled\n    get: /v1/y\n",
        "selector",
        ("without wildcards",),
    ),
    (
        "duplicate_key",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/a\n    get: /v1/b\n",
        "/v1/b",
        ("'get' given twice",),
    ),
    (
        "additional_not_list",
        HEAD
        + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/a\n    additional_bindings: /v1/b\n",
        "additional_bindings",
        ("additional_bindings must be a list",),
    ),
    (
        "nested_additional",
        HEAD
        + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/a\n    additional_bindings:\n"
        + "    - get: /v1/b\n      additional_bindings:\n      - get: /v1/c\n",
        "      additional_bindings",
        ("nested additional_bindings",),
    ),
    (
        "selector_in_additional",
        HEAD
        + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/a\n    additional_bindings:\n"
        + "    - get: /v1/b\n      selector: x\n",
        "selector: x",
        ("unknown key 'selector'",),
    ),
    (
        "custom_unknown_key",
        HEAD
        + "  - selector: parity.v1.ParityService.Yamled\n    custom: {kind: GET, path: /v1/a, verb: x}\n",
        "custom:",
        ("unknown key 'verb'",),
    ),
    (
        "custom_no_path",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    custom: {kind: GET}\n",
        "custom:",
        ("custom needs 'path'",),
    ),
    (
        "two_documents",
        "type: google.api.Service\n---\ntype: google.api.Service\n",
        "---",
        ("YAML syntax error",),
    ),
    ("not_mapping", "- a\n- b\n", "- a", ("the document must be a mapping",)),
    # Errors the builder finds, on the line of the key they concern.
    (
        "unknown_path_field",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/{nope}\n",
        "get:",
        ("method Yamled", "{nope}", "'nope'"),
    ),
    (
        "body_on_get",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/y\n    body: '*'\n",
        "body:",
        ("method Yamled", "body '*' on GET"),
    ),
    (
        "unknown_body_field",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    post: /v1/y\n    body: nope\n",
        "body:",
        ("body field 'nope'",),
    ),
    (
        "unknown_response_body",
        HEAD
        + "  - selector: parity.v1.ParityService.Yamled\n    post: /v1/y\n    body: '*'\n"
        + "    response_body: nope\n",
        "response_body",
        ("response_body field 'nope'",),
    ),
    (
        "client_streaming_path",
        HEAD + "  - selector: parity.v1.ParityService.Collect\n    post: /v1/c/{text}\n    body: '*'\n",
        "post:",
        ("method Collect", "client-streaming"),
    ),
    (
        "conflicts_with_annotation",
        HEAD + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/both/{text}\n",
        "get:",
        ("GET /v1/both/{text}", "method Yamled"),
    ),
    (
        "additional_binding_template",
        HEAD
        + "  - selector: parity.v1.ParityService.Yamled\n    get: /v1/a\n    additional_bindings:\n"
        + "    - post: /v1//b\n      body: '*'\n",
        "/v1//b",
        ('invalid path template "/v1//b"',),
    ),
]


@pytest.mark.parametrize("case", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_file_errors_name_file_and_line(
    base_request: plugin_pb2.CodeGeneratorRequest, tmp_path: Path, case: tuple[str, str, str, tuple[str, ...]]
) -> None:
    case_id, text, marker, texts = case
    path = tmp_path / f"{case_id}.yaml"
    path.write_text(text)
    response = run(base_request, path)
    if case_id == "syntax":  # the parser notices the unclosed list at the end of the file
        assert_error(response, f"{path}:", *texts)
        return
    assert_error(response, f"{path}:{line_of(text, marker)}", *texts)


@pytest.mark.parametrize(
    "case",
    [c for c in ANNOTATION_CASES if c.offending and c.offending[0].startswith("invalid path template")],
    ids=lambda c: c.id,
)
def test_every_path_template_error_names_the_line(
    base_request: plugin_pb2.CodeGeneratorRequest, tmp_path: Path, case: object
) -> None:
    """The grpc-httpjson-transcoding negative corpus, written in YAML instead of an annotation."""
    template = case.offending[0].split('"', 1)[1].rsplit('"', 1)[0]  # type: ignore[attr-defined]
    quoted = "'" + template.replace("'", "''") + "'"
    text = HEAD + f"  - selector: {SERVICE}.Yamled\n    get: {quoted}\n"
    path = tmp_path / "templates.yaml"
    path.write_text(text)
    response = run(base_request, path)
    assert_error(response, f"{path}:{line_of(text, 'get:')}", "method Yamled", case.offending[0])  # type: ignore[attr-defined]


def test_missing_and_empty_files(base_request: plugin_pb2.CodeGeneratorRequest, tmp_path: Path) -> None:
    assert_error(run(base_request, tmp_path / "absent.yaml"), f"{tmp_path / 'absent.yaml'}", "cannot read it")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert_error(run(base_request, empty), str(empty), "empty")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert_error(run(base_request, binary), str(binary))


def test_rules_bind_methods_in_grpc_gateway_order(base_request: plugin_pb2.CodeGeneratorRequest) -> None:
    """YAML rules (in file order, each with its additional_bindings) come first, the annotation after;
    a rule for an annotated method adds a binding; unannotated methods are served only when bound."""
    code = module(run(base_request, ROOT / "testdata" / "apiconfig" / "parity.yaml"))
    routes = code.split('"""', 2)[1]
    assert "GET /v1/yamled/{text} -> Yamled\n    POST /v1/yamled -> Yamled" in routes
    assert "POST /v1/both -> Both\n    GET /v1/both/{text} -> Both" in routes
    assert "GET /v1/ticks/{text} -> Ticks" in routes
    assert "Plain" not in routes and "Collect" not in routes  # not bound: generate_unbound_methods is off
    assert "async def both_0(" in code and "async def both_1(" in code


def test_unbound_default_only_for_methods_without_any_rule(
    base_request: plugin_pb2.CodeGeneratorRequest,
) -> None:
    code = module(
        run(base_request, ROOT / "testdata" / "apiconfig" / "parity.yaml", "generate_unbound_methods=true")
    )
    routes = code.split('"""', 2)[1]
    for name in ("Plain", "Countdown", "Collect", "Chat"):
        assert f"POST /{SERVICE}/{name} -> {name}" in routes
    assert f"/{SERVICE}/Ticks" not in routes and f"/{SERVICE}/Yamled" not in routes


def test_json_names_and_spaces_in_selectors(
    base_request: plugin_pb2.CodeGeneratorRequest, tmp_path: Path
) -> None:
    """protojson's spellings (responseBody, additionalBindings, configVersion) work as grpc-gateway reads
    them; spaces around a selector are ignored."""
    path = tmp_path / "camel.yaml"
    path.write_text(
        "type: google.api.Service\nconfigVersion: 3\nhttp:\n  rules:\n"
        f"  - selector: '  {SERVICE}.Yamled '\n    post: /v1/camel\n    body: '*'\n    responseBody: text\n"
        "    additionalBindings:\n    - custom: {kind: SEARCH, path: '/v1/camel/{text}'}\n"
    )
    routes = module(run(base_request, path)).split('"""', 2)[1]
    assert "POST /v1/camel -> Yamled\n    SEARCH /v1/camel/{text} -> Yamled" in routes


def test_rules_for_files_not_generated_are_not_errors(tmp_path: Path) -> None:
    """A selector naming a method of an imported (not generated) file matches, as in grpc-gateway, and
    produces nothing for that file."""
    request = code_generator_request(["shop/v1/shop.proto", PARITY])
    request.file_to_generate[:] = ["shop/v1/shop.proto"]
    path = tmp_path / "other.yaml"
    path.write_text(HEAD + f"  - selector: {SERVICE}.Yamled\n    get: /v1/y/{{text}}\n")
    request.parameter = f"grpc_api_configuration={path}"
    response = generate(request)
    assert not response.error, response.error
    assert not any("parity" in f.name for f in response.file)


def test_protoc_reports_the_line_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    text = HEAD + f"  - selector: {SERVICE}.Yamled\n    get: /v1/{{text\n"
    path.write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    result = protoc(
        [
            f"-I{ROOT / 'testdata' / 'protos'}",
            f"--pygateway_out={out}",
            f"--pygateway_opt=grpc_api_configuration={path}",
            PARITY,
        ]
    )
    assert result.returncode != 0
    assert f"{path}:{line_of(text, 'get:')}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

"""The plugin as protoc sees it: entry point, features, which files it writes, options, determinism,
file headers, the protoc wrapper, and the proto dialects (proto2, proto3 optional, editions)."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from protoc_gen_pygateway import __version__
from protoc_gen_pygateway import protoc as wrapper
from protoc_gen_pygateway.builder import build_services
from protoc_gen_pygateway.descriptors import Registry
from protoc_gen_pygateway.options import Options, parse_options
from protoc_gen_pygateway.plugin import generate, main
from protoc_gen_pygateway.render import runtime_sources
from tests.golden import CASES
from tests.protoc_support import ROOT, code_generator_request, protoc

SHOP = ["shop/v1/shop.proto"]
SHOP_MODULES = {
    "shop/v1/shop_pb2_gateway_shop_service.py",
    "shop/v1/shop_pb2_gateway_shelf_admin_service.py",
}
#: The runtime package (every module of protoc_gen_pygateway/runtime/) and the serve command's script.
SUPPORT = {f"pygateway_runtime/{path}" for path in runtime_sources()} | {"pygateway_serve.py"}
Response = plugin_pb2.CodeGeneratorResponse


@pytest.fixture(scope="module")
def shop_request() -> plugin_pb2.CodeGeneratorRequest:
    return code_generator_request(SHOP)


def with_parameter(
    request: plugin_pb2.CodeGeneratorRequest, parameter: str
) -> plugin_pb2.CodeGeneratorRequest:
    copy = plugin_pb2.CodeGeneratorRequest()
    copy.CopyFrom(request)
    copy.parameter = parameter
    return copy


def generated(request: plugin_pb2.CodeGeneratorRequest, parameter: str | None = None) -> dict[str, str]:
    if parameter is not None:
        request = with_parameter(request, parameter)
    response = generate(request)
    assert not response.error, response.error
    return {f.name: f.content for f in response.file}


def write_protos(root: Path, protos: dict[str, str]) -> Path:
    for name, text in protos.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


HTTP = 'import "google/api/annotations.proto";\n'


# ------------------------------------------------------------------------------------- entry point


def test_console_script_prints_version() -> None:
    script = Path(sys.executable).parent / "protoc-gen-pygateway"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"protoc-gen-pygateway {__version__}\n"


def test_version_matches_package_metadata() -> None:
    from importlib.metadata import version

    assert version("protoc-gen-pygateway") == __version__


def test_main_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"protoc-gen-pygateway {__version__}\n"
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: protoc-gen-pygateway")
    assert main(["--bogus"]) == 2
    assert capsys.readouterr().err.startswith("usage: protoc-gen-pygateway")
    assert main(["--include-path"]) == 0
    googleapis, wkt = (Path(part) for part in capsys.readouterr().out.strip().split(os.pathsep))
    assert (googleapis / "google" / "api" / "annotations.proto").is_file()
    assert (googleapis / "google" / "api" / "http.proto").is_file()
    assert (wkt / "google" / "protobuf" / "descriptor.proto").is_file()


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def test_main_reads_request_and_writes_response(
    shop_request: plugin_pb2.CodeGeneratorRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(shop_request.SerializeToString()))
    assert main([]) == 0
    response = Response.FromString(capsysbinary.readouterr().out)
    assert not response.error
    assert {f.name for f in response.file} == SHOP_MODULES | SUPPORT


def test_main_reports_unparsable_stdin(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(b"\xff\xff not a request"))
    assert main([]) == 1
    captured = capsysbinary.readouterr()
    assert captured.out == b""
    assert b"cannot parse the CodeGeneratorRequest" in captured.err
    assert b"Traceback" not in captured.err


@pytest.mark.parametrize("parameter", ["", "nope=1"], ids=["ok", "error"])
def test_supported_features(shop_request: plugin_pb2.CodeGeneratorRequest, parameter: str) -> None:
    response = generate(with_parameter(shop_request, parameter))
    assert bool(response.error) == bool(parameter)
    assert (
        response.supported_features == Response.FEATURE_PROTO3_OPTIONAL | Response.FEATURE_SUPPORTS_EDITIONS
    )
    assert response.minimum_edition == descriptor_pb2.EDITION_PROTO2
    assert response.maximum_edition == descriptor_pb2.EDITION_2023


def test_internal_error_is_a_message_not_a_traceback(
    shop_request: plugin_pb2.CodeGeneratorRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> object:
        raise KeyError("boom")

    monkeypatch.setattr("protoc_gen_pygateway.plugin.build_services", broken)
    response = generate(shop_request)
    assert response.error == f"protoc-gen-pygateway {__version__}: internal error: KeyError: 'boom'"
    assert not response.file


# ------------------------------------------------------------------------------------ what is written


def test_one_module_per_service(shop_request: plugin_pb2.CodeGeneratorRequest) -> None:
    files = generated(shop_request)
    assert set(files) == SHOP_MODULES | SUPPORT
    shop = files["shop/v1/shop_pb2_gateway_shop_service.py"]
    admin = files["shop/v1/shop_pb2_gateway_shelf_admin_service.py"]
    assert 'SERVICE = "shop.v1.ShopService"' in shop
    assert "class ShopServiceGateway:" in shop
    assert 'SERVICE = "shop.v1.ShelfAdminService"' in admin
    assert "GetShelf" in admin and "GetShelf" not in shop


def test_emit_runtime_false(shop_request: plugin_pb2.CodeGeneratorRequest) -> None:
    assert set(generated(shop_request, "emit_runtime=false")) == SHOP_MODULES


def test_response_files_are_sorted(shop_request: plugin_pb2.CodeGeneratorRequest) -> None:
    names = [f.name for f in generate(shop_request).file]
    assert names == sorted(names)


SERVICES = {
    "dep/v1/dep.proto": (
        'syntax = "proto3";\npackage dep.v1;\n' + HTTP + "message Thing { string name = 1; }\n"
        "service DepService {\n"
        "  rpc GetThing(Thing) returns (Thing) {\n"
        '    option (google.api.http) = { get: "/v1/{name=things/*}" };\n'
        "  }\n"
        "}\n"
    ),
    "app/v1/app.proto": (
        'syntax = "proto3";\npackage app.v1;\n' + HTTP + 'import "dep/v1/dep.proto";\n'
        'import "google/protobuf/empty.proto";\n'
        "message Req { string id = 1; }\n"
        "service AppService {\n"
        '  rpc Get(Req) returns (dep.v1.Thing) { option (google.api.http) = { get: "/v1/apps/{id}" }; }\n'
        "  rpc Unbound(Req) returns (google.protobuf.Empty);\n"
        "}\n"
        "// No method is annotated.\n"
        "service PlainService {\n"
        "  rpc Ping(Req) returns (Req);\n"
        "}\n"
    ),
    "parts/v1/part.proto": 'syntax = "proto3";\npackage parts.v1;\nmessage Part { string id = 1; }\n',
    "mixed/v1/mixed.proto": (
        'syntax = "proto3";\npackage mixed.v1;\n' + HTTP + 'import "parts/v1/part.proto";\n'
        "message Req { string id = 1; }\n"
        "service MixedService {\n"
        '  rpc Get(Req) returns (Req) { option (google.api.http) = { get: "/v1/mixed/{id}" }; }\n'
        "  rpc Upload(stream parts.v1.Part) returns (Req) {\n"
        '    option (google.api.http) = { post: "/v1/mixed:upload" body: "*" };\n'
        "  }\n"
        "  rpc Watch(Req) returns (stream parts.v1.Part) {\n"
        '    option (google.api.http) = { get: "/v1/mixed:watch" };\n'
        "  }\n"
        "}\n"
        "service StreamOnlyService {\n"
        '  rpc Watch(Req) returns (stream Req) { option (google.api.http) = { get: "/v1/only:watch" }; }\n'
        "}\n"
    ),
}


@pytest.fixture(scope="module")
def services_request(tmp_path_factory: pytest.TempPathFactory) -> plugin_pb2.CodeGeneratorRequest:
    root = write_protos(tmp_path_factory.mktemp("services"), SERVICES)
    request = code_generator_request(["app/v1/app.proto", "mixed/v1/mixed.proto"], include=root)
    assert {"dep/v1/dep.proto", "parts/v1/part.proto"} <= {f.name for f in request.proto_file}
    return request


def only(request: plugin_pb2.CodeGeneratorRequest, *files: str, parameter: str = "") -> dict[str, str]:
    narrowed = with_parameter(request, parameter)
    narrowed.file_to_generate[:] = files
    return generated(narrowed)


def test_generates_only_file_to_generate(services_request: plugin_pb2.CodeGeneratorRequest) -> None:
    files = only(services_request, "app/v1/app.proto")
    assert set(files) == {"app/v1/app_pb2_gateway_app_service.py"} | SUPPORT
    module = files["app/v1/app_pb2_gateway_app_service.py"]
    assert "from dep.v1 import dep_pb2 as dep_dot_v1_dot_dep__pb2" in module
    assert "/v1/{name=things/*}" not in module
    files = only(services_request, "dep/v1/dep.proto", "app/v1/app.proto")
    assert (
        set(files)
        == {"dep/v1/dep_pb2_gateway_dep_service.py", "app/v1/app_pb2_gateway_app_service.py"} | SUPPORT
    )


def test_unserved_methods_have_no_route_and_no_import(
    services_request: plugin_pb2.CodeGeneratorRequest,
) -> None:
    """The model decides which methods get handlers (streaming ones may not, yet); the module follows it."""
    registry = Registry(list(services_request.proto_file))
    (mixed,) = [
        s for s in build_services(registry, ["mixed/v1/mixed.proto"], Options()) if s.name == "MixedService"
    ]
    served = {m.name for m in mixed.served_methods}
    assert "Get" in served
    files = only(services_request, "mixed/v1/mixed.proto")
    module = files["mixed/v1/mixed_pb2_gateway_mixed_service.py"]
    compile(module, "mixed", "exec")
    for method in mixed.methods:
        assert (f'"{method.grpc_path}"' in module) == (method.name in served), method.name
    # parts.v1.Part is used only by the streaming methods: imported only when one of them is served.
    assert ("from parts.v1 import part_pb2" in module) == bool(served & {"Upload", "Watch"})
    # A service with no served method gets no module at all.
    only_watch = "mixed/v1/mixed_pb2_gateway_stream_only_service.py"
    assert (only_watch in files) == ("Watch" in served)


def test_nothing_bound_means_no_files(tmp_path: Path) -> None:
    root = write_protos(
        tmp_path,
        {"plain.proto": 'syntax = "proto3";\nmessage M {}\nservice Plain { rpc Ping(M) returns (M); }\n'},
    )
    request = code_generator_request(["plain.proto"], include=root)
    assert generated(request) == {}
    assert (
        set(generated(request, "generate_unbound_methods=true")) == {"plain_pb2_gateway_plain.py"} | SUPPORT
    )


def test_generate_unbound_methods(services_request: plugin_pb2.CodeGeneratorRequest) -> None:
    files = only(services_request, "app/v1/app.proto", parameter="generate_unbound_methods=true")
    assert (
        set(files)
        == {"app/v1/app_pb2_gateway_app_service.py", "app/v1/app_pb2_gateway_plain_service.py"} | SUPPORT
    )
    plain = files["app/v1/app_pb2_gateway_plain_service.py"]
    assert "    POST /app.v1.PlainService/Ping -> Ping\n" in plain
    assert 'method="POST",\n                template="/app.v1.PlainService/Ping",\n' in plain
    assert 'segments=_rt.segments("app.v1.PlainService", "Ping"),\n' in plain
    assert "_JSON.parse(payload, body, _decode_" in plain  # body "*", with the generated fast path
    app = files["app/v1/app_pb2_gateway_app_service.py"]
    assert "    POST /app.v1.AppService/Unbound -> Unbound\n" in app
    assert "    GET /v1/apps/{id} -> Get\n" in app

    # The model behind it: POST /pkg.Service/Method, body `*`, no query parameters.
    registry = Registry(list(services_request.proto_file))
    services = build_services(registry, ["app/v1/app.proto"], parse_options("generate_unbound_methods=true"))
    ping = next(m for s in services for m in s.methods if m.grpc_path == "/app.v1.PlainService/Ping")
    (binding,) = ping.bindings
    assert (binding.http_method, binding.template.source) == ("POST", "/app.v1.PlainService/Ping")
    assert binding.body.kind == "all" and binding.query_closed and binding.path_params == ()


# ----------------------------------------------------------------------------------------- options

DEFAULTS = {
    "generate_unbound_methods": False,
    "grpc_api_configuration": "",
    "allow_patch_feature": True,
    "allow_delete_body": False,
    "use_proto_names": False,
    "emit_unpopulated": True,
    "enums_as_ints": False,
    "unknown_query_params": "reject",
    "unknown_body_fields": "reject",
    "forward_permanent_headers": True,
    "forward_header": (),
    "strip_header": (),
    "websocket": True,
    "max_body_bytes": 4 * 1024 * 1024,
    "max_json_depth": 64,
    "emit_runtime": True,
    "openapi": False,
    "protocols": ("rest", "grpcweb", "connect"),
}


def test_option_defaults() -> None:
    options = parse_options("")
    assert dataclasses.asdict(options) == DEFAULTS  # a new option must be added to this table
    assert options == Options()
    assert options.canonical() == ""


OPTION_TABLE: list[tuple[str, dict[str, object], str]] = [
    ("generate_unbound_methods=true", {"generate_unbound_methods": True}, "generate_unbound_methods=true"),
    ("allow_delete_body", {"allow_delete_body": True}, "allow_delete_body=true"),
    ("allow_delete_body=false", {}, ""),
    ("use_proto_names=true", {"use_proto_names": True}, "use_proto_names=true"),
    ("emit_unpopulated=false", {"emit_unpopulated": False}, "emit_unpopulated=false"),
    ("emit_unpopulated=true", {}, ""),
    ("enums_as_ints=true", {"enums_as_ints": True}, "enums_as_ints=true"),
    ("unknown_query_params=ignore", {"unknown_query_params": "ignore"}, "unknown_query_params=ignore"),
    ("unknown_query_params=reject", {}, ""),
    ("unknown_body_fields=ignore", {"unknown_body_fields": "ignore"}, "unknown_body_fields=ignore"),
    (
        "forward_permanent_headers=false",
        {"forward_permanent_headers": False},
        "forward_permanent_headers=false",
    ),
    ("forward_header=X-Request-Id", {"forward_header": ("x-request-id",)}, "forward_header=x-request-id"),
    (
        "forward_header=x-b,forward_header=X-A,forward_header=x-a,forward_header=x-b",
        {"forward_header": ("x-a", "x-b")},
        "forward_header=x-a,forward_header=x-b",
    ),
    (
        "strip_header=x-z,strip_header=x-y",
        {"strip_header": ("x-y", "x-z")},
        "strip_header=x-y,strip_header=x-z",
    ),
    ("max_body_bytes=65536", {"max_body_bytes": 65536}, "max_body_bytes=65536"),
    ("max_body_bytes=0010", {"max_body_bytes": 10}, "max_body_bytes=10"),
    ("max_body_bytes=4194304", {}, ""),
    ("max_json_depth=16", {"max_json_depth": 16}, "max_json_depth=16"),
    ("max_json_depth=64", {}, ""),
    ("emit_runtime=false", {"emit_runtime": False}, "emit_runtime=false"),
    ("websocket=false", {"websocket": False}, "websocket=false"),
    ("allow_patch_feature=false", {"allow_patch_feature": False}, "allow_patch_feature=false"),
    (
        "grpc_api_configuration=conf/api.yaml",
        {"grpc_api_configuration": "conf/api.yaml"},
        "grpc_api_configuration=conf/api.yaml",
    ),
    ("openapi=true", {"openapi": True}, "openapi=true"),
    ("openapi", {"openapi": True}, "openapi=true"),
    ("openapi=false", {}, ""),
    ("protocols=rest", {"protocols": ("rest",)}, "protocols=rest"),
    ("protocols=connect+rest", {"protocols": ("rest", "connect")}, "protocols=rest+connect"),
    (
        "protocols=grpcweb,protocols=connect",
        {"protocols": ("grpcweb", "connect")},
        "protocols=grpcweb+connect",
    ),
    ("protocols=connect+grpcweb+rest+rest", {}, ""),
    (" use_proto_names = true ,, ", {"use_proto_names": True}, "use_proto_names=true"),
    (
        "max_body_bytes=1,enums_as_ints=true,allow_delete_body=true",
        {"max_body_bytes": 1, "enums_as_ints": True, "allow_delete_body": True},
        "allow_delete_body=true,enums_as_ints=true,max_body_bytes=1",
    ),
]


@pytest.mark.parametrize(
    ("parameter", "changed", "canonical"), OPTION_TABLE, ids=[p for p, _, _ in OPTION_TABLE]
)
def test_option_parsing(parameter: str, changed: dict[str, object], canonical: str) -> None:
    options = parse_options(parameter)
    assert dataclasses.asdict(options) == {**DEFAULTS, **changed}
    assert options.canonical() == canonical
    assert parse_options(canonical) == options


def test_every_option_is_in_the_table() -> None:
    covered = {key for _, changed, _ in OPTION_TABLE for key in changed}
    assert covered == set(DEFAULTS)


_HEADERS = st.lists(st.sampled_from(["x-a", "X-B", "x-request-id", "te", "grpc-x", "x.y"]), max_size=4)


@settings(max_examples=100, deadline=None)
@given(
    options=st.builds(
        Options,
        generate_unbound_methods=st.booleans(),
        allow_delete_body=st.booleans(),
        use_proto_names=st.booleans(),
        emit_unpopulated=st.booleans(),
        enums_as_ints=st.booleans(),
        unknown_query_params=st.sampled_from(["reject", "ignore"]),
        unknown_body_fields=st.sampled_from(["reject", "ignore"]),
        forward_permanent_headers=st.booleans(),
        forward_header=_HEADERS.map(lambda h: tuple(sorted({x.lower() for x in h}))),
        strip_header=_HEADERS.map(lambda h: tuple(sorted({x.lower() for x in h}))),
        max_body_bytes=st.integers(min_value=1, max_value=2**40),
        emit_runtime=st.booleans(),
        openapi=st.booleans(),
        protocols=st.sampled_from([("rest",), ("rest", "connect"), ("rest", "grpcweb", "connect")]),
    )
)
def test_canonical_round_trips(options: Options) -> None:
    assert parse_options(options.canonical()) == options


def test_bad_openapi_value_is_a_generation_error(shop_request: plugin_pb2.CodeGeneratorRequest) -> None:
    response = generate(with_parameter(shop_request, "openapi=yes"))
    assert response.error == "protoc-gen-pygateway: option openapi: expected true or false, got 'yes'"
    assert not response.file


def test_openapi_adds_documents_and_changes_no_module(shop_request: plugin_pb2.CodeGeneratorRequest) -> None:
    plain = generated(shop_request)
    with_docs = generated(shop_request, "openapi=true")
    assert set(with_docs) - set(plain) == {"shop/v1/shop.openapi.json"}
    for name, content in plain.items():  # the same code; only the header names the parameter
        header = "# parameters: (defaults)\n"
        assert with_docs[name] == content.replace(header, "# parameters: openapi=true\n"), name


# ----------------------------------------------------------------------------- determinism, headers


def test_in_process_output_is_stable(shop_request: plugin_pb2.CodeGeneratorRequest) -> None:
    first = generate(with_parameter(shop_request, CASES["options"])).SerializeToString()
    second = generate(with_parameter(shop_request, CASES["options"])).SerializeToString()
    assert first == second


def test_file_order_does_not_matter(services_request: plugin_pb2.CodeGeneratorRequest) -> None:
    forward = with_parameter(services_request, "")
    forward.file_to_generate[:] = ["dep/v1/dep.proto", "app/v1/app.proto", "mixed/v1/mixed.proto"]
    backward = with_parameter(services_request, "")
    backward.file_to_generate[:] = ["mixed/v1/mixed.proto", "app/v1/app.proto", "dep/v1/dep.proto"]
    assert generate(forward).SerializeToString() == generate(backward).SerializeToString()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_protoc_wrapper_output_identical_across_hash_seeds(tmp_path: Path) -> None:
    """The wrapper needs only `-I testdata/protos` (google/api and the WKTs come from the wrapper)."""
    trees = []
    for seed in ("0", "12345"):
        out = tmp_path / seed
        out.mkdir()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "protoc_gen_pygateway.protoc",
                "-Itestdata/protos",
                f"--python_out={out}",
                f"--pygateway_out={out}",
                f"--pygateway_opt={CASES['options']}",
                *SHOP,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        trees.append(_tree(out))
    assert trees[0] == trees[1]
    assert set(trees[0]) == SHOP_MODULES | SUPPORT | {"shop/v1/shop_pb2.py", "shop/v1/shop.openapi.json"}


def test_wrapper_argv() -> None:
    argv = wrapper.build_argv(["-Ifoo", "--pygateway_out=out", "x.proto"])
    assert argv[:4] == ["grpc_tools.protoc", "-Ifoo", "--pygateway_out=out", "x.proto"]  # user's -I first
    googleapis, wkt = wrapper.include_paths()
    assert (Path(googleapis) / "google/api/annotations.proto").is_file()
    assert (Path(wkt) / "google/protobuf/empty.proto").is_file()
    assert [a for a in argv if a.startswith("-I")] == ["-Ifoo", f"-I{googleapis}", f"-I{wkt}"]
    (plugin,) = [a for a in argv if a.startswith("--plugin=")]
    assert os.access(plugin.partition("=")[2].partition("=")[2], os.X_OK)
    custom = wrapper.build_argv(["--plugin=protoc-gen-pygateway=/bin/mine", "x.proto"])
    assert [a for a in custom if a.startswith("--plugin=")] == ["--plugin=protoc-gen-pygateway=/bin/mine"]


def test_wrapper_launcher_without_console_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a source tree without the console script: a launcher running the plugin with this interpreter."""
    bindir = tmp_path / "my env" / "bin"
    bindir.mkdir(parents=True)
    interpreter = bindir / "python3"  # stands in for an interpreter without the console script beside it
    interpreter.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    interpreter.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(interpreter))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    launcher = Path(wrapper.plugin_path())
    assert launcher.parent == tmp_path
    assert os.access(launcher, os.X_OK)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [launcher.name]  # no partial file left
    result = subprocess.run(
        [str(launcher), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout == f"protoc-gen-pygateway {__version__}\n", result.stderr
    monkeypatch.setattr(sys, "executable", str(tmp_path / "other" / "python3"))
    assert Path(wrapper.plugin_path()) != launcher  # another interpreter gets its own launcher


def test_headers(shop_request: plugin_pb2.CodeGeneratorRequest) -> None:
    first = f"# Code generated by protoc-gen-pygateway {__version__}. DO NOT EDIT."
    for case, parameter in CASES.items():
        files = generated(shop_request, parameter)
        expected_parameters = parse_options(parameter).canonical() or "(defaults)"
        for name in SHOP_MODULES:
            assert files[name].splitlines()[:3] == [
                first,
                "# source: shop/v1/shop.proto",
                f"# parameters: {expected_parameters}",
            ], (case, name)
        assert files["pygateway_runtime/app.py"].splitlines()[:2] == [
            first,
            "# source: protoc_gen_pygateway/runtime/app.py",
        ]
        assert files["pygateway_serve.py"].splitlines()[:2] == [first, "# source: (serve command)"]
    options_header = generated(shop_request, CASES["options"])["shop/v1/shop_pb2_gateway_shop_service.py"]
    for item in CASES["options"].split(","):  # every non-default option is named in the header
        assert item in options_header.splitlines()[2]


def test_forward_header_of_a_permanent_header(shop_request: plugin_pb2.CodeGeneratorRequest) -> None:
    """forward_header may name a header forwarded as `grpcgateway-<name>` by default: it keeps its name."""
    module = generated(shop_request, "forward_header=Cookie")["shop/v1/shop_pb2_gateway_shop_service.py"]
    assert '    "cookie": "cookie",\n' in module
    assert '"grpcgateway-cookie"' not in module


def test_support_modules_do_not_depend_on_options(shop_request: plugin_pb2.CodeGeneratorRequest) -> None:
    default, options = (generated(shop_request, CASES[case]) for case in ("default", "options"))
    for name in SUPPORT:
        assert default[name] == options[name]


# --------------------------------------------------------------------------------------- dialects

DIALECTS = {
    "p2/v1/legacy.proto": (
        'syntax = "proto2";\npackage p2.v1;\n' + HTTP + "message Req {\n"
        "  optional string name = 1;\n"
        "  required int32 count = 2;\n"
        "  enum Kind { KIND_A = 0; KIND_B = 1; }\n"
        "  optional Kind kind = 3;\n"
        "  optional group Extra = 4 { optional string note = 5; }\n"
        "  optional int64 big = 6 [default = 7];\n"
        "}\n"
        "service LegacyService {\n"
        "  rpc Get(Req) returns (Req) {\n"
        '    option (google.api.http) = { get: "/v1/{name}/{count}/{kind}/{big}" };\n'
        "  }\n"
        '  rpc Note(Req) returns (Req) { option (google.api.http) = { post: "/v1/notes" body: "extra" }; }\n'
        "}\n"
    ),
    "ed/v1/modern.proto": (
        'edition = "2023";\npackage ed.v1;\n' + HTTP + "message Sub { string leaf = 1; }\n"
        "message Req {\n"
        "  string name = 1;\n"
        "  int32 count = 2 [features.field_presence = IMPLICIT];\n"
        "  Sub sub = 3 [features.message_encoding = DELIMITED];\n"
        "  enum Kind { option features.enum_type = CLOSED; KIND_A = 1; KIND_B = 2; }\n"
        "  Kind kind = 4;\n"
        "  repeated int32 values = 5 [features.repeated_field_encoding = EXPANDED];\n"
        "}\n"
        "service ModernService {\n"
        "  rpc Get(Req) returns (Req) {\n"
        '    option (google.api.http) = { get: "/v1/{name}/{sub.leaf}/{kind}" };\n'
        "  }\n"
        '  rpc Put(Req) returns (Req) { option (google.api.http) = { put: "/v1/{name}" body: "sub" }; }\n'
        "}\n"
    ),
    "opt/v1/optional.proto": (
        'syntax = "proto3";\npackage opt.v1;\n' + HTTP + "message Req {\n"
        "  optional string name = 1;\n"
        "  optional int32 count = 2;\n"
        "  oneof choice { string a = 3; int32 b = 4; }\n"
        "}\n"
        "service OptionalService {\n"
        '  rpc Get(Req) returns (Req) { option (google.api.http) = { get: "/v1/{name}/{count}/{a}" }; }\n'
        "}\n"
    ),
    "kw/v1/keywords.proto": (
        'syntax = "proto3";\npackage kw.v1;\n'
        + HTTP
        + "message Inner { string from = 1; int64 lambda = 2; }\n"
        "message Req {\n"
        "  string from = 1;\n"
        "  Inner in = 2;\n"
        "  Inner class = 3;\n"
        "  repeated string import = 4;\n"
        "  string None = 5;\n"
        "}\n"
        "service KeywordService {\n"
        "  rpc Get(Req) returns (Req) {\n"
        '    option (google.api.http) = { get: "/v1/{from}/{in.from}/{in.lambda}/{None}" };\n'
        "  }\n"
        "  rpc Post(Req) returns (Req) {\n"
        '    option (google.api.http) = { post: "/v1/x" body: "class" response_body: "import" };\n'
        "  }\n"
        "}\n"
    ),
    "kw/v1/keyword_response.proto": (
        'syntax = "proto3";\npackage kw.v1.resp;\n' + HTTP + "message Inner { string leaf = 1; }\n"
        "message Req { Inner class = 1; }\n"
        "service KeywordResponseService {\n"
        "  rpc Get(Req) returns (Req) {\n"
        '    option (google.api.http) = { get: "/v1/x" response_body: "class" };\n'
        "  }\n"
        "}\n"
    ),
    "nopackage.proto": (
        'syntax = "proto3";\n' + HTTP + "message Req { string name = 1; }\n"
        "service Bare {\n"
        '  rpc Get(Req) returns (Req) { option (google.api.http) = { get: "/v1/{name}" }; }\n'
        "}\n"
    ),
}


@pytest.fixture(scope="module")
def dialects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, plugin_pb2.CodeGeneratorRequest]:
    root = write_protos(tmp_path_factory.mktemp("dialects"), DIALECTS)
    return root, code_generator_request(sorted(DIALECTS), include=root)


def _generate_one(request: plugin_pb2.CodeGeneratorRequest, file: str) -> str:
    narrowed = with_parameter(request, "emit_runtime=false")
    narrowed.file_to_generate[:] = [file]
    (module,) = generated(narrowed).values()
    compile(module, file, "exec")
    return module


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        (
            "p2/v1/legacy.proto",
            [
                "_rt.parse_int64(",
                '"/v1/notes"',
                '_JSON.parse_field(payload, "extra", body, required=True, fast=_decode_req)',
            ],
        ),
        ("ed/v1/modern.proto", ["payload.sub.leaf = ", "ed_dot_v1_dot_modern__pb2.Req.Kind.DESCRIPTOR"]),
        ("opt/v1/optional.proto", ["payload.name = ", "payload.count = _rt.parse_int32(", "payload.a = "]),
        (
            "kw/v1/keywords.proto",
            [
                'setattr(payload, "from", ',
                'setattr(getattr(payload, "in"), "from", ',
                'setattr(getattr(payload, "in"), "lambda", _rt.parse_int64(',
                'setattr(payload, "None", ',
                '_JSON.parse_field(payload, "class", body, required=True, fast=_decode_req)',
            ],
        ),
        ("nopackage.proto", ['SERVICE = "Bare"', "import nopackage_pb2 as nopackage__pb2", '"/Bare/Get"']),
    ],
)
def test_dialects_generate_valid_python(
    dialects: tuple[Path, plugin_pb2.CodeGeneratorRequest], file: str, expected: list[str]
) -> None:
    module = _generate_one(dialects[1], file)
    for text in expected:
        assert text in module


def test_keyword_message_response_body(dialects: tuple[Path, plugin_pb2.CodeGeneratorRequest]) -> None:
    _generate_one(dialects[1], "kw/v1/keyword_response.proto")


def test_editions_through_protoc(
    dialects: tuple[Path, plugin_pb2.CodeGeneratorRequest], tmp_path: Path
) -> None:
    """protoc itself checks the plugin's declared edition range: 2023 passes, 2024 is refused."""
    root = dialects[0]
    (root / "ed2024.proto").write_text('edition = "2024";\npackage ed24;\nmessage M { string a = 1; }\n')
    result = protoc([f"-I{root}", f"--pygateway_out={tmp_path}", "ed/v1/modern.proto"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ed/v1/modern_pb2_gateway_modern_service.py").is_file()
    result = protoc([f"-I{root}", f"--pygateway_out={tmp_path}", "ed2024.proto"])
    assert result.returncode != 0
    assert "2024" in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------------- template cache


def test_template_cache_never_changes_the_output(
    shop_request: plugin_pb2.CodeGeneratorRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiled templates are cached in a private temporary folder: the output is the same without the
    cache, with a cold and a warm one, and with a corrupt or truncated cache (it is then just rebuilt)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("PYGATEWAY_TEMPLATE_CACHE", "off")
    uncached = generated(shop_request, "openapi=true")
    assert not list(tmp_path.rglob("*.cache"))
    monkeypatch.delenv("PYGATEWAY_TEMPLATE_CACHE")
    assert generated(shop_request, "openapi=true") == uncached  # cold: fills the cache
    entries = sorted(tmp_path.rglob("protoc-gen-pygateway-*.cache"))
    assert len(entries) == 1, entries  # the service template (the runtime is emitted verbatim)
    assert generated(shop_request, "openapi=true") == uncached  # warm
    for entry in entries:
        data = entry.read_bytes()
        entry.write_bytes(data[: len(data) // 2])  # truncated mid-marshal
    assert generated(shop_request, "openapi=true") == uncached
    for entry in entries:
        entry.write_bytes(b"not a cache entry")
    assert generated(shop_request, "openapi=true") == uncached


def test_no_fast_decoders_when_bodies_may_reach_json_formats_depth_limit(
    shop_request: plugin_pb2.CodeGeneratorRequest,
) -> None:
    """json_format refuses messages nested 100 deep with its own message: a module whose max_json_depth
    admits such bodies leaves every body to json_format (decided here, not per request)."""
    below = generated(shop_request, "max_json_depth=99")["shop/v1/shop_pb2_gateway_shop_service.py"]
    at = generated(shop_request, "max_json_depth=100")["shop/v1/shop_pb2_gateway_shop_service.py"]
    assert "def _decode_" in below and "body, _decode_" in below
    assert "def _decode_" not in at and "body, _decode_" not in at and "fast=_decode_" not in at

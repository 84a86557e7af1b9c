"""The generated modules as users get them: real protoc trees (pb2, pyi, grpc, gateway) that import only
what a gateway may depend on, pass ruff and mypy --strict, and run without protoc-gen-pygateway or jinja2.

Trees: each golden case (testdata's shop.proto under the case's options; alltypes: every field shape of
the generated JSON codecs) and an "extras" tree covering what shop.proto does not: several packages
importing each other, googleapis types, proto2, editions, Python keywords as field names, a file without
package and mixed streaming/unary services.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf.compiler import plugin_pb2

from protoc_gen_pygateway.builder import build_services
from protoc_gen_pygateway.descriptors import Registry
from protoc_gen_pygateway.options import parse_options
from protoc_gen_pygateway.plugin import generate
from tests.golden import CASES, OTHER_CASES
from tests.golden import PROTOS as GOLDEN_PROTOS
from tests.protoc_support import PROTOS, code_generator_request, generate_tree

BIN = Path(sys.executable).parent
HTTP = 'import "google/api/annotations.proto";\n'


def rpc(name: str, request: str, response: str, rule: str) -> str:
    option = f"    option (google.api.http) = {{ {rule} }};\n"
    return f"  rpc {name}({request}) returns ({response}) {{\n{option}  }}\n"


EXTRAS = {
    "acme/common/v1/common.proto": (
        'syntax = "proto3";\npackage acme.common.v1;\n'
        "message Money { string currency = 1; int64 units = 2; }\n"
        "enum Level { LEVEL_UNSPECIFIED = 0; LEVEL_HIGH = 1; }\n"
    ),
    "acme/common/v1/sub/detail.proto": (
        'syntax = "proto3";\npackage acme.common.v1.sub;\nmessage Detail { string text = 1; }\n'
    ),
    "acme/shop/v10/shop.proto": (
        'syntax = "proto3";\npackage acme.shop.v10;\n' + HTTP + 'import "acme/common/v1/common.proto";\n'
        'import "acme/common/v1/sub/detail.proto";\n'
        'import "acme/shop/v2/old.proto";\n'
        'import "google/protobuf/empty.proto";\n'
        'import "google/protobuf/timestamp.proto";\n'
        'import "google/type/date.proto";\n'
        'import "zoo.proto";\n'
        "message PriceRequest { string sku = 1; acme.common.v1.Level level = 2; }\n"
        "service PriceService {\n"
        + rpc("GetPrice", "PriceRequest", "acme.common.v1.Money", 'get: "/v10/prices/{sku}/{level}"')
        + rpc(
            "GetDetail",
            "acme.common.v1.sub.Detail",
            "google.protobuf.Empty",
            'post: "/v10/details" body: "*"',
        )
        + rpc("Today", "google.protobuf.Empty", "google.type.Date", 'get: "/v10/today"')
        + rpc("Old", "acme.shop.v2.OldRequest", "google.protobuf.Timestamp", 'get: "/v10/old/{id}"')
        + rpc("Animal", ".Animal", ".Animal", 'put: "/v10/animals/{name}" body: "*"')
        + rpc("Watch", "acme.common.v1.sub.Detail", "stream acme.common.v1.Money", 'get: "/v10/watch"')
        + "}\n"
    ),
    "acme/shop/v2/old.proto": (
        'syntax = "proto3";\npackage acme.shop.v2;\nmessage OldRequest { int64 id = 1; }\n'
    ),
    "zoo.proto": 'syntax = "proto3";\nmessage Animal { string name = 1; }\n',
    "zoo_service.proto": (
        'syntax = "proto3";\n'
        + HTTP
        + 'import "zoo.proto";\n'
        + "service ZooService {\n"
        + rpc("Get", "Animal", "Animal", 'get: "/zoo/{name}"')
        + "}\n"
    ),
    "legacy/v1/legacy.proto": (
        'syntax = "proto2";\npackage legacy.v1;\n' + HTTP + "message Req {\n"
        "  optional string name = 1;\n"
        "  required int32 count = 2;\n"
        "  enum Kind { KIND_A = 0; KIND_B = 1; }\n"
        "  optional Kind kind = 3;\n"
        "  optional group Extra = 4 { optional string note = 5; }\n"
        "}\n"
        "service LegacyService {\n"
        + rpc("Get", "Req", "Req", 'get: "/legacy/{name}/{count}/{kind}"')
        + rpc("Note", "Req", "Req", 'post: "/legacy/notes" body: "extra"')
        + "}\n"
    ),
    "modern/v1/modern.proto": (
        'edition = "2023";\npackage modern.v1;\n' + HTTP + "message Sub { string leaf = 1; }\n"
        "message Req {\n"
        "  string name = 1;\n"
        "  int32 count = 2 [features.field_presence = IMPLICIT];\n"
        "  Sub sub = 3;\n"
        "  enum Kind { option features.enum_type = CLOSED; KIND_A = 1; KIND_B = 2; }\n"
        "  Kind kind = 4;\n"
        "}\n"
        "service ModernService {\n"
        + rpc("Get", "Req", "Req", 'get: "/modern/{name}/{sub.leaf}/{kind}"')
        + rpc("Put", "Req", "Req", 'put: "/modern/{name}" body: "sub" response_body: "sub"')
        + "}\n"
    ),
    "keywords/v1/keywords.proto": (
        'syntax = "proto3";\npackage keywords.v1;\n'
        + HTTP
        + "message Inner { string from = 1; int64 lambda = 2; }\n"
        "message Req { string from = 1; Inner in = 2; Inner class = 3; repeated string import = 4; }\n"
        "service KeywordService {\n"
        + rpc("Get", "Req", "Req", 'get: "/kw/{from}/{in.from}/{in.lambda}"')
        + rpc("Post", "Req", "Req", 'post: "/kw" body: "class" response_body: "import"')
        + "}\n"
    ),
}

TREES = [*sorted(CASES), *sorted(OTHER_CASES), "extras"]


#: tree root -> (proto files, include directory, plugin parameter) it was generated from
SOURCES: dict[Path, tuple[list[str], Path, str]] = {}


@pytest.fixture(scope="module", params=TREES)
def tree(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated tree: pb2 + pyi + pb2_grpc + gateway modules, through the real protoc and plugin."""
    name: str = request.param
    out = tmp_path_factory.mktemp(f"tree_{name}")
    if name == "extras":
        include = tmp_path_factory.mktemp("extras_protos")
        for file, text in EXTRAS.items():
            (include / file).parent.mkdir(parents=True, exist_ok=True)
            (include / file).write_text(text)
        SOURCES[out] = (sorted(EXTRAS), include, "")
    elif name in OTHER_CASES:
        SOURCES[out] = (OTHER_CASES[name][0], PROTOS, OTHER_CASES[name][1])
    else:
        SOURCES[out] = (GOLDEN_PROTOS, PROTOS, CASES[name])
    files, include, parameter = SOURCES[out]
    generate_tree(out, files, parameter, include)
    return out


def gateway_modules(tree: Path) -> list[Path]:
    return sorted(tree.rglob("*_pb2_gateway_*.py"))


def runtime_modules(tree: Path) -> list[Path]:
    return sorted((tree / "pygateway_runtime").rglob("*.py"))


def generated_modules(tree: Path) -> list[Path]:
    return [*gateway_modules(tree), *runtime_modules(tree), tree / "pygateway_serve.py"]


def module_name(tree: Path, path: Path) -> str:
    return ".".join(path.relative_to(tree).with_suffix("").parts)


@pytest.fixture(scope="module")
def tree_request(tree: Path) -> plugin_pb2.CodeGeneratorRequest:
    files, include, parameter = SOURCES[tree]
    return code_generator_request(files, parameter, include)


def test_tree_contents(tree: Path) -> None:
    modules = {module_name(tree, p) for p in gateway_modules(tree)}
    if tree.name.startswith("tree_extras"):
        assert modules == {
            "acme.shop.v10.shop_pb2_gateway_price_service",
            "keywords.v1.keywords_pb2_gateway_keyword_service",
            "legacy.v1.legacy_pb2_gateway_legacy_service",
            "modern.v1.modern_pb2_gateway_modern_service",
            "zoo_service_pb2_gateway_zoo_service",
        }
    elif tree.name.startswith("tree_parity"):
        assert modules == {"parity.v1.parity_pb2_gateway_parity_service"}
    elif tree.name.startswith("tree_alltypes"):
        assert modules == {
            "alltypes.v1.alltypes_pb2_gateway_all_types_service",
            "alltypes.v1.legacy_pb2_gateway_legacy_service",
        }
    else:
        assert modules >= {
            "shop.v1.shop_pb2_gateway_shelf_admin_service",
            "shop.v1.shop_pb2_gateway_shop_service",
        }


def test_protoc_output_equals_in_process_output(
    tree: Path, tree_request: plugin_pb2.CodeGeneratorRequest
) -> None:
    """What protoc writes through the console script is what `generate()` returns in-process."""
    response = generate(tree_request)
    assert not response.error, response.error
    written = {
        p.relative_to(tree).as_posix(): p.read_text("utf-8")
        for p in tree.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and (
            "_gateway_" in p.name
            or p.name.startswith("pygateway_")
            or p.name.endswith(".openapi.json")
            or p.relative_to(tree).parts[0] == "pygateway_runtime"
        )
    }
    assert written == {f.name: f.content for f in response.file}


# ------------------------------------------------------------------------------------------ imports

ALLOWED_THIRD_PARTY = ("grpc", "google")
FORBIDDEN = ("protoc_gen_pygateway", "jinja2", "markupsafe")


#: ASGI servers: only the serve command imports them, and only inside a function (when serving).
SERVERS = ("uvicorn", "granian", "zttp")
#: Optional features' packages: each only in its own runtime module, which nothing imports unless the
#: feature is on (tests/test_observe_tracing.py checks that a gateway without them never loads them).
OPTIONAL = {"prometheus_client": "metrics.py", "opentelemetry": "tracing.py"}

#: Optional dependencies of one runtime subpackage, imported by nothing else: the native gRPC transport's
#: HPACK decoder (pygateway_runtime/native is imported only with `--transport native`).
OPTIONAL_PACKAGES = {"hpack": "native"}


def _enclosing_function(tree_: ast.Module, node: ast.AST) -> bool:
    for parent in ast.walk(tree_):
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and node in list(ast.walk(parent)):
            return True
    return False


def _allowed(name: str, user_modules: set[str]) -> bool:
    top = name.split(".")[0]
    return (
        top in sys.stdlib_module_names
        or top in ALLOWED_THIRD_PARTY
        or name == "pygateway_runtime"
        or name.startswith("pygateway_runtime.")
        or name in user_modules  # `import x_pb2` / `from pkg import x_pb2`
    )


def test_generated_modules_import_only_what_a_gateway_may_use(tree: Path) -> None:
    user_modules = {module_name(tree, p) for p in [*tree.rglob("*_pb2.py"), *tree.rglob("*_pb2_grpc.py")]}
    problems: list[str] = []
    for path in generated_modules(tree):
        module = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(module):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                # Relative imports only inside the runtime package (it is also protoc_gen_pygateway.runtime).
                if node.level and (tree / "pygateway_runtime") not in path.parents:
                    problems.append(f"{path.name}:{node.lineno}: relative import")
                if node.level:
                    continue
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                where = f"{path.relative_to(tree)}:{node.lineno}: import {name}"
                if top in FORBIDDEN:
                    problems.append(f"{where}: generated code must not need {top}")
                elif top in OPTIONAL:
                    if path != tree / "pygateway_runtime" / OPTIONAL[top]:
                        problems.append(f"{where}: {top} only in pygateway_runtime/{OPTIONAL[top]}")
                elif top in SERVERS:
                    serving = {tree / "pygateway_runtime" / name for name in ("serve.py", "servers.py")}
                    if path not in serving or not _enclosing_function(module, node):
                        problems.append(
                            f"{where}: {top} only inside a function of pygateway_runtime/serve.py or "
                            "servers.py"
                        )
                elif top in OPTIONAL_PACKAGES:
                    if (tree / "pygateway_runtime" / OPTIONAL_PACKAGES[top]) not in path.parents:
                        problems.append(
                            f"{where}: {top} only inside pygateway_runtime/{OPTIONAL_PACKAGES[top]}/"
                        )
                elif not _allowed(name, user_modules):
                    problems.append(f"{where}: not stdlib, grpc, google.*, the runtime or a generated _pb2")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------- ruff

RUFF = ["--isolated", "--no-cache", "--select", "E,F,W,B,UP,I,N,SIM", "--ignore", "E501"]
RUFF += ["--target-version", "py310", "--line-length", "120"]


def ruff(tree: Path, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ruff"), "check", *RUFF, *(str(f.relative_to(tree)) for f in files)],
        cwd=tree,  # first-party detection: the tree's own modules (pb2, runtime) are first-party
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_ruff(tree: Path) -> None:
    result = ruff(tree, generated_modules(tree))
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_top_level_module_before_runtime(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    protos.mkdir()
    (protos / "bare.proto").write_text(
        'syntax = "proto3";\n' + HTTP + "message M { string name = 1; }\n"
        'service Bare { rpc Get(M) returns (M) { option (google.api.http) = { get: "/{name}" }; } }\n'
    )
    response = generate(code_generator_request(["bare.proto"], include=protos))
    assert not response.error, response.error
    out = tmp_path / "out"
    for f in response.file:
        (out / f.name).parent.mkdir(parents=True, exist_ok=True)
        (out / f.name).write_text(f.content)
    (out / "bare_pb2.py").write_text("")
    result = ruff(out, [out / "bare_pb2_gateway_bare.py"])
    assert result.returncode == 0, result.stdout


# ---------------------------------------------------------------------------------------------- mypy

MYPY_CONFIG = """\
[mypy]
strict = True
follow_imports = silent
# protoc's own .pyi files fail --strict; without this, follow_imports does not apply to stubs.
follow_imports_for_stubs = True
explicit_package_bases = True
mypy_path = {tree}
cache_dir = {cache}

# googleapis-common-protos ships .pyi files but no py.typed marker.
[mypy-google.type.*]
follow_untyped_imports = True
"""


def test_mypy_strict(tree: Path, tmp_path: Path) -> None:
    config = tmp_path / "mypy.ini"
    config.write_text(MYPY_CONFIG.format(tree=tree, cache=tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config)]
        + [str(p.relative_to(tree)) for p in generated_modules(tree)],
        cwd=tree,
        env={**os.environ, "MYPYPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------- running without plugin

RUNNER = textwrap.dedent(
    """
    import asyncio, importlib, importlib.abc, json, sys

    BLOCKED = ("protoc_gen_pygateway", "jinja2", "uvicorn", "granian")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked import of {name}")
            return None

    sys.meta_path.insert(0, Block())
    tree, modules = sys.argv[1], sys.argv[2:]
    sys.path.insert(0, tree)

    import grpc.aio

    def path_of(route):
        parts = [value if kind == 0 else "1" for kind, value in route.segments]
        return "/" + "/".join(parts) + (":" + route.verb if route.verb else "")

    async def call(app, method, path, body=b""):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 80),
        }
        sent, received = [], [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if received:
                return received.pop(0)
            await asyncio.Event().wait()  # a client that stays connected until the response is complete

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        return sent[0]["status"]

    async def main():
        server = grpc.aio.server()  # no services: every call ends UNIMPLEMENTED
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        runtime = importlib.import_module("pygateway_runtime")
        apps = [importlib.import_module(name).create_app(channel) for name in modules]
        app = runtime.combine(*apps)
        statuses = {"/no/such/route": await call(app, "GET", "/no/such/route")}
        for route in app.routes:
            body = b"{}" if route.method not in ("GET", "HEAD", "DELETE") else b""
            key = f"{route.name} {route.method} {route.template}"
            statuses[key] = await call(app, route.method, path_of(route), body)
        for rpc in app.rpc.values():  # gRPC-Web/Connect paths: Connect unary JSON (or REST's route there)
            if rpc.kind == "unary_unary":
                statuses[f"{rpc.name} POST {rpc.path}"] = await call(app, "POST", rpc.path, b"{}")
        importlib.import_module("pygateway_runtime.serve")  # it imports uvicorn and granian only to serve
        await channel.close()
        await server.stop(None)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(json.dumps({"statuses": statuses, "loaded": loaded}))

    asyncio.run(main())
    """
)


def test_runs_without_the_generator(tree: Path, tree_request: plugin_pb2.CodeGeneratorRequest) -> None:
    modules = [module_name(tree, p) for p in gateway_modules(tree)]
    result = subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, str(tree), *modules],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["loaded"] == []
    statuses: dict[str, int] = report["statuses"]
    assert statuses.pop("/no/such/route") == 404
    assert statuses, "no routes"
    registry = Registry(list(tree_request.proto_file))
    services = build_services(
        registry, list(tree_request.file_to_generate), parse_options(tree_request.parameter)
    )
    streaming = {
        f"{s.full_name}.{m.name}"
        for s in services
        for m in s.methods
        if m.client_streaming or m.server_streaming
    }
    # Every route resolves to its own handler, which reaches the backend (501: UNIMPLEMENTED there) or
    # rejects the placeholder path values with 400; never 404/405 (routing) or 500 (a gateway bug).
    # Streaming routes may answer in their own way, but never with a routing error or a gateway bug.
    bad = {
        route: status
        for route, status in statuses.items()
        if status in (404, 405, 500) or (route.split(" ")[0] not in streaming and status not in (400, 501))
    }
    assert not bad, bad
    unary = [status for route, status in statuses.items() if route.split(" ")[0] not in streaming]
    assert sum(status == 501 for status in unary) >= len(unary) // 2, statuses

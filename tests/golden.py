"""Golden outputs: what the plugin generates for testdata/protos under fixed options.

`python -m tests.golden --update` (or `make golden`) rewrites testdata/golden/; tests/test_golden.py fails
on any difference, so every change to generated code is reviewed as a diff.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tests.protoc_support import ROOT, code_generator_request

GOLDEN = ROOT / "testdata" / "golden"
PROTOS = ["shop/v1/shop.proto", "shop/v1/feed.proto"]

#: case name -> plugin parameter
CASES: dict[str, str] = {
    "default": "",
    "options": (
        "generate_unbound_methods=true,use_proto_names=true,emit_unpopulated=false,enums_as_ints=true,"
        "unknown_query_params=ignore,unknown_body_fields=ignore,forward_header=x-request-id,"
        "strip_header=x-internal-token,forward_permanent_headers=false,max_body_bytes=65536,max_json_depth=32,websocket=false,"
        "openapi=true"
    ),
    # gRPC-Web and Connect only: modules without REST routes (docs/protocols.md)
    "rpc": "protocols=grpcweb+connect",
}
#: case name -> (proto files, plugin parameter) of the cases generated from other protos than PROTOS
OTHER_CASES: dict[str, tuple[list[str], str]] = {
    # every field shape of the generated JSON codecs (tests/test_json_codecs.py)
    "alltypes": (["alltypes/v1/alltypes.proto", "alltypes/v1/legacy.proto"], ""),
    # issue 13: PATCH masks, HttpBody, well-known types in paths, unbound methods + grpc_api_configuration
    # (a path relative to the repository root, where protoc and the tests run)
    "parity": (
        ["parity/v1/parity.proto"],
        "generate_unbound_methods=true,grpc_api_configuration=testdata/apiconfig/parity.yaml,openapi=true",
    ),
}


def all_cases() -> dict[str, tuple[list[str], str]]:
    """Every golden case: name -> (proto files, plugin parameter)."""
    return {**{case: (PROTOS, parameter) for case, parameter in CASES.items()}, **OTHER_CASES}


#: Emitted verbatim from protoc_gen_pygateway/runtime/ (tests/test_runtime_package.py compares each copy
#: with its source), so its changes are reviewed as source diffs and golden cases leave it out.
RUNTIME_PREFIX = "pygateway_runtime/"


def generate_case(parameter: str, protos: list[str] | None = None) -> dict[str, str]:
    """The files a golden case holds: everything generated except the runtime package."""
    import os

    from protoc_gen_pygateway.plugin import generate

    request = code_generator_request(protos or PROTOS, parameter)
    cwd = os.getcwd()
    os.chdir(ROOT)  # grpc_api_configuration paths are relative to the repository root
    try:
        response = generate(request)
    finally:
        os.chdir(cwd)
    if response.error:
        raise SystemExit(f"generation failed: {response.error}")
    return {f.name: f.content for f in response.file if not f.name.startswith(RUNTIME_PREFIX)}


def read_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text("utf-8") for p in sorted(root.rglob("*.py"))}


def update() -> None:
    for case, (protos, parameter) in all_cases().items():
        target = GOLDEN / case
        shutil.rmtree(target, ignore_errors=True)
        for name, content in generate_case(parameter, protos).items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, "utf-8", newline="\n")
        print(f"wrote {target.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--update", action="store_true", help="rewrite testdata/golden")
    args = parser.parse_args(argv)
    if args.update:
        update()
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

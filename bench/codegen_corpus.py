"""Synthetic codegen corpus: FILES files x SERVICES services x METHODS methods, each method with one
`google.api.http` binding plus one additional binding (defaults: 20 x 10 x 10 = 2,000 methods, 4,000
bindings). Every file is valid for both protoc-gen-pygateway and protoc-gen-grpc-gateway (all in one Go
package: v1 wants one per protoc run).

    python -m bench.codegen_corpus OUT_DIR [--files 20 --services 10 --methods 10]

Prints the relative .proto paths written under OUT_DIR (the include root).
"""

from __future__ import annotations

import argparse
from pathlib import Path

_VERBS = ("get", "post", "put", "patch", "delete")


def method_proto(s: int, m: int) -> tuple[str, str]:
    """One rpc and its messages. Bindings cycle through the verbs, path variables, body kinds."""
    name = f"Op{m:02d}"
    verb = _VERBS[m % len(_VERBS)]
    body = ""
    if verb in ("post", "put", "patch"):
        body = '\n      body: "*"' if m % 2 else '\n      body: "item"'
    rule = f'{verb}: "/v1/s{s:02d}/parents/{{parent}}/items/{{id}}:op{m:02d}"{body}'
    extra = f'post: "/v1/s{s:02d}/{{parent=shelves/*}}/items:op{m:02d}"\n        body: "*"'
    rpc = (
        f"  rpc {name}(S{s:02d}{name}Request) returns (S{s:02d}{name}Response) {{\n"
        f"    option (google.api.http) = {{\n      {rule}\n"
        f"      additional_bindings {{\n        {extra}\n      }}\n    }};\n  }}\n"
    )
    messages = (
        f"message S{s:02d}{name}Request {{\n"
        "  string parent = 1;\n  string id = 2;\n  int32 page_size = 3;\n  string filter = 4;\n"
        "  repeated string tags = 5;\n  Item item = 6;\n}\n"
        f"message S{s:02d}{name}Response {{\n  repeated Item items = 1;\n  string next_page_token = 2;\n}}\n"
    )
    return rpc, messages


def file_proto(f: int, services: int, methods: int) -> str:
    parts = [
        'syntax = "proto3";\n',
        f"package corpus.f{f:02d}.v1;\n",
        'import "google/api/annotations.proto";\n',
        'option go_package = "corpus/corpuspb;corpuspb";\n',
        "message Item {\n  string name = 1;\n  int64 size = 2;\n  map<string, string> labels = 3;\n}\n",
    ]
    for s in range(services):
        rpcs, messages = zip(*(method_proto(s, m) for m in range(methods)), strict=True)
        parts.append(f"service Service{s:02d} {{\n{''.join(rpcs)}}}\n")
        parts.extend(messages)
    return "\n".join(parts)


def write_corpus(out: Path, files: int = 20, services: int = 10, methods: int = 10) -> list[str]:
    """Write the corpus under `out`; returns the .proto paths relative to it."""
    paths = []
    for f in range(files):
        rel = f"corpus/f{f:02d}/v1/f{f:02d}.proto"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(file_proto(f, services, methods))
        paths.append(rel)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--methods", type=int, default=10)
    a = ap.parse_args()
    print("\n".join(write_corpus(a.out, a.files, a.services, a.methods)))


if __name__ == "__main__":
    main()

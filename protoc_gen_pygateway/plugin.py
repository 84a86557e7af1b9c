"""The protoc plugin entry: CodeGeneratorRequest on stdin -> CodeGeneratorResponse on stdout.

`generate()` is pure and in-process, so tests drive it without protoc. No Python traceback ever reaches
protoc: problems in the input become CodeGeneratorResponse.error.
"""

from __future__ import annotations

import os
import sys

from google.api import annotations_pb2  # registers google.api.http so MethodOptions parse it
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from . import __version__
from .apiconfig import ApiConfigError
from .builder import GenerationError, build_services
from .descriptors import Registry
from .header_policy import check_options
from .options import OptionsError, parse_options
from .render import environment, render_service, render_support

_ = annotations_pb2
Response = plugin_pb2.CodeGeneratorResponse

MINIMUM_EDITION = descriptor_pb2.EDITION_PROTO2
MAXIMUM_EDITION = descriptor_pb2.EDITION_2023


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    response = Response(
        supported_features=Response.FEATURE_PROTO3_OPTIONAL | Response.FEATURE_SUPPORTS_EDITIONS,
        minimum_edition=MINIMUM_EDITION,
        maximum_edition=MAXIMUM_EDITION,
    )
    try:
        options = parse_options(request.parameter)
        check_options(options)
        registry = Registry(list(request.proto_file))
        services = build_services(registry, list(request.file_to_generate), options)
        env = environment()
        files = {service.output_file: render_service(env, service) for service in services}
        if services and options.emit_runtime:
            files.update(render_support())
        if options.openapi:
            from .openapi import render_documents  # imported only when asked for: ~30 ms of startup

            files.update(render_documents(registry, services, options))
    except (OptionsError, GenerationError, ApiConfigError) as err:
        response.error = f"protoc-gen-pygateway: {err}"
        return response
    except Exception as err:  # a bug of ours: still a clear message, never a traceback on protoc's stderr
        response.error = f"protoc-gen-pygateway {__version__}: internal error: {type(err).__name__}: {err}"
        return response
    for name in sorted(files):
        response.file.add(name=name, content=files[name])
    return response


USAGE = """\
usage: protoc-gen-pygateway [--version | --include-path | --help]

Run by protoc (or buf) as a plugin: protoc -I PROTOS -I "$(protoc-gen-pygateway --include-path)" \\
    --python_out=gen --pygateway_out=gen PROTOS/pkg/v1/file.proto   (the output directory must exist)

  --version       print the version
  --include-path  print protoc's -I for google/api/annotations.proto and http.proto (googleapis-common-
                  protos) and the protobuf well-known types: DIR1:DIR2, the google/api files are in DIR1
"""


def include_path() -> str:
    """protoc's include path for what the protos of a gateway import: the directory holding
    `google/api/annotations.proto` and `http.proto` (googleapis-common-protos ships them beside their _pb2
    modules), then the protobuf well-known types (grpcio-tools ships them; Debian's protoc has them only
    with libprotobuf-dev), joined with os.pathsep as protoc's `-I` accepts them."""
    from .protoc import include_paths

    return os.pathsep.join(include_paths())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        if args == ["--version"]:
            print(f"protoc-gen-pygateway {__version__}")
            return 0
        if args == ["--include-path"]:
            print(include_path())
            return 0
        if args in (["--help"], ["-h"]):
            print(USAGE, end="")
            return 0
        print(USAGE, end="", file=sys.stderr)
        return 2
    data = sys.stdin.buffer.read()
    try:
        request = plugin_pb2.CodeGeneratorRequest.FromString(data)
    except Exception as err:
        print(f"protoc-gen-pygateway: cannot parse the CodeGeneratorRequest on stdin: {err}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(generate(request).SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())

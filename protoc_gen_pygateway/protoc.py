"""`python -m protoc_gen_pygateway.protoc <protoc args>`: protoc with the include paths users need.

Adds the directories holding `google/api/*.proto` (shipped by googleapis-common-protos) and the protobuf
well-known types (shipped by grpcio-tools), and wires this plugin, so `--pygateway_out` works without
copying any .proto file or putting the plugin on PATH.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import tempfile
from pathlib import Path


def include_paths() -> list[str]:
    """Include directories for google/api/*.proto and google/protobuf/*.proto, in that order."""
    import google.api.annotations_pb2 as annotations_pb2  # the .proto files sit beside the _pb2 modules
    import grpc_tools

    googleapis_root = Path(annotations_pb2.__file__).resolve().parent.parent.parent
    wkt_root = Path(grpc_tools.__file__).resolve().parent / "_proto"
    return [str(googleapis_root), str(wkt_root)]


def plugin_path() -> str:
    """The protoc-gen-pygateway executable beside this interpreter, else a launcher for this interpreter."""
    script = Path(sys.executable).parent / ("protoc-gen-pygateway" + (".exe" if os.name == "nt" else ""))
    if script.exists():
        return str(script)
    # Running from a source tree without the console script: a launcher that runs the plugin with this
    # very interpreter (a `#!/usr/bin/env python3` shim could pick one without protobuf).
    # One per user and interpreter (two venvs must not run each other's), replaced atomically so a
    # concurrent protoc never executes a half-written file.
    interpreter = hashlib.sha256(sys.executable.encode()).hexdigest()[:12]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    launcher = Path(tempfile.gettempdir()) / f"protoc-gen-pygateway-{uid}-{interpreter}.sh"
    partial = launcher.with_name(f"{launcher.name}.{os.getpid()}")
    partial.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m protoc_gen_pygateway.plugin "$@"\n')
    partial.chmod(0o755)
    os.replace(partial, launcher)
    return str(launcher)


def build_argv(args: list[str]) -> list[str]:
    """The full protoc argv: user args first (their -I win), then ours."""
    argv = ["grpc_tools.protoc", *args]
    argv += [f"-I{path}" for path in include_paths()]
    if not any(arg.startswith("--plugin=protoc-gen-pygateway") for arg in args):
        argv.append(f"--plugin=protoc-gen-pygateway={plugin_path()}")
    return argv


def main(args: list[str] | None = None) -> int:
    from grpc_tools import protoc

    code: int = protoc.main(build_argv(sys.argv[1:] if args is None else args))
    return code


if __name__ == "__main__":
    sys.exit(main())

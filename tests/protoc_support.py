"""Helpers to run protoc (grpc_tools) for tests: descriptor sets, CodeGeneratorRequests, generated trees."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from protoc_gen_pygateway.protoc import include_paths

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "testdata" / "protos"


def protoc(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m protoc_gen_pygateway.protoc ARGS` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "protoc_gen_pygateway.protoc", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def descriptor_set(files: list[str], include: Path = PROTOS) -> descriptor_pb2.FileDescriptorSet:
    """The FileDescriptorSet (with imports and source info) protoc builds for `files`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        result = protoc([f"-I{include}", "--include_imports", "--include_source_info", f"-o{out}", *files])
        if result.returncode != 0:
            raise RuntimeError(f"protoc failed: {result.stderr}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def code_generator_request(
    files: list[str], parameter: str = "", include: Path = PROTOS
) -> plugin_pb2.CodeGeneratorRequest:
    """What protoc would send the plugin for `files` (dependencies first, as protoc orders them)."""
    fds = descriptor_set(files, include)
    request = plugin_pb2.CodeGeneratorRequest(parameter=parameter, file_to_generate=files)
    request.proto_file.extend(fds.file)
    return request


def generate_tree(out: Path, files: list[str], parameter: str = "", include: Path = PROTOS) -> None:
    """pb2, pyi, pb2_grpc and gateway modules for `files` into `out`, through the real protoc + plugin."""
    out.mkdir(parents=True, exist_ok=True)
    opt = [f"--pygateway_opt={parameter}"] if parameter else []
    result = protoc(
        [
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"--pygateway_out={out}",
            *opt,
            *files,
        ]
    )
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed: {result.stderr}")


__all__ = [
    "PROTOS",
    "ROOT",
    "code_generator_request",
    "descriptor_set",
    "generate_tree",
    "include_paths",
    "protoc",
]

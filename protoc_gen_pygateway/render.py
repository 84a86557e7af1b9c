"""Render the view model with Jinja: StrictUndefined, output fixed by the model alone (compiled templates are
cached between runs, see _TemplateCache, which never changes the output)."""

from __future__ import annotations

import contextlib
import keyword
import os
from importlib import resources

import jinja2
import jinja2.bccache

from . import __version__
from .httprule import CompiledTemplate
from .model import Binding, FieldRef, Method, PathParam, Service
from .options import Options
from .pyliteral import pyrepr

RUNTIME_FILE = "pygateway_runtime.py"
SERVE_FILE = "pygateway_serve.py"


def _loader() -> jinja2.BaseLoader:
    return jinja2.FunctionLoader(
        lambda name: resources.files("protoc_gen_pygateway.templates").joinpath(name).read_text("utf-8")
    )


_pyrepr = pyrepr


def _pytuple(items: tuple[object, ...]) -> str:
    inner = ", ".join(_pytuple(i) if isinstance(i, tuple) else _pyrepr(i) for i in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def _captures(template: CompiledTemplate) -> str:
    return _pytuple(tuple((c.start, c.stop, c.multi) for c in template.captures))


def _attribute_chain(fields: tuple[FieldRef, ...]) -> str:
    expr = "payload"
    for f in fields:
        expr = f'getattr({expr}, "{f.name}")' if keyword.iskeyword(f.name) else f"{expr}.{f.name}"
    return expr


def _path_assignment(param: PathParam) -> str:
    """`payload.a.b = _rt.parse_x(_rt.path_value(captures[i], multi), "a.b")` for one path variable."""
    value = f"_rt.path_value(request.captures[{param.capture}], {param.multi})"
    if param.kind == "string":
        converted = value
    elif param.kind == "enum":
        assert param.enum is not None
        converted = f'_rt.parse_enum({value}, {param.enum.expr}.DESCRIPTOR, "{param.dotted}")'
    else:
        converted = f'_rt.parse_{param.kind}({value}, "{param.dotted}")'
    parent, leaf = _attribute_chain(param.fields[:-1]), param.fields[-1].name
    if keyword.iskeyword(leaf):
        return f'    setattr({parent}, "{leaf}", {converted})'
    return f"    {parent}.{leaf} = {converted}"


def _json_key(field: FieldRef, options: Options) -> str:
    return field.name if options.use_proto_names else field.json_name


def _encoder(binding: Binding, level: str, options: Options) -> str:
    """The expression turning a reply into JSON bytes (`level="bytes"`) or JSON data (`"data"`)."""
    field = binding.response_body
    if level == "bytes":
        whole, part = "_JSON.encode", "_JSON.encode_field"
    else:
        whole, part = "_JSON.data", "_JSON.field_data"
    if field is None:
        return whole
    if field.kind == "message" and not field.repeated:
        access = f'getattr(reply, "{field.name}")' if keyword.iskeyword(field.name) else f"reply.{field.name}"
        return f"lambda reply: {whole}({access})"
    return f"lambda reply: {part}(reply, {_pyrepr(_json_key(field, options))})"


def _reply(binding: Binding, method: Method, service: Service, level: str) -> str:
    """The generated reply codec of a binding (see codecs.py): JSON bytes or data, as `_encoder`."""
    codec = service.codecs.reply(method.name, binding.index)
    if codec is None:  # a model built without codecs
        return _encoder(binding, level, service.options)
    return codec.bytes if level == "bytes" else codec.data


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs (about 70 ms of a ~90 ms generation is compiling them). Jinja's
    default directory is a private per-user temporary folder; keys hold the template source's checksum and
    the Python version, so a stale entry is never used. Output never depends on it, and any I/O problem
    just means compiling again. PYGATEWAY_TEMPLATE_CACHE=off turns it off (hermetic build sandboxes)."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    if os.environ.get("PYGATEWAY_TEMPLATE_CACHE", "").lower() in ("off", "0", "false", "no"):
        return None
    try:
        return _TemplateCache(pattern=f"protoc-gen-pygateway-{__version__}-%s.cache")
    except (OSError, RuntimeError):  # no usable temporary directory
        return None


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_loader(),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(
        pyrepr=_pyrepr,
        pytuple=_pytuple,
        captures=_captures,
        path_assignment=_path_assignment,
        json_key=_json_key,
        encoder=_encoder,
        reply=_reply,
    )
    return env


def header(source: str, options: Options | None) -> str:
    """The first lines of every generated file; support files do not depend on the options."""
    lines = [f"# Code generated by protoc-gen-pygateway {__version__}. DO NOT EDIT.", f"# source: {source}"]
    if options is not None:
        lines.append(f"# parameters: {options.canonical() or '(defaults)'}")
    return "\n".join(lines)


def render_service(env: jinja2.Environment, service: Service) -> str:
    return env.get_template("service.py.jinja").render(
        s=service, header=header(service.proto_file, service.options)
    )


def render_support(env: jinja2.Environment) -> dict[str, str]:
    """The shared run-time modules emitted at the output root (identical for every input and option)."""
    return {
        RUNTIME_FILE: env.get_template("runtime.py.jinja").render(
            header=header("(shared run-time support)", None)
        ),
        SERVE_FILE: env.get_template("serve.py.jinja").render(header=header("(serve command)", None)),
    }

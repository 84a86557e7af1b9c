"""Render the view model with Jinja: StrictUndefined, output fixed by the model alone (compiled templates are
cached between runs, see _TemplateCache, which never changes the output)."""

from __future__ import annotations

import contextlib
import keyword
import os
from importlib import resources
from typing import TYPE_CHECKING

import jinja2
import jinja2.bccache

from . import __version__
from .httprule import CompiledTemplate, SegmentKind
from .model import Binding, FieldRef, Method, PathParam, Service
from .options import Options
from .pyliteral import pyrepr

if TYPE_CHECKING:
    from importlib.abc import Traversable

#: The runtime package's name in the output tree (generated modules `import pygateway_runtime as _rt`).
RUNTIME_PACKAGE = "pygateway_runtime"
#: The serve command's entry script at the output root (`python pygateway_serve.py ...`).
SERVE_FILE = "pygateway_serve.py"
_SERVE_SCRIPT = '''"""The serve command, pygateway_runtime/serve.py: `python pygateway_serve.py --help`."""

import sys

from pygateway_runtime.serve import main

if __name__ == "__main__":
    sys.exit(main())
'''


def _loader() -> jinja2.BaseLoader:
    return jinja2.FunctionLoader(
        lambda name: resources.files("protoc_gen_pygateway.templates").joinpath(name).read_text("utf-8")
    )


def _pytuple(items: tuple[object, ...]) -> str:
    inner = ", ".join(_pytuple(i) if isinstance(i, tuple) else pyrepr(i) for i in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def _captures(template: CompiledTemplate) -> str:
    """`(_rt.Capture(start=1, stop=5, multi=True),)`: the path variables' segment ranges, by name."""
    items = [f"_rt.Capture(start={c.start}, stop={c.stop}, multi={c.multi})" for c in template.captures]
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


_WILDCARD = {SegmentKind.SINGLE: "*", SegmentKind.MULTI: "**"}


def _segments(template: CompiledTemplate) -> str:
    """`_rt.segments("v1", "shelves", "*")`: the template's segments as written (literals and wildcards)."""
    texts = (_WILDCARD.get(s.kind, s.value) for s in template.segments)
    return f"_rt.segments({', '.join(pyrepr(t) for t in texts)})"


def _rank_words(template: CompiledTemplate) -> str:
    """The precedence key `rank` in words, for reviewers of the route table (smaller keys match first)."""
    kinds = " ".join(_WILDCARD.get(s.kind, "literal") for s in template.segments)
    return f"precedence: {'verb' if template.verb is not None else 'no verb'}; {kinds or '(root)'}; end"


def _attribute_chain(fields: tuple[FieldRef, ...]) -> str:
    expr = "payload"
    for f in fields:
        expr = f'getattr({expr}, "{f.name}")' if keyword.iskeyword(f.name) else f"{expr}.{f.name}"
    return expr


def _path_assignment(param: PathParam) -> str:
    """`payload.a.b = _rt.parse_x(_rt.path_value(captures[i], multi), "a.b")` for one path variable."""
    value = f"_rt.path_value(request.captures[{param.capture}], {param.multi})"
    if param.wkt:  # a message field: filled in place from its JSON string form (as in the query)
        return f'    _rt.set_path_message({_attribute_chain(param.fields)}, {value}, "{param.dotted}")'
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


def _field_expr(field: FieldRef) -> str:
    """`payload.<field>` for a top-level field of the request (getattr for Python keywords)."""
    return _attribute_chain((field,))


def _reply_body(binding: Binding) -> str:
    """The HttpBody of a reply: the reply itself, or its response_body field."""
    if binding.response_body is None:
        return "reply"
    return _attribute_chain((binding.response_body,)).replace("payload", "reply", 1)


def _reply(binding: Binding, method: Method, service: Service, level: str) -> str:
    """The expression a handler passes the runtime to turn replies into JSON bytes (`level="bytes"`) or
    JSON data (`"data"`): the binding's generated reply codec (codecs.py)."""
    codec = service.codecs.reply(method.name, binding.index)
    if codec is None:
        raise ValueError(f"no reply codec for {method.name} binding {binding.index}")  # a builder bug
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
        pyrepr=pyrepr,
        pytuple=_pytuple,
        captures=_captures,
        segments=_segments,
        rank_words=_rank_words,
        path_assignment=_path_assignment,
        reply=_reply,
        field_expr=_field_expr,
        reply_body=_reply_body,
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
        s=service, header=header(service.proto_file, service.options), version=__version__
    )


def runtime_sources() -> dict[str, str]:
    """Every module of the runtime package (`protoc_gen_pygateway/runtime/`, recursively), by its path
    inside the package ("app.py", "native/channel.py", ...): what is emitted comes from the package itself."""
    sources: dict[str, str] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                if entry.name != "__pycache__":
                    walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".py"):
                sources[prefix + entry.name] = entry.read_text("utf-8")

    walk(resources.files("protoc_gen_pygateway.runtime"), "")
    return sources


def render_support() -> dict[str, str]:
    """The shared files emitted at the output root, identical for every input and option: the runtime
    package verbatim below the generated-code header, and the serve command's entry script."""
    files = {
        f"{RUNTIME_PACKAGE}/{path}": f"{header(f'protoc_gen_pygateway/runtime/{path}', None)}\n{text}"
        for path, text in runtime_sources().items()
    }
    files[SERVE_FILE] = f"{header('(serve command)', None)}\n{_SERVE_SCRIPT}"
    return files

"""The frozen view model handed to the templates.

Everything a template prints is computed here: import lines, Python expressions for field access, route
tables, header literals. Templates only loop and substitute. The same model is what a later OpenAPI
emitter reads, so the gateway and its description cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .header_policy import HeaderPolicy
from .httprule import CompiledTemplate
from .options import Options


@dataclass(frozen=True)
class TypeRef:
    """A generated Python class: `alias.Path` where `alias` imports `module`."""

    full_name: str
    module: str
    alias: str
    path: str

    @property
    def expr(self) -> str:
        return f"{self.alias}.{self.path}"


@dataclass(frozen=True)
class FieldRef:
    """One proto field on the way to a bound value."""

    name: str
    json_name: str
    kind: str  # scalar kind ("int64", "enum", ...) or "message"
    repeated: bool
    is_map: bool
    message_type: str  # full name for message fields, "" otherwise


@dataclass(frozen=True)
class PathParam:
    capture: int  # index into the route's captured values
    fields: tuple[FieldRef, ...]  # from the request message down to the scalar leaf
    kind: str  # scalar kind of the leaf
    enum: TypeRef | None  # the leaf's enum class, for kind == "enum"
    multi: bool  # spans several segments: reserved characters stay percent-encoded
    #: full name of the leaf's well-known type (Timestamp, Duration, FieldMask, a wrapper), else ""
    wkt: str = ""

    @property
    def dotted(self) -> str:
        return ".".join(f.name for f in self.fields)


@dataclass(frozen=True)
class Body:
    kind: str  # "none", "all" (`*`), or "field"
    field: FieldRef | None = None


@dataclass(frozen=True)
class Binding:
    index: int  # 0 for the main rule, 1.. for additional_bindings
    http_method: str
    template: CompiledTemplate
    body: Body
    response_body: FieldRef | None
    path_params: tuple[PathParam, ...]
    #: Dotted proto field paths already bound by path or body: not settable from the query.
    query_bound: tuple[str, ...]
    #: True when the body is `*`: every field not in the path comes from the body, none from the query.
    query_closed: bool
    #: allow_patch_feature: the request's FieldMask field filled from the body's members when the request
    #: left it empty (PATCH with one message body field and exactly one FieldMask field), else None.
    patch_mask: FieldRef | None = None
    #: google.api.HttpBody request: the raw body (any content type) fills the HttpBody (`*` on an HttpBody
    #: request, or a body field of that type); no JSON parsing.
    http_body_request: bool = False
    #: google.api.HttpBody reply (the reply, or its response_body field): `data` is the raw response body,
    #: `content_type` its Content-Type.
    http_body_response: bool = False
    #: Where the rule was written, for messages: "" (the annotation) or "FILE:LINE" (grpc_api_configuration).
    origin: str = ""

    @property
    def http_body(self) -> bool:
        """Raw bytes in either direction: such bindings have no WebSocket route."""
        return self.http_body_request or self.http_body_response


@dataclass(frozen=True)
class Method:
    name: str
    grpc_path: str  # "/pkg.Service/Method"
    input: TypeRef
    output: TypeRef
    client_streaming: bool
    server_streaming: bool
    bindings: tuple[Binding, ...]
    snake_name: str
    #: `option idempotency_level = NO_SIDE_EFFECTS`: Connect also serves it as an HTTP GET.
    no_side_effects: bool = False

    @property
    def streaming(self) -> bool:
        return self.client_streaming or self.server_streaming

    @property
    def kind(self) -> str:
        """grpc multicallable kind: unary_unary, unary_stream, stream_unary or stream_stream."""
        request = "stream" if self.client_streaming else "unary"
        return f"{request}_{'stream' if self.server_streaming else 'unary'}"


@dataclass(frozen=True)
class Import:
    module: str
    alias: str

    @property
    def line(self) -> str:
        package, _, name = self.module.rpartition(".")
        if package:
            line = f"from {package} import {name} as {self.alias}"
            if package == "google.api":  # googleapis-common-protos ships no type information
                line += "  # type: ignore[import-untyped,unused-ignore]"
            return line
        return f"import {name} as {self.alias}"

    @property
    def sort_key(self) -> tuple[object, ...]:
        """isort's (ruff's default) order: `import x` before `from p import x`, then by module, then by
        member (CamelCase before lowercase), case-insensitively and with numbers in natural order."""
        package, _, name = self.module.rpartition(".")
        return (
            bool(package),
            _natural(package.lower()),
            _natural(package),
            not name[:1].isupper(),
            _natural(name.lower()),
            _natural(name),
            _natural(self.alias),
        )


def _natural(text: str) -> tuple[str | int, ...]:
    """`v10` after `v2`: digit runs compare as numbers."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"([0-9]+)", text)))


@dataclass(frozen=True)
class EnumTable:
    """A module-level table built at import from an enum's descriptor: `_rt.<factory>(<enum>.DESCRIPTOR)`."""

    name: str
    enum: TypeRef
    factory: str  # "enum_names" (number -> JSON name, for encoders) or "fast_enum" (JSON -> number)


@dataclass(frozen=True)
class CodecFunction:
    """One generated function of the JSON section: `def <signature>:` with a docstring and body lines
    (relative indentation included, one level below the `def`)."""

    name: str
    signature: str
    doc: str
    body: tuple[str, ...]


@dataclass(frozen=True)
class ReplyCodec:
    """What a binding's handler passes the runtime to turn replies into JSON: an expression for JSON data
    (streams, WebSocket) and one for JSON bytes (unary replies)."""

    method: str
    index: int
    data: str
    bytes: str


@dataclass(frozen=True)
class JsonCodecs:
    """The generated JSON section of a service module (see codecs.py): encoders of every message a reply
    contains, fast-path decoders of every message a request body can hold, and their reply functions."""

    enum_tables: tuple[EnumTable, ...] = ()
    functions: tuple[CodecFunction, ...] = ()
    replies: tuple[ReplyCodec, ...] = ()
    #: proto full name of a request message -> its decoder function (messages that have one).
    decoders: tuple[tuple[str, str], ...] = ()

    def reply(self, method: str, index: int) -> ReplyCodec | None:
        return next((r for r in self.replies if r.method == method and r.index == index), None)

    def decoder(self, full_name: str) -> str | None:
        return next((name for full, name in self.decoders if full == full_name), None)


@dataclass(frozen=True)
class Service:
    name: str
    full_name: str
    proto_file: str
    output_file: str
    methods: tuple[Method, ...]
    imports: tuple[Import, ...]
    policy: HeaderPolicy
    options: Options
    version: str
    parameters: str
    #: Generated JSON encoders/decoders; empty when nothing is specialised (e.g. only well-known types).
    codecs: JsonCodecs = JsonCodecs()

    @property
    def library_imports(self) -> tuple[Import, ...]:
        """protobuf's well-known types and googleapis-common-protos types (`google.*`): third-party
        imports, after grpc in the same block."""
        return tuple(
            sorted((i for i in self.imports if i.module.startswith("google.")), key=lambda i: i.sort_key)
        )

    @property
    def local_imports(self) -> tuple[Import, ...]:
        """The runtime module and the user's _pb2 modules: the first-party block, sorted together."""
        local = [i for i in self.imports if not i.module.startswith("google.")]
        local.append(Import("pygateway_runtime", "_rt"))
        return tuple(sorted(local, key=lambda i: i.sort_key))

    @property
    def served_methods(self) -> tuple[Method, ...]:
        """Methods with HTTP handlers: every bound method, unary and streaming."""
        return self.methods

    @property
    def websocket_routes(self) -> bool:
        """Whether the module has WebSocket routes (streaming methods, unless turned off)."""
        return self.options.websocket and any(m.streaming and not b.http_body for m, b in self.bindings)

    @property
    def bindings(self) -> tuple[tuple[Method, Binding], ...]:
        """(method, binding) of every served REST route, in declaration order (none without `rest`)."""
        if "rest" not in self.options.protocols:
            return ()
        return tuple((m, b) for m in self.served_methods for b in m.bindings)

    @property
    def grpcweb(self) -> bool:
        return "grpcweb" in self.options.protocols

    @property
    def connect(self) -> bool:
        return "connect" in self.options.protocols

    @property
    def rpc_methods(self) -> tuple[Method, ...]:
        """Methods served at `POST /pkg.Service/Method` by gRPC-Web and/or Connect: every method the
        module exposes (the same set as REST: bound methods, and unbound ones only with
        generate_unbound_methods), none when both protocols are off."""
        return self.served_methods if (self.grpcweb or self.connect) else ()

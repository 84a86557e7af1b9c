"""Build the view model from descriptors and google.api.http rules, validating every binding.

Every problem becomes a GenerationError naming proto file, service, method and the offending text; the
plugin entry turns it into CodeGeneratorResponse.error.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool

from . import __version__
from .apiconfig import ApiConfigError, ExternalRule, RuleSource, load_rules
from .codecs import CodecBuilder, build_pool
from .descriptors import SCALAR_KINDS, FieldInfo, Registry, module_alias, python_module
from .header_policy import build_policy
from .httprule import CompiledTemplate, TemplateError, compile_template, parse
from .model import Binding, Body, FieldRef, Import, Method, PathParam, Service, TypeRef
from .options import Options

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_NO_BODY_METHODS = ("GET", "HEAD")


class GenerationError(Exception):
    """A problem in the user's protos or options, reported through CodeGeneratorResponse.error."""

    def __init__(self, proto_file: str, where: str, message: str) -> None:
        super().__init__(f"{proto_file}: {where}: {message}" if where else f"{proto_file}: {message}")


def snake_case(name: str) -> str:
    """`GetBook` -> `get_book`, `HTTPProxy` -> `http_proxy`."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def output_file_name(proto_file: str, service: str) -> str:
    """`shop/v1/shop.proto` + `ShopService` -> `shop/v1/shop_pb2_gateway_shop_service.py` (beside _pb2.py)."""
    return python_module(proto_file).replace(".", "/") + f"_gateway_{snake_case(service)}.py"


FIELD_MASK = "google.protobuf.FieldMask"
HTTP_BODY = "google.api.HttpBody"
#: Message types a path variable may bind: read from their JSON string form, as in the query.
PATH_WELL_KNOWN_TYPES = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        FIELD_MASK,
        *(
            f"google.protobuf.{n}Value"
            for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
        ),
    }
)
#: key of an HttpRule part ("pattern", "body", "response_body") -> the `where` text naming it
_Locate = Callable[[str], str]


def _annotation_locator(where: str) -> _Locate:
    return lambda key: "" if key == "origin" else where


def _yaml_locator(where: str, source: RuleSource) -> _Locate:
    def locate(key: str) -> str:
        if key == "origin":
            return f" (grpc_api_configuration {source.where('pattern')})"
        return f"{where}, grpc_api_configuration {source.where(key)}"

    return locate


class _ServiceBuilder:
    def __init__(
        self,
        registry: Registry,
        file: descriptor_pb2.FileDescriptorProto,
        options: Options,
        pool: Callable[[], descriptor_pool.DescriptorPool] | None = None,
        external: dict[str, list[ExternalRule]] | None = None,
    ) -> None:
        self.external = external or {}
        self.registry = registry
        self.file = file
        self.options = options
        self.imports: dict[str, Import] = {}
        self.pool = pool or (lambda: build_pool(registry))

    def type_ref(self, full_name: str, *, enum: bool = False) -> TypeRef:
        info = self.registry.enum(full_name) if enum else self.registry.message(full_name)
        module = python_module(info.proto_file)
        alias = module_alias(module)
        self.imports[module] = Import(module, alias)
        return TypeRef(info.full_name, module, alias, info.python_path)

    def build(self, service: descriptor_pb2.ServiceDescriptorProto) -> Service | None:
        full_name = f"{self.file.package}.{service.name}" if self.file.package else service.name
        methods: list[Method] = []
        seen: dict[tuple[object, ...], tuple[str, str]] = {}
        for method in service.method:
            where = f"service {service.name}, method {method.name}"
            built = self.method(full_name, method, where)
            if built is None:
                continue
            for binding in built.bindings:
                key = (binding.http_method, binding.template.shape())
                if key in seen:
                    other_method, other_source = seen[key]
                    raise GenerationError(
                        self.file.name,
                        where,
                        f"route {binding.http_method} {binding.template.source}{binding.origin} conflicts "
                        f"with {binding.http_method} {other_source} of method {other_method}",
                    )
                seen[key] = (method.name, binding.template.source + binding.origin)
            twin = next((m.name for m in methods if m.snake_name == built.snake_name), None)
            if twin is not None:  # the handlers would share one Python name: one would call the other's RPC
                raise GenerationError(
                    self.file.name,
                    where,
                    f"method names {twin} and {method.name} both become the Python name {built.snake_name!r}",
                )
            methods.append(built)
        if not methods:
            return None
        codec_builder = CodecBuilder(
            self.pool(),
            self.registry,
            self.options,
            self.type_ref,
            lambda name: self.type_ref(name, enum=True),
        )
        codecs = codec_builder.build(methods)
        built_service = Service(
            name=service.name,
            full_name=full_name,
            proto_file=self.file.name,
            output_file=output_file_name(self.file.name, service.name),
            methods=tuple(methods),
            imports=tuple(sorted(self.imports.values(), key=lambda i: i.module)),
            policy=build_policy(self.options),
            options=self.options,
            version=__version__,
            parameters=self.options.canonical(),
            codecs=codecs,
        )
        served = built_service.served_methods
        if not served:  # a module without a single route helps nobody (and its class would be empty)
            return None
        # Only what the served handlers use: a type seen only by an unserved method would be an unused import.
        used = {ref.module for m in served for ref in (m.input, m.output)}
        used.update(p.enum.module for m in served for b in m.bindings for p in b.path_params if p.enum)
        used.update(codec_builder.modules)
        return dataclasses.replace(
            built_service, imports=tuple(i for i in built_service.imports if i.module in used)
        )

    def method(
        self, service_full: str, method: descriptor_pb2.MethodDescriptorProto, where: str
    ) -> Method | None:
        # grpc-gateway v2's order (internal/descriptor/services.go): the grpc_api_configuration rules of
        # the method in file order, then its google.api.http annotation; each rule followed by its
        # additional_bindings. Only a method with neither gets the unbound default.
        rules: list[tuple[http_pb2.HttpRule, _Locate]] = []
        for external in self.external.get(f"{service_full}.{method.name}", ()):
            rules.append((external.rule, _yaml_locator(where, external.source)))
            for source, extra in zip(external.additional, external.rule.additional_bindings, strict=True):
                rules.append((extra, _yaml_locator(where, source)))
        if method.options.HasExtension(annotations_pb2.http):
            rule = method.options.Extensions[annotations_pb2.http]
            rules.append((rule, _annotation_locator(f"{where}, http rule")))
            for i, extra in enumerate(rule.additional_bindings):
                label = f"{where}, additional_bindings[{i}]"
                if extra.additional_bindings:
                    raise GenerationError(self.file.name, label, "has nested additional_bindings")
                rules.append((extra, _annotation_locator(label)))
        if not rules and self.options.generate_unbound_methods:
            unbound = http_pb2.HttpRule(post=f"/{service_full}/{method.name}", body="*")
            rules.append((unbound, _annotation_locator(f"{where}, unbound method")))
        if not rules:
            return None
        input_ref = self.type_ref(method.input_type)
        output_ref = self.type_ref(method.output_type)
        m = Method(
            name=method.name,
            grpc_path=f"/{service_full}/{method.name}",
            input=input_ref,
            output=output_ref,
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
            bindings=(),
            snake_name=snake_case(method.name),
            no_side_effects=method.options.idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
        )
        bindings = tuple(
            self.binding(m, method, index, rule, locate) for index, (rule, locate) in enumerate(rules)
        )
        return Method(**{**m.__dict__, "bindings": bindings})

    def binding(
        self,
        m: Method,
        method: descriptor_pb2.MethodDescriptorProto,
        index: int,
        rule: http_pb2.HttpRule,
        locate: _Locate,
    ) -> Binding:
        where = locate("pattern")
        pattern_kind = rule.WhichOneof("pattern")
        if pattern_kind is None:
            raise GenerationError(self.file.name, where, "no HTTP method and path (get, put, post, ...) set")
        if pattern_kind == "custom":
            http_method, text = rule.custom.kind, rule.custom.path
            if not _TOKEN.fullmatch(http_method):
                raise GenerationError(
                    self.file.name, where, f"custom kind {http_method!r} is not an HTTP method"
                )
            if http_method == "*":  # http.proto's "any method": the runtime matches methods exactly
                raise GenerationError(
                    self.file.name,
                    where,
                    "custom kind '*' (any HTTP method) is not supported; name the method",
                )
        else:
            http_method, text = pattern_kind.upper(), getattr(rule, pattern_kind)
        try:
            template = compile_template(parse(text))
        except TemplateError as err:
            raise GenerationError(self.file.name, where, str(err)) from None
        request = self.registry.message(method.input_type)
        path_params = tuple(
            self.path_param(request.full_name, template, i, where) for i in range(len(template.captures))
        )
        if path_params and m.client_streaming:
            raise GenerationError(
                self.file.name, where, f"path parameters in {text!r} on a client-streaming method"
            )
        body = self.body(rule.body, request.full_name, http_method, locate("body"), m.client_streaming)
        response_body = self.response_body(rule.response_body, method.output_type, locate("response_body"))
        bound = [p.dotted for p in path_params]
        if body.field is not None:
            bound.append(body.field.name)
        http_body_request = (body.kind == "all" and request.full_name == HTTP_BODY) or (
            body.field is not None and body.field.message_type == HTTP_BODY and not body.field.repeated
        )
        if response_body is None:
            http_body_response = method.output_type.lstrip(".") == HTTP_BODY
        else:
            http_body_response = response_body.message_type == HTTP_BODY and not response_body.repeated
        if http_body_response and m.client_streaming:
            raise GenerationError(
                self.file.name,
                locate("response_body" if response_body else "pattern"),
                "google.api.HttpBody replies are supported on unary and server-streaming methods only",
            )
        return Binding(
            index=index,
            http_method=http_method,
            template=template,
            body=body,
            response_body=response_body,
            path_params=path_params,
            query_bound=tuple(sorted(set(bound))),
            query_closed=body.kind == "all",
            patch_mask=self.patch_mask(http_method, body, request.full_name),
            origin=locate("origin"),
            http_body_request=http_body_request,
            http_body_response=http_body_response,
        )

    def patch_mask(self, http_method: str, body: Body, request: str) -> FieldRef | None:
        """grpc-gateway's allow_patch_feature: the request's one FieldMask field, for a PATCH binding whose
        body is one (singular) message field; None where the mask is not filled from the body."""
        if not self.options.allow_patch_feature or http_method != "PATCH" or body.field is None:
            return None
        if body.field.kind != "message" or body.field.repeated or body.field.is_map:
            return None
        masks = [
            f for f in self.registry.message(request).fields if f.type_name == FIELD_MASK and not f.repeated
        ]
        repeated = any(
            f.type_name == FIELD_MASK and f.repeated for f in self.registry.message(request).fields
        )
        if len(masks) != 1 or repeated:  # grpc-gateway: exactly one field of type FieldMask
            return None
        return self.field_ref(masks[0])

    def field_ref(self, info: FieldInfo) -> FieldRef:
        kind = "message" if info.is_message else SCALAR_KINDS[info.type]
        return FieldRef(
            info.name,
            info.json_name,
            kind,
            info.repeated,
            info.is_map,
            info.type_name if info.is_message else "",
        )

    def path_param(self, request: str, template: CompiledTemplate, index: int, where: str) -> PathParam:
        capture = template.captures[index]
        dotted = ".".join(capture.field_path)
        message = self.registry.message(request)
        refs: list[FieldRef] = []
        info: FieldInfo | None = None
        for depth, name in enumerate(capture.field_path):
            info = message.field(name)
            if info is None:
                raise GenerationError(
                    self.file.name,
                    where,
                    f"path variable {{{dotted}}} in {template.source!r}: "
                    f"no field {name!r} in {message.full_name}",
                )
            refs.append(self.field_ref(info))
            last = depth == len(capture.field_path) - 1
            if not last:
                if not info.is_message or info.repeated:
                    raise GenerationError(
                        self.file.name,
                        where,
                        f"path variable {{{dotted}}} in {template.source!r}: "
                        f"{name!r} is not a singular message field",
                    )
                message = self.registry.message(info.type_name)
        assert info is not None
        wkt = info.type_name if info.is_message and info.type_name in PATH_WELL_KNOWN_TYPES else ""
        if (info.is_message and not wkt) or info.repeated:
            what = "a repeated field" if info.repeated else f"message-typed ({info.type_name})"
            raise GenerationError(
                self.file.name,
                where,
                f"path variable {{{dotted}}} in {template.source!r} is {what}; it must be a scalar, an "
                "enum, or one of " + ", ".join(sorted(PATH_WELL_KNOWN_TYPES)),
            )
        enum = self.type_ref(info.type_name, enum=True) if refs[-1].kind == "enum" else None
        return PathParam(index, tuple(refs), refs[-1].kind, enum, capture.multi, wkt)

    def body(self, body: str, request: str, http_method: str, where: str, client_streaming: bool) -> Body:
        if not body:
            if client_streaming:
                raise GenerationError(
                    self.file.name, where, "a client-streaming method needs a body (`*` or a field)"
                )
            return Body("none")
        if http_method in _NO_BODY_METHODS:
            raise GenerationError(
                self.file.name, where, f"body {body!r} on {http_method}: {http_method} has no body"
            )
        if http_method == "DELETE" and not self.options.allow_delete_body:
            raise GenerationError(
                self.file.name, where, f"body {body!r} on DELETE: set allow_delete_body=true to allow it"
            )
        if body == "*":
            return Body("all")
        info = self.registry.message(request).field(body)
        if info is None:
            raise GenerationError(
                self.file.name,
                where,
                f"body field {body!r} does not exist in {request} (it must be a top-level field)",
            )
        if client_streaming and (info.repeated or not info.is_message):
            raise GenerationError(
                self.file.name,
                where,
                f"body field {body!r}: a client-streaming body must be a singular message field",
            )
        self.check_json_name("body", info, where)
        return Body("field", self.field_ref(info))

    def response_body(self, name: str, response: str, where: str) -> FieldRef | None:
        if not name:
            return None
        info = self.registry.message(response).field(name)
        if info is None:
            raise GenerationError(
                self.file.name,
                where,
                f"response_body field {name!r} does not exist in {response.lstrip('.')} "
                "(it must be a top-level field)",
            )
        self.check_json_name("response_body", info, where)
        return self.field_ref(info)

    def check_json_name(self, what: str, info: FieldInfo, where: str) -> None:
        """The templates write a body field's json_name (settable to any text) as a "..." literal."""
        name = info.json_name
        if not name.isprintable() or '"' in name or "\\" in name:
            raise GenerationError(
                self.file.name,
                where,
                f"{what} field {info.name!r}: json_name {name!r} cannot be written into the generated code",
            )


def build_services(registry: Registry, files_to_generate: list[str], options: Options) -> list[Service]:
    services: list[Service] = []
    pool = functools.cache(lambda: build_pool(registry))  # built once, and only when a service needs it
    external = external_rules(registry, options)
    for name in files_to_generate:
        file = registry.files[name]
        outputs: dict[str, str] = {}
        for service in file.service:
            built = _ServiceBuilder(registry, file, options, pool, external).build(service)
            if built is None:
                continue
            if built.output_file in outputs:
                raise GenerationError(
                    file.name,
                    f"service {service.name}",
                    f"output file {built.output_file} collides with service {outputs[built.output_file]}",
                )
            outputs[built.output_file] = service.name
            services.append(built)
    return services


def external_rules(registry: Registry, options: Options) -> dict[str, list[ExternalRule]]:
    """The grpc_api_configuration rules by method full name; a selector naming no method of the request
    (any of its files, generated or not, as grpc-gateway's registry sees them) is an error."""
    if not options.grpc_api_configuration:
        return {}
    methods = {
        f"{file.package + '.' if file.package else ''}{service.name}.{method.name}"
        for file in registry.files.values()
        for service in file.service
        for method in service.method
    }
    by_method: dict[str, list[ExternalRule]] = {}
    for rule in load_rules(options.grpc_api_configuration):
        if rule.selector not in methods:
            raise ApiConfigError(
                f"grpc_api_configuration {rule.source.where('selector')}: selector {rule.selector!r} "
                "matches no method of the protos given to protoc"
            )
        by_method.setdefault(rule.selector, []).append(rule)
    return by_method

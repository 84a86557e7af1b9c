"""Plugin options: `--pygateway_opt=key=value,...`, parsed strictly into a frozen dataclass.

An unknown key, a malformed pair or a bad value is an error naming it: a typo in a CI codegen step must
fail the build, not silently generate a different gateway.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # RFC 9110 token


class OptionsError(ValueError):
    """A bad `--pygateway_opt` value."""


@dataclass(frozen=True)
class Options:
    """Everything that changes the generated code. Field docs are the user-facing option docs."""

    #: Give methods without google.api.http a `POST /pkg.Service/Method` route with body `*`.
    generate_unbound_methods: bool = False
    #: A google.api.Service YAML file whose `http.rules` bind methods (grpc-gateway's option of the same
    #: name; see docs/grpc-gateway-parity.md). Read from protoc's working directory.
    grpc_api_configuration: str = ""
    #: PATCH bindings whose body is one message field and whose request has exactly one FieldMask field
    #: fill that mask from the JSON body's members when the request left it empty (grpc-gateway's option).
    allow_patch_feature: bool = True
    #: Allow `body` on DELETE bindings (http.proto discourages it; grpc-gateway gates it the same way).
    allow_delete_body: bool = False
    #: protojson output: proto field names instead of lowerCamelCase JSON names.
    use_proto_names: bool = False
    #: protojson output: emit fields that hold their default value (grpc-gateway v2's default).
    emit_unpopulated: bool = True
    #: protojson output: enums as numbers instead of names.
    enums_as_ints: bool = False
    #: Query parameters naming no field (or a field bound by path/body): "reject" (400) or "ignore".
    unknown_query_params: str = "reject"
    #: JSON body members naming no field: "reject" (400) or "ignore".
    unknown_body_fields: str = "reject"
    #: Forward the IANA permanent request headers as `grpcgateway-<name>` metadata (grpc-gateway's rule).
    forward_permanent_headers: bool = True
    #: Extra request headers forwarded as metadata under their own (lowercased) name. Repeatable.
    forward_header: tuple[str, ...] = ()
    #: Extra header names never forwarded and never written to a response (on top of the hop-by-hop set).
    #: Repeatable.
    strip_header: tuple[str, ...] = ()
    #: Serve streaming methods over WebSocket too (on their own paths; never for unary methods).
    websocket: bool = True
    #: Default largest request body accepted, in bytes (413 above it); the app factory can override it.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Deepest nesting of JSON objects and arrays accepted in a request body (400 above it), checked
    #: before the body is parsed.
    max_json_depth: int = 64
    #: Emit the shared run-time support module (`pygateway_runtime.py`) at the output root. Turn off
    #: when another invocation into the same output tree already emits it (e.g. buf per-directory runs).
    emit_runtime: bool = True
    #: Also emit an OpenAPI 3.1 document per proto file with served services, `<proto path without
    #: .proto>.openapi.json` beside the modules (the modules themselves do not change).
    openapi: bool = False
    #: Protocols every generated module serves, `+`-separated (or the key repeated): `rest` (the
    #: google.api.http routes), `grpcweb` and `connect` (both at `POST /pkg.Service/Method` of every
    #: method the module exposes). Default: all three.
    protocols: tuple[str, ...] = ("rest", "grpcweb", "connect")

    def canonical(self) -> str:
        """The non-default options as `k=v,...` in field order (list items sorted), for the header."""
        parts: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.name == "protocols":
                parts.append(f"protocols={'+'.join(value)}")
            elif isinstance(value, tuple):
                parts.extend(f"{f.name}={item}" for item in value)
            elif isinstance(value, bool):
                parts.append(f"{f.name}={'true' if value else 'false'}")
            else:
                parts.append(f"{f.name}={value}")
        return ",".join(parts)


#: The values of `protocols`, in their canonical order.
PROTOCOLS: tuple[str, ...] = ("rest", "grpcweb", "connect")

_CHOICES: dict[str, tuple[str, ...]] = {
    "unknown_query_params": ("reject", "ignore"),
    "unknown_body_fields": ("reject", "ignore"),
}


#: Options taking any non-empty text (a file path).
_FREE_TEXT = frozenset({"grpc_api_configuration"})


def _parse_bool(key: str, value: str) -> bool:
    if value in ("true", ""):  # a bare `key` means true
        return True
    if value == "false":
        return False
    raise OptionsError(f"option {key}: expected true or false, got {value!r}")


def parse_options(parameter: str) -> Options:
    """Parse protoc's parameter string (`k=v,k2=v2`) into Options; raise OptionsError naming the problem."""
    known = {f.name: f for f in dataclasses.fields(Options)}
    values: dict[str, object] = {}
    lists: dict[str, list[str]] = {}
    for raw in parameter.split(","):
        item = raw.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        key, value = key.strip(), value.strip()
        spec = known.get(key)
        if spec is None:
            raise OptionsError(f"unknown option {key!r} (known: {', '.join(sorted(known))})")
        default = spec.default
        if key == "protocols":
            for name in value.split("+"):
                if name.strip() not in PROTOCOLS:
                    raise OptionsError(
                        f"option protocols: unknown protocol {name.strip()!r} (known: {', '.join(PROTOCOLS)};"
                        " separate several with '+', e.g. protocols=rest+connect)"
                    )
                lists.setdefault(key, []).append(name.strip())
            continue
        if isinstance(default, tuple):
            if not _HEADER_NAME.fullmatch(value):
                raise OptionsError(f"option {key}: {value!r} is not a valid HTTP header name")
            lists.setdefault(key, []).append(value.lower())
            continue
        if key in values:
            raise OptionsError(f"option {key} given more than once")
        if isinstance(default, bool):
            values[key] = _parse_bool(key, value)
        elif isinstance(default, int):
            if not re.fullmatch(r"[0-9]+", value) or int(value) <= 0:
                raise OptionsError(f"option {key}: expected a positive integer, got {value!r}")
            values[key] = int(value)
        elif key in _FREE_TEXT:
            if not value:
                raise OptionsError(f"option {key}: expected a value")
            values[key] = value
        else:
            choices = _CHOICES.get(key, ())
            if value not in choices:
                raise OptionsError(f"option {key}: expected one of {', '.join(choices)}, got {value!r}")
            values[key] = value
    for key, items in lists.items():
        if key == "protocols":
            values[key] = tuple(name for name in PROTOCOLS if name in items)
        else:
            values[key] = tuple(sorted(set(items)))
    options = dataclasses.replace(Options(), **values)  # type: ignore[arg-type]
    if options.openapi and "rest" not in options.protocols:
        raise OptionsError(
            "option openapi: the OpenAPI documents describe the REST routes, and protocols omits rest"
        )
    return options


__all__ = ["PROTOCOLS", "Options", "OptionsError", "parse_options"]

"""Request headers -> gRPC metadata and metadata -> response headers, under the generated policy."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import (
    Iterable,
)
from typing import TYPE_CHECKING

from .errors import bad_request

if TYPE_CHECKING:
    from .asgi import Metadata
    from .options import HeaderPolicy
    from .request import Request


#: RFC 9110 §7.6.1 hop-by-hop headers, HTTP2-Settings and Content-Length (framing the server computes):
#: never sent by a hook nor allowed by CORS, whatever the configuration.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "http2-settings",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: A metadata key gRPC accepts; `-bin` alone is no binary key (gRPC needs a name before the suffix).
_VALID_KEY = re.compile(r"^(?!-bin$)[0-9a-z._-]+$")


_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


_CONTROL = re.compile(rb"[\r\n\0]")


_TIMEOUT = re.compile(r"^([0-9]{1,8})([HMSmun])$")


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(value: str) -> float:
    """`Grpc-Timeout: <1-8 digits><H|M|S|m|u|n>` -> seconds (the gRPC over HTTP/2 spec's format)."""
    match = _TIMEOUT.match(value)
    if match is None:
        raise bad_request(
            f"invalid Grpc-Timeout {value!r}: expected 1-8 digits and a unit of H, M, S, m, u, n"
        )
    return int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)]


def _metadata_value(key: str, value: bytes, header: str) -> str | bytes | None:
    """The metadata value of a header: `-bin` keys base64-decoded (invalid base64 is a 400, as in
    grpc-gateway); text values that gRPC cannot carry (not printable ASCII) are dropped, as grpc-gateway
    drops them."""
    if key.endswith("-bin"):
        data = value.strip().replace(b"-", b"+").replace(b"_", b"/")
        try:  # padded or unpadded, standard or URL-safe alphabet (grpc-gateway accepts all four)
            return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"invalid binary header {header}: the value is not base64") from None
    text = value.decode("latin-1")
    return text if _PRINTABLE.match(text) else None


def request_metadata(request: Request, policy: HeaderPolicy) -> tuple[Metadata, float | None]:
    """gRPC metadata and deadline from the request headers, under the module's header policy."""
    headers = request.scope["headers"]
    named: set[str] = set()  # headers the request's Connection header makes hop-by-hop (RFC 9110 §7.6.1)
    for name, value in headers:
        if name == b"connection":
            named.update(t.strip().lower() for t in value.decode("latin-1").split(","))
    plan = policy.plan
    metadata: Metadata = []
    timeout = request.gateway.options.default_timeout
    forwarded_for: list[str] = []  # every X-Forwarded-For line, in order (each may list several hops)
    forwarded_host: str | None = None
    host: str | None = None
    for raw_name, raw_value in headers:
        if _CONTROL.search(raw_value):
            # RFC 9110 §5.5: never valid in a field value. HTTP/1.1 servers refuse these themselves; this
            # covers servers and HTTP/2 stacks that pass them on.
            raise bad_request(f"header {raw_name.decode('latin-1').lower()} contains CR, LF or NUL")
        action = plan.get(raw_name)
        if action is None and not raw_name.islower():  # ASGI servers lowercase names; in case one did not
            raw_name = raw_name.lower()
            action = plan.get(raw_name)
        if named and raw_name.decode("latin-1") in named:
            continue
        if action is None:
            if not raw_name.startswith(b"grpc-metadata-"):
                continue  # not forwarded
            key = raw_name[14:].decode("latin-1")
            if policy.blocked(key) or key in named or not _VALID_KEY.match(key):
                continue
        elif not action:  # forbidden
            continue
        elif action[0] != "<":
            key = action
        elif action == "<grpc-timeout>":
            timeout = parse_timeout(raw_value.decode("latin-1"))
            continue
        elif action == "<x-forwarded-for>":
            text = raw_value.decode("latin-1").strip()
            if text and _PRINTABLE.match(text):  # an unusable client value is dropped, never the peer
                forwarded_for.append(text)
            continue
        elif action == "<x-request-id>":
            if request.request_id is not None:
                continue  # the validated (or generated) request id goes instead, once (below)
            key = "x-request-id"
        elif action == "<x-forwarded-host>":
            text = raw_value.decode("latin-1").strip()
            if text and _PRINTABLE.match(text):  # else Host stands in
                forwarded_host = text
            continue
        else:  # host: the X-Forwarded-Host stand-in, and metadata when the policy forwards it
            host = raw_value.decode("latin-1")
            mapped = policy.forwarded.get("host")
            if mapped is None:
                continue
            key = mapped
        value = _metadata_value(key, raw_value, raw_name.decode("latin-1"))
        if value is not None:
            metadata.append((key, value))
    client = request.scope.get("client")
    peer = str(client[0]) if client else None
    if peer and _PRINTABLE.match(peer):
        forwarded_for.append(peer)
    # The gateway's own hop: a request naming these headers in Connection loses its values, not the peer.
    for key, text in (
        ("x-forwarded-for", ", ".join(forwarded_for)),
        ("x-forwarded-host", forwarded_host or host),
    ):
        if text and _PRINTABLE.match(text) and key not in policy.forbidden:
            metadata.append((key, text))
    if request.request_id is not None:
        if "x-request-id" in policy.forwarded:
            metadata.append(("x-request-id", request.request_id))
        elif "x-request-id" in policy.forbidden:  # strip_header=x-request-id: never in a response either
            request.request_id = None
    return metadata, timeout


def response_metadata_headers(
    policy: HeaderPolicy,
    initial: Iterable[tuple[str, str | bytes]],
    trailing: Iterable[tuple[str, str | bytes]],
) -> list[tuple[bytes, bytes]]:
    """`Grpc-Metadata-<key>` for header metadata, `Grpc-Trailer-<key>` for trailers; never a blocked key."""
    headers: list[tuple[bytes, bytes]] = []
    for prefix, pairs in ((b"grpc-metadata-", initial), (b"grpc-trailer-", trailing)):
        for key, value in pairs:
            if policy.blocked(key) or not _VALID_KEY.match(key):
                continue
            if isinstance(value, bytes):
                value = base64.b64encode(value).decode("ascii")
            elif not _PRINTABLE.match(value):
                continue
            headers.append((prefix + key.encode("latin-1"), value.encode("latin-1")))
    return headers


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)

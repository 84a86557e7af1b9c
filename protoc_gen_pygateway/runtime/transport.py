"""The gRPC transport a gateway's channel uses: "grpcio" (grpc.aio) or "native" (`native.NativeChannel`,
gRPC over HTTP/2 on the event loop itself; needs the `hpack` package).

`open_channel()` builds either from the same grpc channel options, in the running event loop (both
belong to the loop that creates them). The default comes from `$PYGATEWAY_TRANSPORT`, else "native" when
`hpack` is installed (the serve extra installs it), else "grpcio": `make bench` measured native 44% (POST)
and 50% (GET) cheaper per request than grpcio and 86% per streamed message (docs/native-transport.md).
"""

from __future__ import annotations

import importlib.util
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from .native.interface import Channel

TRANSPORTS = ("grpcio", "native")

#: The environment variable naming the default transport (the serve command's --transport default).
TRANSPORT_ENV = "PYGATEWAY_TRANSPORT"


def native_available() -> bool:
    """Whether the native transport can run here: it needs the `hpack` package."""
    return importlib.util.find_spec("hpack") is not None


def default_transport() -> str:
    """$PYGATEWAY_TRANSPORT when set, else "native" when `hpack` is installed, else "grpcio"."""
    value = os.environ.get(TRANSPORT_ENV, "") or ("native" if native_available() else "grpcio")
    if value not in TRANSPORTS:
        raise ValueError(f"${TRANSPORT_ENV}={value!r}: expected one of {', '.join(TRANSPORTS)}")
    return value


def open_channel(
    target: str,
    transport: str | None = None,
    *,
    tls: bool = False,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> Channel:
    """A channel to `target` over `transport` (None: `default_transport()`); `tls` with `ca` (a PEM file of
    roots; None: the system's) and, for mutual TLS, the client's `cert` and `key` (PEM files)."""
    transport = transport or default_transport()
    if transport == "native":
        if not native_available():
            raise RuntimeError(
                "the native gRPC transport needs the hpack package: pip install hpack "
                "(or choose transport='grpcio')"
            )
        from .native import NativeChannel

        context = ssl.create_default_context(cafile=ca) if tls else None
        if context is not None and cert is not None:
            context.load_cert_chain(cert, key)
        return NativeChannel(target, ssl_context=context, options=options)
    if transport != "grpcio":
        raise ValueError(f"unknown transport {transport!r}: expected one of {', '.join(TRANSPORTS)}")
    if not tls:
        return grpc.aio.insecure_channel(target, options=options)  # type: ignore[return-value]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes() if ca else None,
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
    return grpc.aio.secure_channel(target, credentials, options=options)  # type: ignore[return-value]

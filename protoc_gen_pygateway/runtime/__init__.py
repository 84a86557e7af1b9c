"""Run-time support shared by the gateway modules generated into this tree.

Imports only the standard library, grpcio, protobuf and googleapis-common-protos. Generated modules hold
everything decided at generation time (routes, field bindings, header policy literals); this package holds
the request-independent machinery they call, one job per module:

- `app`: the ASGI app (`Gateway`), its one routing loop, `combine()`; `routing`: `Route`, the matcher;
- `request`: the HTTP exchange (bounded body reading, media types, responses); `errors`: status mapping
  and the google.rpc.Status body; `metadata`: headers <-> gRPC metadata under the generated policy;
- `unary`, `streams` (NDJSON, SSE, client streams), `websocket`: the calls; `lifecycle`: graceful shutdown;
- `httpbody`: google.api.HttpBody raw bodies (unary, raw server streams); `fieldmask`: PATCH masks filled
  from the body (allow_patch_feature);
- `rpc`: gRPC-Web and Connect at `POST /pkg.Service/Method`; `rpcrelay`: their calls relayed;
  `rpcwire`: their metadata and framing;
  `grpcweb`, `connect`: the wire formats;
- `jsonstyle`, `jsonfast`, `values`, `query`: JSON bodies, the generated codecs' helpers, path and query
  values; `options`: `GatewayOptions` and `HeaderPolicy`;
- `serve`: the serve command (`python -m pygateway_runtime.serve`, or `pygateway_serve.py` beside this
  package), imported only by it.

Generated modules `import pygateway_runtime as _rt` and use the names below.
"""

from __future__ import annotations

from .app import Gateway, combine
from .asgi import Event, Handler, Metadata, Receive, Scope, Send
from .channels import ChannelSource, LazyChannel, upstream_channel
from .client_streams import client_stream_call
from .cors import CorsPolicy
from .errors import (
    HTTP_STATUS,
    ClientDisconnectedError,
    HttpError,
    bad_request,
    error_body,
)
from .fieldmask import body_field_mask
from .health import HealthOptions
from .hooks import (
    ErrorHook,
    ErrorReply,
    ForwardResponse,
    ForwardResponseHook,
    IncomingMetadataHook,
    OutgoingMatcher,
)
from .httpbody import (
    check_raw_body,
    fill_http_body,
    http_body_call,
    http_body_stream_call,
)
from .jsonfast import (
    FastDecoder,
    enum_names,
    fast_bool,
    fast_double,
    fast_enum,
    fast_float,
    fast_int32,
    fast_int64,
    fast_key_bool,
    fast_key_int32,
    fast_key_int64,
    fast_key_uint32,
    fast_key_uint64,
    fast_list,
    fast_map,
    fast_string,
    fast_uint32,
    fast_uint64,
    json_bytes,
    json_double,
    json_float,
    negative_zero,
)
from .jsonstyle import JsonStyle, dump_json
from .metadata import parse_timeout, request_metadata, response_metadata_headers
from .native.interface import Channel
from .options import GatewayOptions, HeaderPolicy
from .query import NOTHING_BOUND, apply_query, set_path_message
from .request import Request, check_body_type
from .routing import LITERAL, MULTI, SINGLE, Capture, Route, segments
from .rpc import RpcMethod
from .rpcwire import EXPOSE_HEADERS, expose_headers
from .streams import server_stream_call
from .transport import TRANSPORTS, default_transport, open_channel
from .unary import unary_call
from .values import (
    MAX_URL_VALUE_BYTES,
    parse_bool,
    parse_bytes,
    parse_double,
    parse_enum,
    parse_float,
    parse_int32,
    parse_int64,
    parse_string,
    parse_uint32,
    parse_uint64,
    path_value,
)
from .version import __version__
from .websocket import websocket_call

__all__ = [
    "EXPOSE_HEADERS",
    "HTTP_STATUS",
    "LITERAL",
    "MAX_URL_VALUE_BYTES",
    "MULTI",
    "NOTHING_BOUND",
    "SINGLE",
    "TRANSPORTS",
    "Capture",
    "Channel",
    "ChannelSource",
    "ClientDisconnectedError",
    "CorsPolicy",
    "ErrorHook",
    "ErrorReply",
    "Event",
    "FastDecoder",
    "ForwardResponse",
    "ForwardResponseHook",
    "Gateway",
    "GatewayOptions",
    "Handler",
    "HeaderPolicy",
    "HealthOptions",
    "HttpError",
    "IncomingMetadataHook",
    "JsonStyle",
    "LazyChannel",
    "Metadata",
    "OutgoingMatcher",
    "Receive",
    "Request",
    "Route",
    "RpcMethod",
    "Scope",
    "Send",
    "__version__",
    "apply_query",
    "bad_request",
    "body_field_mask",
    "check_body_type",
    "check_raw_body",
    "client_stream_call",
    "combine",
    "default_transport",
    "dump_json",
    "enum_names",
    "error_body",
    "expose_headers",
    "fast_bool",
    "fast_double",
    "fast_enum",
    "fast_float",
    "fast_int32",
    "fast_int64",
    "fast_key_bool",
    "fast_key_int32",
    "fast_key_int64",
    "fast_key_uint32",
    "fast_key_uint64",
    "fast_list",
    "fast_map",
    "fast_string",
    "fast_uint32",
    "fast_uint64",
    "fill_http_body",
    "http_body_call",
    "http_body_stream_call",
    "json_bytes",
    "json_double",
    "json_float",
    "negative_zero",
    "open_channel",
    "parse_bool",
    "parse_bytes",
    "parse_double",
    "parse_enum",
    "parse_float",
    "parse_int32",
    "parse_int64",
    "parse_string",
    "parse_timeout",
    "parse_uint32",
    "parse_uint64",
    "path_value",
    "request_metadata",
    "response_metadata_headers",
    "segments",
    "server_stream_call",
    "set_path_message",
    "unary_call",
    "upstream_channel",
    "websocket_call",
]

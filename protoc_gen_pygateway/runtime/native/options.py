"""The grpc channel options the native transport understands (`_Options`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: grpc-go servers answer pings more often than every 5 minutes (with no data sent in between) with
#: GOAWAY too_many_pings (their default EnforcementPolicy.MinTime): the native client never pings more
#: often, and only while calls are open (PermitWithoutStream defaults to false there).
KEEPALIVE_FLOOR = 300.0


class _Options:
    """The grpc channel options the native transport understands (others are ignored)."""

    def __init__(self, options: Sequence[tuple[str, Any]]) -> None:
        o = dict(options)
        self.max_receive = int(o.get("grpc.max_receive_message_length", 4 * 1024 * 1024))
        self.max_send = int(o.get("grpc.max_send_message_length", -1))
        # Keepalive pings at most every KEEPALIVE_FLOOR seconds; <= 0 turns them off.
        keepalive = int(o.get("grpc.keepalive_time_ms", 300_000)) / 1000
        self.keepalive = max(keepalive, KEEPALIVE_FLOOR) if keepalive > 0 else 0.0
        self.keepalive_timeout = int(o.get("grpc.keepalive_timeout_ms", 20_000)) / 1000
        self.initial_backoff = int(o.get("grpc.initial_reconnect_backoff_ms", 1000)) / 1000
        self.max_backoff = int(o.get("grpc.max_reconnect_backoff_ms", 120_000)) / 1000
        self.connect_timeout = int(o.get("grpc.min_reconnect_backoff_ms", 20_000)) / 1000
        self.authority = o.get("grpc.default_authority")
        self.server_name = o.get("grpc.ssl_target_name_override")
        self.dns_refresh = float(o.get("pygateway.native.dns_refresh_s", 30.0))
        self.stream_window = int(o.get("pygateway.native.stream_window", 1 << 20))
        self.connection_window = int(o.get("pygateway.native.connection_window", 16 << 20))
        self.max_header_list = int(o.get("grpc.max_metadata_size", 16384))
        self.write_buffer = int(o.get("pygateway.native.write_buffer", 256 * 1024))

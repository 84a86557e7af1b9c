"""Research prototypes (issue 16 §2): uvicorn HTTP protocols that hand a request to the WebSocket protocol
only when it is a real handshake (GET with a Sec-WebSocket-Key); `Upgrade: websocket` without a key stays
plain HTTP. Import strings for uvicorn's `http=` setting."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.auto_zttp_impl import AutoZttpProtocol
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.zttp_impl import ZttpProtocol


def _is_handshake(scope: dict[str, Any]) -> bool:
    if scope["method"] != "GET":
        return False
    return any(name == b"sec-websocket-key" for name, _ in scope["headers"])


class KeylessH11(H11Protocol):
    def _should_upgrade(self) -> bool:
        upgrade = self._get_upgrade()
        return upgrade == b"websocket" and self.ws_protocol_class is not None and _is_handshake(self.scope)


class KeylessZttp(ZttpProtocol):
    def _should_upgrade(self) -> bool:
        upgrade = self.conn.upgrade()
        return (
            upgrade is not None
            and upgrade.lower() == b"websocket"
            and self.ws_protocol_class is not None
            and _is_handshake(self.scope)
        )


class KeylessAutoZttp(AutoZttpProtocol):
    """Prior-knowledge h2c by preface sniffing, else KeylessZttp."""

    def _switch(self, http2: bool, initial_data: bytes = b"") -> None:
        if http2:
            super()._switch(http2, initial_data)
            return
        protocol = KeylessZttp(
            config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop
        )
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if initial_data:
            protocol.data_received(initial_data)

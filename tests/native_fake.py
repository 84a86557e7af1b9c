"""A scriptable fake gRPC server for the native transport's fault tests: a real asyncio TCP server on a
loopback port whose connections are handled by test code, either on raw bytes or through the `h2`
library (an independent HTTP/2 implementation, so framing mistakes of ours show up as h2 errors)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


def grpc_message(body: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BL", flag, len(body)) + body


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">HBBBL", n >> 8, n & 0xFF, kind, flags, stream_id) + payload


SERVER_SETTINGS = raw_frame(4, 0, 0)  # an empty SETTINGS frame: a valid server preface


class FakeServer:
    """`async with FakeServer(handler) as server:` -> `server.port`; `server.connections` counts them."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.port = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self.handler(reader, writer, index)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client left, or the test ended (a cancelled handler would be logged by asyncio)
        except Exception as err:  # recorded: a test asserts the fake server itself did not fail
            self.errors.append(err)
        finally:
            self.tasks.discard(task)
            writer.close()


class H2Peer:
    """The server side of one connection through `h2`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, **settings: int) -> None:
        self.reader = reader
        self.writer = writer
        config = h2.config.H2Configuration(client_side=False, header_encoding="latin-1")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(
                {getattr(h2.settings.SettingCodes, k.upper()): v for k, v in settings.items()}
            )
        self.bodies: dict[int, bytearray] = {}
        self.headers: dict[int, list[tuple[str, str]]] = {}
        self.ended: set[int] = set()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def next_events(self) -> list[Any]:
        self.flush()
        await self.writer.drain()
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionError("client closed")
        events = self.conn.receive_data(data)
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self.headers[ev.stream_id] = list(ev.headers)
                self.bodies[ev.stream_id] = bytearray()
            elif isinstance(ev, h2.events.DataReceived):
                self.bodies.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
        self.flush()
        return events

    async def wait_request(self, count: int = 1) -> list[int]:
        """Until `count` requests have ended (client half-closed); returns their stream ids."""
        while len(self.ended) < count:
            await self.next_events()
        return sorted(self.ended)[:count]

    def respond(
        self,
        stream_id: int,
        messages: list[bytes] = (),  # type: ignore[assignment]
        status: int = 0,
        message: str = "",
        headers: list[tuple[str, str]] | None = None,
        trailers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.conn.send_headers(
            stream_id, [(":status", "200"), ("content-type", "application/grpc"), *(headers or [])]
        )
        for body in messages:
            self.conn.send_data(stream_id, grpc_message(body))
        end = [
            ("grpc-status", str(status)),
            *([("grpc-message", message)] if message else []),
            *(trailers or []),
        ]
        self.conn.send_headers(stream_id, end, end_stream=True)
        self.flush()

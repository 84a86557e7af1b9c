"""Example grpc.aio backend for shop.v1: an in-memory bookshop plus a call recorder for tests.

`start_backend()` serves ShopService, ShelfAdminService and the streaming FeedService (demo/feed_backend.py).
Needs the generated stubs of both protos importable as `shop.v1` (the caller puts their directory on
`sys.path`)::

    python -m protoc_gen_pygateway.protoc -Itestdata/protos --python_out=gen --grpc_python_out=gen \
        testdata/protos/shop/v1/shop.proto testdata/protos/shop/v1/feed.proto
    python -m demo.backend --port 50051 --gen gen

In tests (synchronous)::

    with BackgroundBackend() as backend:
        channel = grpc.insecure_channel(backend.target)
        ...
        backend.recorder.last("GetBook").request
        backend.reset()  # re-seed the store, forget recorded calls
"""

# gRPC handler names are the RPC names (CamelCase).
# ruff: noqa: N802

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import mimetypes
import os
import re
import signal
import sys
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, cast

import grpc
from google.protobuf import (
    any_pb2,
    duration_pb2,
    empty_pb2,
    field_mask_pb2,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo.backend", description="Serve the example shop.v1 gRPC backend."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50051, help="0 picks a free port (default 50051)")
    parser.add_argument("--gen", default="gen", help="directory holding the generated shop.v1 stubs")
    return parser


if __name__ == "__main__":  # before importing the stubs: --gen says where they are, --help needs none
    sys.path.insert(0, os.path.abspath(_parser().parse_args().gen))

try:
    # Generated at build time: untyped for mypy unless GEN (with --pyi_out) is on MYPYPATH.
    from shop.v1 import shop_pb2, shop_pb2_grpc  # type: ignore[import-not-found, unused-ignore]
except ImportError as exc:  # pragma: no cover - environment problem, not a code path
    raise ImportError(
        "demo.backend needs the generated shop.v1 stubs on sys.path: run `python -m "
        "protoc_gen_pygateway.protoc -Itestdata/protos --python_out=GEN --grpc_python_out=GEN "
        "testdata/protos/shop/v1/shop.proto testdata/protos/shop/v1/feed.proto` and add GEN to "
        "sys.path (or pass --gen GEN)"
    ) from exc

__all__ = [
    "DELAY_METADATA_KEY",
    "ECHO_BIN_TRAILER",
    "ERROR_DOMAIN",
    "BackgroundBackend",
    "Call",
    "Recorder",
    "ShelfAdminServicer",
    "ShopServicer",
    "Store",
    "seed_books",
    "seed_shelves",
    "start_backend",
]

ERROR_DOMAIN = "shop.example.com"
"""`ErrorInfo.domain` of the details `Fail` attaches."""

ECHO_BIN_TRAILER = b"\x00\x01binary"
"""Value of the binary `x-echo-bin` trailer `EchoMetadata` sends."""

DELAY_METADATA_KEY = "x-backend-delay-ms"
"""Request metadata making any handler sleep this many milliseconds after recording the call, so tests can
exercise deadlines and cancellation (`Call.cancelled`)."""

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_SHOP = "/shop.v1.ShopService/"
_ADMIN = "/shop.v1.ShelfAdminService/"
_STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}
_SHELF_NAME = re.compile(r"^shelves/[^/]+$")

Context = grpc.aio.ServicerContext[Any, Any]
MetadataItems = tuple[tuple[str, str | bytes], ...]


# --- call recording -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Call:
    """One RPC as the backend received it."""

    method: str
    """Full method name, e.g. "/shop.v1.ShopService/GetBook"."""
    request: Message
    """A copy of the request message."""
    metadata: MetadataItems
    """Invocation metadata in the order received (`-bin` values are bytes)."""
    deadline_seconds: float | None
    """Seconds left until the deadline when the handler started; None without a deadline."""
    cancelled: bool = False
    """Whether the RPC was cancelled (client gone, deadline passed) while the handler waited on
    `x-backend-delay-ms` or, for FeedService, at any point while its handler ran; grpc.aio's
    `context.cancelled()` stays False even then, so nothing else is seen."""
    messages: list[Message] = dataclasses.field(default_factory=list)
    """Client/bidi streaming: copies of the request messages received so far, in arrival order (appended
    as each arrives, before the handler acts on it); `request` is then an empty message of the type."""
    messages_sent: int = 0
    """FeedService: how many response messages the handler has written so far (Upload: 1 once it returns
    its summary); stays 0 for the unary shop RPCs."""

    @property
    def messages_received(self) -> int:
        """Client/bidi streaming: how many request messages the handler has read so far."""
        return len(self.messages)

    def metadata_values(self, key: str) -> list[str | bytes]:
        """All values received for `key` (lower case), in order."""
        return [value for k, value in self.metadata if k == key]


class Recorder:
    """Every call the backend handled, oldest first."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def record(self, method: str, request: Message, context: Context) -> Call:
        """Record a call; handlers call this before doing anything else."""
        copy = type(request)()
        copy.CopyFrom(request)
        metadata = tuple((str(key), value) for key, value in _metadata_items(context))
        call = Call(method, copy, metadata, context.time_remaining())
        self.calls.append(call)
        return call

    def for_method(self, method_suffix: str) -> list[Call]:
        """Calls whose full method name ends with `method_suffix`, e.g. "GetBook" or "Service/GetBook"."""
        return [call for call in self.calls if call.method.endswith(method_suffix)]

    def last(self, method_suffix: str = "") -> Call:
        """The latest call whose method name ends with `method_suffix`; LookupError when there is none."""
        calls = self.for_method(method_suffix)
        if not calls:
            seen = [call.method for call in self.calls]
            raise LookupError(f"no recorded call matching {method_suffix!r}; recorded: {seen}")
        return calls[-1]

    def methods(self) -> list[str]:
        """Full method names of all recorded calls, oldest first."""
        return [call.method for call in self.calls]

    def clear(self) -> None:
        """Forget all recorded calls."""
        self.calls.clear()


async def _begin(recorder: Recorder, method: str, request: Message, context: Context) -> Call:
    """Every handler's first step: record the call, then honour `x-backend-delay-ms` (a test hook)."""
    call = recorder.record(method, request, context)
    delays = [value for key, value in _metadata_items(context) if key == DELAY_METADATA_KEY]
    if not delays:
        return call
    try:
        delay_ms = float(delays[-1])
    except ValueError:
        delay_ms = -1
    if not 0 <= delay_ms <= 600_000:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad {DELAY_METADATA_KEY}: {delays[-1]!r}")
    try:
        await asyncio.sleep(delay_ms / 1000)
    except asyncio.CancelledError:  # grpc.aio cancels the handler when the RPC is cancelled
        call.cancelled = True
        raise
    return call


def _metadata_items(context: Context) -> Iterable[tuple[str, str | bytes]]:
    metadata: Iterable[tuple[str, str | bytes]] | None = context.invocation_metadata()
    return metadata or ()


# --- store ----------------------------------------------------------------------------------------------


def _timestamp(year: int, month: int, day: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime(year, month, day, tzinfo=timezone.utc))
    return ts


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


def seed_shelves() -> dict[str, shop_pb2.Shelf]:
    """Fresh copies of the seeded shelves, by name."""
    shelves = [
        shop_pb2.Shelf(name="shelves/fiction", theme="Fiction"),
        shop_pb2.Shelf(name="shelves/science", theme="Science"),
    ]
    return {shelf.name: shelf for shelf in shelves}


def seed_books() -> dict[str, shop_pb2.Book]:
    """Fresh copies of the seeded books, by name; `shelves/fiction/books/dune` has every field set."""
    dune = shop_pb2.Book(
        name="shelves/fiction/books/dune",
        title="Dune",
        author=shop_pb2.Author(name="Frank Herbert", born_year=1920),
        genre=shop_pb2.GENRE_FICTION,
        tags=["classic", "space"],
        labels={"lang": "en", "series": "dune"},
        publish_time=_timestamp(1965, 8, 1),
        read_time=duration_pb2.Duration(seconds=20 * 3600, nanos=500_000_000),
        edition=wrappers_pb2.Int32Value(value=2),
        isbn=9780441013593,
        price=9.99,
        in_stock=True,
        cover_thumbnail=b"\x89PNG\r\n\x1a\n\x00\xff",
        attributes=_struct(
            {
                "awards": ["Hugo", "Nebula"],
                "rating": 4.5,
                "signed": False,
                "publisher": {"name": "Chilton Books", "city": "Philadelphia"},
                "notes": None,
            }
        ),
        subtitle="Book One of the Dune Chronicles",
        pages=412,
    )
    neuromancer = shop_pb2.Book(
        name="shelves/fiction/books/neuromancer",
        title="Neuromancer",
        author=shop_pb2.Author(name="William Gibson", born_year=1948),
        genre=shop_pb2.GENRE_FICTION,
        tags=["classic", "cyberpunk"],
        labels={"lang": "en"},
        publish_time=_timestamp(1984, 7, 1),
        isbn=9780441569595,
        price=8.5,
        in_stock=False,
        pages=271,
    )
    cosmos = shop_pb2.Book(
        name="shelves/science/books/cosmos",
        title="Cosmos",
        author=shop_pb2.Author(name="Carl Sagan", born_year=1934),
        genre=shop_pb2.GENRE_SCIENCE,
        tags=["astronomy"],
        labels={"lang": "en", "format": "audio"},
        publish_time=_timestamp(1980, 10, 1),
        isbn=9780345539434,
        price=15.0,
        in_stock=True,
        audio_length=duration_pb2.Duration(seconds=14 * 3600 + 31 * 60),
    )
    return {book.name: book for book in (dune, neuromancer, cosmos)}


class Store:
    """The in-memory shelves and books, keyed by resource name; starts seeded."""

    def __init__(self) -> None:
        self.shelves: dict[str, shop_pb2.Shelf] = {}
        self.books: dict[str, shop_pb2.Book] = {}
        self.reset()

    def reset(self) -> None:
        """Drop every change and re-seed (in place: references to the dicts stay valid)."""
        self.shelves.clear()
        self.shelves.update(seed_shelves())
        self.books.clear()
        self.books.update(seed_books())

    def books_under(self, parent: str) -> list[shop_pb2.Book]:
        """Books of shelf `parent`, sorted by name."""
        prefix = parent + "/books/"
        return [self.books[name] for name in sorted(self.books) if name.startswith(prefix)]


# --- helpers --------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    """Lower-case ASCII words joined by "-"; a short hash when nothing of `text` survives."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "book-" + hashlib.sha1(text.encode()).hexdigest()[:8]


def _copy(book: shop_pb2.Book) -> shop_pb2.Book:
    result = shop_pb2.Book()
    result.CopyFrom(book)
    return result


async def _check_mask(context: Context, mask: field_mask_pb2.FieldMask, what: str) -> None:
    if not mask.IsValidForDescriptor(cast(Descriptor, shop_pb2.Book.DESCRIPTOR)):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"{what} has paths that are not Book fields: {list(mask.paths)}"
        )


async def _find_book(store: Store, context: Context, name: str) -> shop_pb2.Book:
    if not name:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "book name is required")
    book = store.books.get(name)
    if book is None:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"book {name!r} not found")
    return book


def _matches(book: shop_pb2.Book, request: shop_pb2.ListBooksRequest) -> bool:
    """Whether `book` passes every filter set in `request`."""
    if request.genre and book.genre != request.genre:
        return False
    if not set(request.tags) <= set(book.tags):
        return False
    if any(book.labels.get(key) != value for key, value in request.labels.items()):
        return False
    if request.HasField("published_after") and not (
        book.HasField("publish_time")
        and book.publish_time.ToNanoseconds() > request.published_after.ToNanoseconds()
    ):
        return False
    if request.HasField("max_read_time") and not (
        book.HasField("read_time") and book.read_time.ToNanoseconds() <= request.max_read_time.ToNanoseconds()
    ):
        return False
    if request.HasField("in_stock") and book.in_stock != request.in_stock.value:
        return False
    wanted = request.filter
    if wanted.author_name and wanted.author_name.lower() not in book.author.name.lower():
        return False
    if wanted.min_pages and book.pages < wanted.min_pages:
        return False
    return not (wanted.genres and book.genre not in wanted.genres)


# --- services -------------------------------------------------------------------------------------------


class ShopServicer:
    """shop.v1.ShopService over a `Store`; every handler starts with `_begin` (record, optional delay)."""

    def __init__(self, store: Store, recorder: Recorder) -> None:
        self.store = store
        self.recorder = recorder

    async def GetBook(self, request: shop_pb2.GetBookRequest, context: Context) -> shop_pb2.Book:
        """The book, restricted to `read_mask` when it has paths."""
        await _begin(self.recorder, _SHOP + "GetBook", request, context)
        return await self._get_book(request, context)

    async def GetBookTitle(self, request: shop_pb2.GetBookRequest, context: Context) -> shop_pb2.Book:
        """Same as GetBook (the HTTP binding narrows the response to `title`)."""
        await _begin(self.recorder, _SHOP + "GetBookTitle", request, context)
        return await self._get_book(request, context)

    async def _get_book(self, request: shop_pb2.GetBookRequest, context: Context) -> shop_pb2.Book:
        book = await _find_book(self.store, context, request.name)
        if not request.read_mask.paths:
            return _copy(book)
        await _check_mask(context, request.read_mask, "read_mask")
        result = shop_pb2.Book()
        request.read_mask.MergeMessage(book, result)
        return result

    async def ListBooks(
        self, request: shop_pb2.ListBooksRequest, context: Context
    ) -> shop_pb2.ListBooksResponse:
        """Books of `parent` passing the filters; `page_token` is the offset into the filtered list."""
        await _begin(self.recorder, _SHOP + "ListBooks", request, context)
        if not request.parent:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "parent is required")
        if request.parent not in self.store.shelves:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"shelf {request.parent!r} not found")
        if request.page_size < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must not be negative")
        try:
            offset = int(request.page_token or "0")
        except ValueError:
            offset = -1
        if offset < 0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"invalid page_token {request.page_token!r}"
            )
        books = [book for book in self.store.books_under(request.parent) if _matches(book, request)]
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = books[offset : offset + size]
        next_token = str(offset + size) if offset + size < len(books) else ""
        return shop_pb2.ListBooksResponse(books=page, next_page_token=next_token)

    async def CreateBook(self, request: shop_pb2.CreateBookRequest, context: Context) -> shop_pb2.Book:
        """Stores `book` as `{parent}/books/{slug of request_id, else of title}`."""
        await _begin(self.recorder, _SHOP + "CreateBook", request, context)
        if request.parent not in self.store.shelves:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"shelf {request.parent!r} not found")
        if not request.book.title:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "book.title is required")
        name = f"{request.parent}/books/{_slug(request.request_id or request.book.title)}"
        if name in self.store.books:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"book {name!r} already exists")
        book = _copy(request.book)
        book.name = name
        self.store.books[name] = book
        return _copy(book)

    async def UpdateBook(self, request: shop_pb2.UpdateBookRequest, context: Context) -> shop_pb2.Book:
        """Applies `update_mask` paths from `book`, or replaces the whole book without a mask."""
        await _begin(self.recorder, _SHOP + "UpdateBook", request, context)
        name = request.book.name
        current = await _find_book(self.store, context, name)
        if request.update_mask.paths:
            await _check_mask(context, request.update_mask, "update_mask")
            updated = _copy(current)
            request.update_mask.MergeMessage(
                request.book, updated, replace_message_field=True, replace_repeated_field=True
            )
        else:
            updated = _copy(request.book)
        updated.name = name
        self.store.books[name] = updated
        return _copy(updated)

    async def DeleteBook(self, request: shop_pb2.DeleteBookRequest, context: Context) -> empty_pb2.Empty:
        """Removes the book."""
        await _begin(self.recorder, _SHOP + "DeleteBook", request, context)
        await _find_book(self.store, context, request.name)
        del self.store.books[request.name]
        return empty_pb2.Empty()

    async def PublishBook(self, request: shop_pb2.PublishBookRequest, context: Context) -> shop_pb2.Book:
        """Sets `publish_time` (now when the request has none)."""
        await _begin(self.recorder, _SHOP + "PublishBook", request, context)
        book = await _find_book(self.store, context, request.name)
        if request.HasField("publish_time"):
            book.publish_time.CopyFrom(request.publish_time)
        else:
            book.publish_time.GetCurrentTime()
        return _copy(book)

    async def GetFile(self, request: shop_pb2.GetFileRequest, context: Context) -> shop_pb2.File:
        """A made-up file at `path` (its bytes are not valid UTF-8)."""
        await _begin(self.recorder, _SHOP + "GetFile", request, context)
        content_type = mimetypes.guess_type(request.path)[0] or "application/octet-stream"
        content = b"\x00\xffcontents of " + request.path.encode()
        return shop_pb2.File(path=request.path, content=content, content_type=content_type)

    async def EchoScalars(
        self, request: shop_pb2.ScalarsRequest, context: Context
    ) -> shop_pb2.ScalarsRequest:
        """The request, unchanged."""
        await _begin(self.recorder, _SHOP + "EchoScalars", request, context)
        result = shop_pb2.ScalarsRequest()
        result.CopyFrom(request)
        return result

    async def Fail(self, request: shop_pb2.FailRequest, context: Context) -> empty_pb2.Empty:
        """Fails with `code`/`message`, plus an ErrorInfo detail when `reason` is set.

        Code 0 succeeds; numbers grpc does not know become UNKNOWN.
        """
        await _begin(self.recorder, _SHOP + "Fail", request, context)
        if request.code == code_pb2.OK:
            return empty_pb2.Empty()
        code = _STATUS_BY_NUMBER.get(request.code, grpc.StatusCode.UNKNOWN)
        if not request.reason:
            await context.abort(code, request.message)
        info = error_details_pb2.ErrorInfo(reason=request.reason, domain=ERROR_DOMAIN)
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(code=code.value[0], message=request.message, details=[detail])
        await context.abort(
            code,
            request.message,
            trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
        )

    async def EchoMetadata(
        self, request: shop_pb2.EchoMetadataRequest, context: Context
    ) -> shop_pb2.EchoMetadataResponse:
        """The metadata and deadline received; sends `x-echo-initial` and `x-echo-trailer`/`x-echo-bin`."""
        await _begin(self.recorder, _SHOP + "EchoMetadata", request, context)
        response = shop_pb2.EchoMetadataResponse(note=request.note)
        for key, value in _metadata_items(context):
            text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
            response.metadata[key].values.append(text)
        remaining = context.time_remaining()
        if remaining is not None:
            response.deadline_seconds.value = remaining
        await context.send_initial_metadata((("x-echo-initial", "yes"),))
        context.set_trailing_metadata((("x-echo-trailer", "yes"), ("x-echo-bin", ECHO_BIN_TRAILER)))
        return response

    async def Ping(self, request: empty_pb2.Empty, context: Context) -> empty_pb2.Empty:
        """Empty."""
        await _begin(self.recorder, _SHOP + "Ping", request, context)
        return empty_pb2.Empty()


class ShelfAdminServicer:
    """shop.v1.ShelfAdminService over a `Store`."""

    def __init__(self, store: Store, recorder: Recorder) -> None:
        self.store = store
        self.recorder = recorder

    async def GetShelf(self, request: shop_pb2.Shelf, context: Context) -> shop_pb2.Shelf:
        """The shelf named `request.name`."""
        await _begin(self.recorder, _ADMIN + "GetShelf", request, context)
        shelf = self.store.shelves.get(request.name)
        if shelf is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"shelf {request.name!r} not found")
        result = shop_pb2.Shelf()
        result.CopyFrom(shelf)
        return result

    async def CreateShelf(self, request: shop_pb2.Shelf, context: Context) -> shop_pb2.Shelf:
        """Stores the shelf; its name must look like `shelves/{shelf}`."""
        await _begin(self.recorder, _ADMIN + "CreateShelf", request, context)
        if not _SHELF_NAME.match(request.name):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"shelf name {request.name!r} is not shelves/{{shelf}}"
            )
        if request.name in self.store.shelves:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"shelf {request.name!r} already exists")
        shelf = shop_pb2.Shelf()
        shelf.CopyFrom(request)
        self.store.shelves[shelf.name] = shelf
        result = shop_pb2.Shelf()
        result.CopyFrom(shelf)
        return result


# --- servers --------------------------------------------------------------------------------------------


async def start_backend(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    store: Store | None = None,
    recorder: Recorder | None = None,
    tls: tuple[bytes, bytes] | None = None,
    client_ca: bytes | None = None,
) -> tuple[grpc.aio.Server, int, Recorder]:
    """Start the shop services and FeedService on `host:port` (0 picks a free port); returns the server,
    bound port, recorder. `tls` = (private key PEM, certificate chain PEM) serves TLS instead of
    plaintext; with `client_ca` (PEM roots) too, clients must present a certificate it signed (mutual
    TLS)."""
    from demo.feed_backend import add_feed_service  # imports this module: not at the top

    store = Store() if store is None else store
    recorder = Recorder() if recorder is None else recorder
    # No SO_REUSEPORT: a busy port must fail here, not silently share connections with another server.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    # The generated registration functions are untyped (when mypy sees them at all).
    add_shop = shop_pb2_grpc.add_ShopServiceServicer_to_server
    add_admin = shop_pb2_grpc.add_ShelfAdminServiceServicer_to_server
    add_shop(ShopServicer(store, recorder), server)  # type: ignore[no-untyped-call, unused-ignore]
    add_admin(ShelfAdminServicer(store, recorder), server)  # type: ignore[no-untyped-call, unused-ignore]
    add_feed_service(server, recorder)
    await _add_health_service(server)
    if tls is None:
        bound = server.add_insecure_port(f"{host}:{port}")
    else:
        credentials = grpc.ssl_server_credentials(
            [tls], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
        bound = server.add_secure_port(f"{host}:{port}", credentials)
    if bound == 0:
        raise RuntimeError(f"could not bind {host}:{port}")
    await server.start()
    return server, bound, recorder


async def _add_health_service(server: grpc.aio.Server) -> None:
    """grpc.health.v1.Health, every service SERVING, when grpcio-health-checking (a dev extra) is installed:
    what the gateway's `GET /healthz` asks (docs/operations.md)."""
    try:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    except ImportError:  # not installed: the backend has no health service (the gateway's /healthz is 503)
        return
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", "shop.v1.ShopService", "shop.v1.ShelfAdminService", "shop.v1.FeedService"):
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


class BackgroundBackend:
    """The backend on its own event loop in a daemon thread, for synchronous tests.

    ``with BackgroundBackend() as backend:`` starts it; `port`, `target`, `store` and `recorder` are then
    usable from any thread, `reset()` restores the seed data and `stop()` shuts it down.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.store = Store()
        self.recorder = Recorder()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def target(self) -> str:
        """`host:port` to dial."""
        return f"{self.host}:{self.port}"

    def start(self) -> BackgroundBackend:
        """Start serving; returns once the port is bound (raises what startup raised)."""
        if self._thread is not None:
            raise RuntimeError("BackgroundBackend already started")
        self._thread = threading.Thread(target=self._run, name="shop-backend", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Stop the server (no grace period) and join its thread; safe to call twice."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = None

    def reset(self) -> None:
        """Re-seed the store and clear the recorder (on the server's loop, between calls)."""
        loop = self._loop
        if loop is None or self._thread is None:
            self.store.reset()
            self.recorder.clear()
            return

        async def reset() -> None:
            self.store.reset()
            self.recorder.clear()

        asyncio.run_coroutine_threadsafe(reset(), loop).result()

    def __enter__(self) -> BackgroundBackend:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() when it happens before ready
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                raise

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server, self.port, _ = await start_backend(
            self.host, self.port, store=self.store, recorder=self.recorder
        )
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await server.stop(0)


# --- command line ---------------------------------------------------------------------------------------


async def _serve_forever(host: str, port: int) -> None:
    server, bound, _ = await start_backend(host, port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    print(f"backend listening on {host}:{bound}", flush=True)
    await stopping.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> int:
    """`python -m demo.backend [--host H] [--port P] [--gen DIR]`: serve until SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    asyncio.run(_serve_forever(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())

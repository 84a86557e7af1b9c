"""The demo gRPC backend (demo/backend.py) on its own, over a real loopback channel."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, field_mask_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shop_stubs(gen_dir: Path) -> tuple[ModuleType, ModuleType]:
    """shop_pb2 and shop_pb2_grpc from the session's generated tree (conftest.gen_dir)."""
    from shop.v1 import shop_pb2, shop_pb2_grpc

    return shop_pb2, shop_pb2_grpc


@pytest.fixture(scope="module")
def running(shop_stubs: tuple[ModuleType, ModuleType]) -> Iterator[Any]:
    from demo.backend import BackgroundBackend

    with BackgroundBackend() as backend:
        yield backend


@pytest.fixture
def backend(running: Any) -> Any:
    """The running backend, re-seeded and with an empty recorder."""
    running.reset()
    return running


@pytest.fixture
def pb(shop_stubs: tuple[ModuleType, ModuleType]) -> Any:
    return shop_stubs[0]


@pytest.fixture
def shop(backend: Any, shop_stubs: tuple[ModuleType, ModuleType]) -> Iterator[Any]:
    """A ShopServiceStub on a sync channel to the backend."""
    with grpc.insecure_channel(backend.target) as channel:
        yield shop_stubs[1].ShopServiceStub(channel)


DUNE = "shelves/fiction/books/dune"


def test_get_book_returns_the_seeded_book(shop: Any, pb: Any, backend: Any) -> None:
    from demo.backend import seed_books

    book = shop.GetBook(pb.GetBookRequest(name=DUNE), metadata=[("x-trace", "t1")])
    assert book == seed_books()[DUNE]
    assert book.attributes["rating"] == 4.5 and book.edition.value == 2 and book.pages == 412

    call = backend.recorder.last("GetBook")
    assert call.method == "/shop.v1.ShopService/GetBook"
    assert call.request == pb.GetBookRequest(name=DUNE)
    assert call.metadata_values("x-trace") == ["t1"]
    assert call.deadline_seconds is None
    assert not call.cancelled


def test_get_book_applies_read_mask(shop: Any, pb: Any) -> None:
    mask = field_mask_pb2.FieldMask(paths=["title", "author.name"])
    book = shop.GetBook(pb.GetBookRequest(name=DUNE, read_mask=mask))
    assert book == pb.Book(title="Dune", author=pb.Author(name="Frank Herbert"))


def test_get_book_not_found(shop: Any, pb: Any, backend: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        shop.GetBook(pb.GetBookRequest(name="shelves/fiction/books/missing"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "shelves/fiction/books/missing" in raised.value.details()
    assert backend.recorder.last("GetBook").request.name == "shelves/fiction/books/missing"


def test_fail_with_reason_sends_error_info(shop: Any, pb: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        shop.Fail(pb.FailRequest(code=9, message="shelf is locked", reason="SHELF_LOCKED"))
    error = raised.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "shelf is locked"
    raw = [value for key, value in error.trailing_metadata() if key == "grpc-status-details-bin"]
    assert len(raw) == 1
    status = status_pb2.Status.FromString(raw[0])
    assert (status.code, status.message) == (9, "shelf is locked")
    info = error_details_pb2.ErrorInfo()
    assert len(status.details) == 1 and status.details[0].Unpack(info)
    assert info == error_details_pb2.ErrorInfo(reason="SHELF_LOCKED", domain="shop.example.com")


def test_fail_without_reason_has_no_details(shop: Any, pb: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        shop.Fail(pb.FailRequest(code=5, message="gone"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert all(key != "grpc-status-details-bin" for key, _ in raised.value.trailing_metadata())


def test_echo_metadata(shop: Any, pb: Any, backend: Any) -> None:
    sent = [("x-one", "1"), ("x-one", "2"), ("x-blob-bin", b"\x00\xff")]
    response, call = shop.EchoMetadata.with_call(pb.EchoMetadataRequest(note="hi"), metadata=sent, timeout=30)
    assert response.note == "hi"
    assert list(response.metadata["x-one"].values) == ["1", "2"]
    assert list(response.metadata["x-blob-bin"].values) == [base64.b64encode(b"\x00\xff").decode()]
    # grpc-core rounds the grpc-timeout it sends up by up to ~1% (30 s arrives as ~30.1 s).
    assert 29 < response.deadline_seconds.value <= 30 * 1.02
    assert ("x-echo-initial", "yes") in call.initial_metadata()
    trailers = list(call.trailing_metadata())
    assert ("x-echo-trailer", "yes") in trailers
    assert ("x-echo-bin", b"\x00\x01binary") in trailers

    recorded = backend.recorder.last("EchoMetadata")
    assert [item for item in recorded.metadata if item[0].startswith("x-")] == sent
    assert recorded.deadline_seconds is not None and 29 < recorded.deadline_seconds <= 30 * 1.02


def test_echo_metadata_without_deadline(shop: Any, pb: Any) -> None:
    response = shop.EchoMetadata(pb.EchoMetadataRequest())
    assert not response.HasField("deadline_seconds")


def test_book_lifecycle_and_reset(shop: Any, pb: Any, backend: Any) -> None:
    created = shop.CreateBook(
        pb.CreateBookRequest(parent="shelves/science", book=pb.Book(title="A Brief History of Time"))
    )
    assert created.name == "shelves/science/books/a-brief-history-of-time"
    with pytest.raises(grpc.RpcError) as raised:
        shop.CreateBook(pb.CreateBookRequest(parent="shelves/science", book=created))
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as raised:
        shop.CreateBook(pb.CreateBookRequest(parent="shelves/science", book=pb.Book()))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    patch = pb.Book(name=created.name, title="ignored", price=12.5)
    updated = shop.UpdateBook(
        pb.UpdateBookRequest(book=patch, update_mask=field_mask_pb2.FieldMask(paths=["price"]))
    )
    assert (updated.title, updated.price) == ("A Brief History of Time", 12.5)

    in_stock = shop.ListBooks(
        pb.ListBooksRequest(parent="shelves/science", in_stock=wrappers_pb2.BoolValue(value=True))
    )
    assert [book.name for book in in_stock.books] == ["shelves/science/books/cosmos"]
    page = shop.ListBooks(pb.ListBooksRequest(parent="shelves/science", page_size=1))
    assert len(page.books) == 1 and page.next_page_token

    published = shop.PublishBook(pb.PublishBookRequest(name=created.name))
    assert published.publish_time.seconds > 0
    shop.DeleteBook(pb.DeleteBookRequest(name=created.name))
    with pytest.raises(grpc.RpcError) as raised:
        shop.DeleteBook(pb.DeleteBookRequest(name=created.name))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    assert backend.recorder.methods()[:2] == ["/shop.v1.ShopService/CreateBook"] * 2
    backend.reset()
    assert backend.recorder.calls == []
    assert "shelves/science/books/a-brief-history-of-time" not in backend.store.books


def test_delay_hook_and_cancellation_are_recorded(shop: Any, pb: Any, backend: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        shop.Ping(empty_pb2.Empty(), metadata=[("x-backend-delay-ms", "5000")], timeout=0.2)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    call = backend.recorder.last("Ping")
    deadline = time.monotonic() + 5
    while not call.cancelled and time.monotonic() < deadline:  # set by the server's done callback
        time.sleep(0.01)
    assert call.cancelled


def test_recorder_last_without_match(backend: Any) -> None:
    with pytest.raises(LookupError):
        backend.recorder.last("GetBook")


def test_shelf_admin(backend: Any, shop_stubs: tuple[ModuleType, ModuleType]) -> None:
    pb, pb_grpc = shop_stubs
    with grpc.insecure_channel(backend.target) as channel:
        admin = pb_grpc.ShelfAdminServiceStub(channel)
        assert admin.GetShelf(pb.Shelf(name="shelves/fiction")).theme == "Fiction"
        admin.CreateShelf(pb.Shelf(name="shelves/history", theme="History"))
        assert admin.GetShelf(pb.Shelf(name="shelves/history")).theme == "History"
    assert backend.recorder.last("CreateShelf").method == "/shop.v1.ShelfAdminService/CreateShelf"


def test_start_backend_on_the_callers_loop(shop_stubs: tuple[ModuleType, ModuleType]) -> None:
    from demo.backend import start_backend

    pb_grpc = shop_stubs[1]

    async def scenario() -> str:
        server, port, recorder = await start_backend()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await pb_grpc.ShopServiceStub(channel).Ping(empty_pb2.Empty())
        finally:
            await server.stop(0)
        return str(recorder.last().method)

    assert asyncio.run(scenario()) == "/shop.v1.ShopService/Ping"

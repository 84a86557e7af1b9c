"""The demo FeedService backend (demo/feed_backend.py) on its own, over real loopback channels."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

ROOT = Path(__file__).resolve().parent.parent
WAIT = 5.0


@pytest.fixture(scope="session")
def feed_stubs(gen_dir: Path) -> tuple[ModuleType, ModuleType]:
    """feed_pb2 and feed_pb2_grpc from the session's generated tree (conftest.gen_dir)."""
    from shop.v1 import feed_pb2, feed_pb2_grpc

    return feed_pb2, feed_pb2_grpc


@pytest.fixture(scope="module")
def running(feed_stubs: tuple[ModuleType, ModuleType]) -> Iterator[Any]:
    from demo.backend import BackgroundBackend

    with BackgroundBackend() as backend:
        yield backend


@pytest.fixture
def backend(running: Any) -> Any:
    """The running backend with an empty recorder."""
    running.reset()
    return running


@pytest.fixture
def pb(feed_stubs: tuple[ModuleType, ModuleType]) -> Any:
    return feed_stubs[0]


@pytest.fixture
def feed(backend: Any, feed_stubs: tuple[ModuleType, ModuleType]) -> Iterator[Any]:
    """A FeedServiceStub on a sync channel to the backend."""
    with grpc.insecure_channel(backend.target) as channel:
        yield feed_stubs[1].FeedServiceStub(channel)


def wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        time.sleep(0.01)


def details_of(error: Any) -> status_pb2.Status:
    """The google.rpc.Status an RpcError carries in `grpc-status-details-bin`."""
    raw = [value for key, value in error.trailing_metadata() if key == "grpc-status-details-bin"]
    assert len(raw) == 1
    return status_pb2.Status.FromString(raw[0])


# --- Watch / WatchTitles --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["Watch", "WatchTitles"])
def test_watch_streams_events_with_metadata(feed: Any, pb: Any, backend: Any, method: str) -> None:
    request = pb.WatchRequest(shelf="shelves/fiction", count=3, padding=4)
    before = time.time()
    call = getattr(feed, method)(request, metadata=[("x-trace", "w1")], timeout=30)
    events = list(call)
    assert [(e.seq, e.shelf, e.title, e.padding) for e in events] == [
        (seq, "shelves/fiction", f"event {seq}", "xxxx") for seq in range(3)
    ]
    assert all(before - 1 <= e.time.ToMicroseconds() / 1e6 <= time.time() + 1 for e in events)
    assert call.code() == grpc.StatusCode.OK
    assert ("x-feed-initial", "yes") in call.initial_metadata()
    assert ("x-feed-trailer", "done") in call.trailing_metadata()

    recorded = backend.recorder.last(method)
    assert recorded.method == f"/shop.v1.FeedService/{method}"
    assert recorded.request == request
    assert recorded.metadata_values("x-trace") == ["w1"]
    assert recorded.deadline_seconds is not None and 29 < recorded.deadline_seconds <= 30 * 1.02
    assert recorded.messages_sent == 3 and not recorded.cancelled
    assert recorded.messages == [] and recorded.messages_received == 0


def test_watch_defaults_to_five_events(feed: Any, pb: Any) -> None:
    events = list(feed.Watch(pb.WatchRequest(shelf="shelves/any")))
    assert [e.seq for e in events] == [0, 1, 2, 3, 4]
    assert events[0].padding == ""


def test_watch_interval_spaces_the_events(feed: Any, pb: Any) -> None:
    started = time.monotonic()
    arrivals = []
    for _ in feed.Watch(pb.WatchRequest(shelf="shelves/a", count=3, interval_ms=150)):
        arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] >= 0.25  # two pauses of 150 ms (allowing for timer slack)


def test_watch_fails_mid_stream_with_details_and_trailers(feed: Any, pb: Any, backend: Any) -> None:
    call = feed.Watch(pb.WatchRequest(shelf="shelves/fiction", count=10, fail_code=14, fail_after=2))
    events = []
    with pytest.raises(grpc.RpcError) as raised:
        for event in call:
            events.append(event)
    assert [e.seq for e in events] == [0, 1]
    error = raised.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "failed after 2 events"
    assert ("x-feed-initial", "yes") in error.initial_metadata()
    assert ("x-feed-trailer", "done") in error.trailing_metadata()
    status = details_of(error)
    assert (status.code, status.message) == (14, "failed after 2 events")
    info = error_details_pb2.ErrorInfo()
    assert len(status.details) == 1 and status.details[0].Unpack(info)
    assert info == error_details_pb2.ErrorInfo(
        reason="STREAM_FAILED", domain="shop.example.com", metadata={"events": "2"}
    )
    assert backend.recorder.last("Watch").messages_sent == 2


@pytest.mark.parametrize(
    ("fail_after", "sent"), [(0, 0), (3, 3), (7, 3)], ids=["before-first", "after-last", "beyond-count"]
)
def test_watch_failure_point(feed: Any, pb: Any, fail_after: int, sent: int) -> None:
    events = []
    with pytest.raises(grpc.RpcError) as raised:
        for event in feed.Watch(
            pb.WatchRequest(shelf="shelves/a", count=3, fail_code=9, fail_after=fail_after)
        ):
            events.append(event)
    assert len(events) == sent
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details() == f"failed after {sent} events"


def test_watch_unknown_code_fails_as_unknown(feed: Any, pb: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(feed.Watch(pb.WatchRequest(shelf="shelves/a", count=1, fail_code=99, fail_after=1)))
    assert raised.value.code() == grpc.StatusCode.UNKNOWN
    assert details_of(raised.value).code == 2


def test_watch_missing_shelf_is_not_found_before_any_event(feed: Any, pb: Any, backend: Any) -> None:
    call = feed.Watch(pb.WatchRequest(shelf="shelves/missing"))
    with pytest.raises(grpc.RpcError) as raised:
        next(call)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "shelves/missing" in raised.value.details()
    assert backend.recorder.last("Watch").messages_sent == 0


@pytest.mark.parametrize(
    "fields",
    [{"shelf": ""}, {"shelf": "shelves/a/b"}, {"count": -1}, {"interval_ms": -1}, {"padding": -1}],
)
def test_watch_rejects_bad_requests(feed: Any, pb: Any, fields: dict[str, Any]) -> None:
    request = pb.WatchRequest(shelf="shelves/a", count=1)
    for name, value in fields.items():
        setattr(request, name, value)
    with pytest.raises(grpc.RpcError) as raised:
        list(feed.Watch(request))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("interval_ms", [100, 0])
def test_watch_cancellation_is_recorded(feed: Any, pb: Any, backend: Any, interval_ms: int) -> None:
    call = feed.Watch(
        pb.WatchRequest(shelf="shelves/a", count=1_000_000, interval_ms=interval_ms, padding=1000)
    )
    assert next(call).seq == 0
    call.cancel()
    recorded = backend.recorder.last("Watch")
    wait_until(lambda: recorded.cancelled, "Watch recorded as cancelled")
    sent = recorded.messages_sent
    time.sleep(0.2)
    assert recorded.messages_sent == sent < 1_000_000  # the handler stopped


def test_watch_deadline_is_recorded_as_cancellation(feed: Any, pb: Any, backend: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(feed.Watch(pb.WatchRequest(shelf="shelves/a", count=100, interval_ms=100), timeout=0.3))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    recorded = backend.recorder.last("Watch")
    wait_until(lambda: recorded.cancelled, "Watch recorded as cancelled")


def test_watch_honours_the_delay_hook(feed: Any, pb: Any, backend: Any) -> None:
    started = time.monotonic()
    events = list(
        feed.Watch(pb.WatchRequest(shelf="shelves/a", count=1), metadata=[("x-backend-delay-ms", "200")])
    )
    assert len(events) == 1 and time.monotonic() - started >= 0.19


# --- Upload ---------------------------------------------------------------------------------------------


def test_upload_summarises_the_chunks(feed: Any, pb: Any, backend: Any) -> None:
    chunks = [pb.UploadChunk(name="a", data="hello"), pb.UploadChunk(name="b", data="é!"), pb.UploadChunk()]
    summary = feed.Upload(iter(chunks), metadata=[("x-trace", "u1")])
    assert summary == pb.UploadSummary(chunks=3, bytes=5 + 3, names=["a", "b", ""])
    recorded = backend.recorder.last("Upload")
    assert recorded.method == "/shop.v1.FeedService/Upload"
    assert recorded.request == pb.UploadChunk()
    assert recorded.metadata_values("x-trace") == ["u1"]
    assert recorded.messages == chunks and recorded.messages_received == 3
    assert recorded.messages_sent == 1


def test_upload_of_nothing(feed: Any, pb: Any) -> None:
    assert feed.Upload(iter([])) == pb.UploadSummary()


def test_upload_records_each_chunk_as_it_arrives(feed: Any, pb: Any, backend: Any) -> None:
    outbox: queue.Queue[Any] = queue.Queue()
    future = feed.Upload.future(iter(outbox.get, None))
    outbox.put(pb.UploadChunk(name="first"))
    wait_until(lambda: backend.recorder.for_method("Upload"), "Upload recorded")
    recorded = backend.recorder.last("Upload")
    wait_until(lambda: recorded.messages_received == 1, "first chunk received")
    outbox.put(pb.UploadChunk(name="second", data="xy"))
    wait_until(lambda: recorded.messages_received == 2, "second chunk received")
    assert not future.done()
    outbox.put(None)
    assert future.result(timeout=WAIT) == pb.UploadSummary(chunks=2, bytes=2, names=["first", "second"])


def test_upload_bad_chunk(feed: Any, pb: Any, backend: Any) -> None:
    chunks = [pb.UploadChunk(name="ok"), pb.UploadChunk(name="fail"), pb.UploadChunk(name="never")]
    with pytest.raises(grpc.RpcError) as raised:
        feed.Upload(iter(chunks))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "bad chunk"
    assert [m.name for m in backend.recorder.last("Upload").messages] == ["ok", "fail"]


def test_upload_cancellation_is_recorded(feed: Any, pb: Any, backend: Any) -> None:
    outbox: queue.Queue[Any] = queue.Queue()
    future = feed.Upload.future(iter(outbox.get, None))
    outbox.put(pb.UploadChunk(name="first"))
    wait_until(lambda: backend.recorder.for_method("Upload"), "Upload recorded")
    recorded = backend.recorder.last("Upload")
    wait_until(lambda: recorded.messages_received == 1, "first chunk received")
    future.cancel()
    outbox.put(None)
    wait_until(lambda: recorded.cancelled, "Upload recorded as cancelled")


# --- Chat -----------------------------------------------------------------------------------------------


def chat_request(pb: Any, text: str, room: str = "") -> Any:
    return pb.ChatRequest(message=pb.ChatMessage(user="me", text=text), room=room)


def test_chat_echoes_each_message_at_once(feed: Any, pb: Any, backend: Any) -> None:
    outbox: queue.Queue[Any] = queue.Queue()
    call = feed.Chat(iter(outbox.get, None), metadata=[("x-trace", "c1")], timeout=30)
    outbox.put(chat_request(pb, "hi", room="lobby"))
    assert next(call) == pb.ChatMessage(user="system", text="joined lobby", seq=-1)
    assert next(call) == pb.ChatMessage(user="echo", text="hi", seq=0)
    # Lock step: each reply arrives while the client still holds the stream open.
    outbox.put(chat_request(pb, "second", room="ignored"))
    assert next(call) == pb.ChatMessage(user="echo", text="second", seq=1)
    outbox.put(chat_request(pb, ""))
    assert next(call) == pb.ChatMessage(user="echo", text="", seq=2)
    outbox.put(None)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK

    recorded = backend.recorder.last("Chat")
    assert recorded.method == "/shop.v1.FeedService/Chat"
    assert recorded.request == pb.ChatRequest()
    assert recorded.metadata_values("x-trace") == ["c1"]
    assert recorded.deadline_seconds is not None
    assert [m.message.text for m in recorded.messages] == ["hi", "second", ""]
    assert recorded.messages_received == 3 and recorded.messages_sent == 4


def test_chat_without_room(feed: Any, pb: Any) -> None:
    replies = list(feed.Chat(iter([chat_request(pb, "a"), chat_request(pb, "b")])))
    assert [(r.user, r.text, r.seq) for r in replies] == [("echo", "a", 0), ("echo", "b", 1)]


def test_chat_fail(feed: Any, pb: Any, backend: Any) -> None:
    call = feed.Chat(iter([chat_request(pb, "a"), chat_request(pb, "fail"), chat_request(pb, "c")]))
    replies = []
    with pytest.raises(grpc.RpcError) as raised:
        for reply in call:
            replies.append(reply)
    assert [r.text for r in replies] == ["a"]
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert [m.message.text for m in backend.recorder.last("Chat").messages] == ["a", "fail"]


def test_chat_cancellation_is_recorded(feed: Any, pb: Any, backend: Any) -> None:
    outbox: queue.Queue[Any] = queue.Queue()
    call = feed.Chat(iter(outbox.get, None))
    outbox.put(chat_request(pb, "a"))
    assert next(call).text == "a"
    call.cancel()
    outbox.put(None)
    recorded = backend.recorder.last("Chat")
    wait_until(lambda: recorded.cancelled, "Chat recorded as cancelled")


# --- grpc.aio client ------------------------------------------------------------------------------------


def test_aio_client_streams(feed_stubs: tuple[ModuleType, ModuleType]) -> None:
    from demo.backend import start_backend

    pb, pb_grpc = feed_stubs

    async def scenario() -> tuple[list[int], list[str], Any]:
        server, port, recorder = await start_backend()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.FeedServiceStub(channel)
                seqs = [e.seq async for e in stub.Watch(pb.WatchRequest(shelf="shelves/a", count=2))]
                chat = stub.Chat()
                texts = []
                for text in ("x", "y"):
                    await chat.write(chat_request(pb, text))
                    texts.append((await chat.read()).text)
                await chat.done_writing()
                assert await chat.read() == grpc.aio.EOF
                summary = await stub.Upload(iter([pb.UploadChunk(name="n", data="abc")]))
        finally:
            await server.stop(0)
        assert recorder.methods()[-1] == "/shop.v1.FeedService/Upload"
        return seqs, texts, summary

    seqs, texts, summary = asyncio.run(scenario())
    assert (seqs, texts) == ([0, 1], ["x", "y"])
    assert summary == pb.UploadSummary(chunks=1, bytes=3, names=["n"])

"""HPACK for the native gRPC client: a stateless hand-written encoder and the `hpack` library's decoder
behind a cache of fully-indexed header blocks.

Encoder (hand-written, ~40 lines): every request header goes out as a "literal header field without
indexing" (RFC 7541 §6.2.2), names from the static table where they exist, no Huffman. It never touches
the peer's dynamic table, so it keeps no state, cannot desynchronize, and a method's constant header prefix
(:method, :scheme, :path, :authority, content-type, te, user-agent) is built once per method and reused
as bytes. `hpack.Encoder` costs ~15-25 µs per call in pure Python (Huffman + table search) for the same
headers, which is about as much as the rest of a native unary call.

Decoder (library + cache): gRPC servers (grpc-go, grpc core) index their response header fields, so
after the first reply a response header block (":status 200, content-type, grpc-status 0") is a few
bytes of indexed representations, plus at most literals *without* indexing (grpc core sends an empty
`grpc-message` that way). Such a block does not change the dynamic table, so while the table is
unchanged the same bytes always decode to the same list: a dict lookup replaces `hpack`'s decoding
(two `hpack` decodes cost ~35 µs per unary call against a grpc.aio server here, 16-20 µs in
../shared/research/grpc-client-cost.md). A block that may change the table goes to `hpack` and empties
the cache.
"""

from __future__ import annotations

from hpack import Decoder  # the optional `hpack` dependency (extra "native")
from hpack.exceptions import HPACKError, OversizedHeaderListError

__all__ = ["HPACKError", "HeaderDecoder", "OversizedHeaderListError", "encode_int", "encode_literal"]

#: RFC 7541 Appendix A: static table indices of the names the client sends.
STATIC_NAME_INDEX = {
    ":authority": 1,
    ":method": 2,
    ":path": 4,
    ":scheme": 6,
    "content-type": 31,
    "user-agent": 58,
}


def encode_int(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 §5.1) with `first`'s high bits set in the first byte."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_literal(name: bytes, value: bytes) -> bytes:
    """One "literal header field without indexing" (RFC 7541 §6.2.2), raw (non-Huffman) strings."""
    index = STATIC_NAME_INDEX.get(name.decode("latin-1"), 0)
    head = encode_int(index, 4, 0x00) if index else b"\x00" + encode_int(len(name), 7, 0x00) + name
    return head + encode_int(len(value), 7, 0x00) + value


def _skip_int(block: bytes, i: int, prefix_bits: int) -> int:
    """Index just past the HPACK integer starting at `i` (RFC 7541 §5.1)."""
    limit = (1 << prefix_bits) - 1
    if block[i] & limit != limit:
        return i + 1
    i += 1
    while block[i] & 0x80:
        i += 1
    return i + 1


def _read_int(block: bytes, i: int, prefix_bits: int) -> tuple[int, int]:
    limit = (1 << prefix_bits) - 1
    value = block[i] & limit
    i += 1
    if value != limit:
        return value, i
    shift = 0
    while True:
        b = block[i]
        i += 1
        value += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i
        if shift > 28:
            raise IndexError("HPACK integer too long")


def table_neutral(block: bytes) -> bool:
    """True when decoding the block cannot change the dynamic table: it holds only indexed fields and
    literals without indexing / never indexed (RFC 7541 §6.1, §6.2.2, §6.2.3), no incremental-indexing
    literal and no table size update. Such a block decodes to the same list while the table is the same.
    Malformed input answers False (and then goes to hpack, which reports it)."""
    i = 0
    n = len(block)
    try:
        while i < n:
            b = block[i]
            if b & 0x80:  # indexed header field
                i = _skip_int(block, i, 7)
                continue
            if b & 0xE0 != 0:  # 0x40 incremental indexing, 0x20 size update: they change the table
                return False
            index, i = _read_int(block, i, 4)  # 0x00 without indexing, 0x10 never indexed
            if index == 0:
                length, i = _read_int(block, i, 7)
                i += length
            length, i = _read_int(block, i, 7)
            i += length
    except IndexError:
        return False
    return i == n


class HeaderDecoder:
    """`hpack.Decoder` with the fully-indexed block cache; values come back as latin-1 `str`."""

    __slots__ = ("_cache", "_decoder")

    CACHE_LIMIT = 512

    def __init__(self, max_header_list_size: int) -> None:
        self._decoder = Decoder()
        self._decoder.max_header_list_size = max_header_list_size
        self._cache: dict[bytes, list[tuple[str, str]]] = {}

    @property
    def header_table_size(self) -> int:
        return int(self._decoder.header_table_size)

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        """Decode one complete header block. Raises `HPACKError` (incl. `OversizedHeaderListError`)."""
        cached = self._cache.get(block)
        if cached is not None:
            return cached
        raw = self._decoder.decode(block, raw=True)
        headers = [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in raw]
        if table_neutral(block):
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            self._cache[block] = headers
        else:
            self._cache.clear()
        return headers

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
bytes of indexed representations only. Such a block does not change the dynamic table, so while the
table is unchanged the same bytes always decode to the same list: a dict lookup replaces `hpack`'s
decoding (16-20 µs per call measured in ../shared/research/grpc-client-cost.md). Any block that is not
fully indexed may change the table, so it goes to `hpack` and empties the cache.
"""

from __future__ import annotations

from hpack import Decoder  # the optional `hpack` dependency (extra "native")
from hpack.exceptions import HPACKError, OversizedHeaderListError

__all__ = ["HPACKError", "HeaderDecoder", "OversizedHeaderListError", "encode_literal", "encode_int"]

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
    if index:
        head = encode_int(index, 4, 0x00)
    else:
        head = b"\x00" + encode_int(len(name), 7, 0x00) + name
    return head + encode_int(len(value), 7, 0x00) + value


def _fully_indexed(block: bytes) -> bool:
    """True when every representation in the block is an indexed header field (RFC 7541 §6.1)."""
    i = 0
    n = len(block)
    while i < n:
        b = block[i]
        if not b & 0x80:
            return False
        i += 1
        if b & 0x7F == 0x7F:  # multi-byte index
            while i < n and block[i] & 0x80:
                i += 1
            i += 1
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
        if _fully_indexed(block):
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            self._cache[block] = headers
        else:
            self._cache.clear()
        return headers

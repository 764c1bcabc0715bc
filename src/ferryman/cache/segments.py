"""An encrypted block on disk: a run of sealed segments, so a range opens only what it covers.

Block i of an encrypted entry fills the start of its slot in `data` (at
i * slot) with consecutive segments. Segment j holds plaintext bytes
[j * S, min((j + 1) * S, n)) of the block (S the entry's segment size, n the
block's length), sealed on its own: nonce (12 bytes) + ciphertext + tag (16).
Each segment's associated data binds the layout, the entry, the object
version, the block index and the segment index, so a segment moved to
another place, another block, entry or version fails its check. Its length
follows from the entry's meta: a segment cut short is refused before it is
opened. decisions/0039 has the choice of S (SEGMENT_SIZE).

Pure layout and sealing: entryfiles.py reads and writes the bytes.
"""

from __future__ import annotations

from ferryman.cache.crypto import BadBlock, BlockCipher
from ferryman.http.spans import Span

SEGMENT_SIZE = 64 * 1024  # plaintext bytes per sealed segment of new entries (decision 0039)
OVERHEAD = BlockCipher.OVERHEAD  # 28 bytes per segment: nonce and tag
_LAYOUT = b"seg1"  # in every segment's associated data: the layout it was sealed in


def segment_count(length: int, segment_size: int) -> int:
    """How many segments a block of `length` plaintext bytes is sealed as (at least one)."""
    return max(1, -(-length // segment_size))


def sealed_length(length: int, segment_size: int) -> int:
    """Bytes a block of `length` plaintext bytes takes on disk, sealed as segments."""
    return length + segment_count(length, segment_size) * OVERHEAD


def block_aad(entry_id: str, etag: str, index: int) -> bytes:
    """What every segment of block `index` is bound to: layout, entry, object version, block."""
    return b"%s\0%s\0%s\0%d\0" % (_LAYOUT, entry_id.encode(), etag.encode(), index)


def seal_block(cipher: BlockCipher, plain: bytes, segment_size: int, aad: bytes) -> bytes:
    """The block `plain` sealed as its run of segments (`aad`: block_aad of its place)."""
    view = memoryview(plain)
    return b"".join(
        cipher.seal(view[start : start + segment_size], aad + b"%d" % j)
        for j, start in enumerate(range(0, max(len(plain), 1), segment_size))
    )


def covering(piece: Span, segment_size: int) -> range:
    """The segments that hold `piece`, a non-empty span of block-relative plaintext offsets."""
    return range(piece.start // segment_size, -(-piece.end // segment_size))


def sealed_run(segments: range, length: int, segment_size: int) -> Span:
    """Where `segments` of a block of `length` plaintext bytes lie, relative to its slot."""
    stride = segment_size + OVERHEAD
    last = segments.stop - 1
    last_length = min(segments.stop * segment_size, length) - last * segment_size
    return Span(segments.start * stride, last * stride + last_length + OVERHEAD)


def open_piece(
    cipher: BlockCipher,
    sealed: bytes | bytearray | memoryview,
    piece: Span,
    length: int,
    segment_size: int,
    aad: bytes,
) -> list[bytes]:
    """Plaintext bytes `piece` (block-relative) of a block of `length` bytes, from `sealed`,
    the bytes of sealed_run(covering(piece)): one chunk per segment, in order (joining them
    would copy every byte once more). BadBlock if any segment is short or fails."""
    segments = covering(piece, segment_size)
    expected = sealed_run(segments, length, segment_size).length
    if len(sealed) != expected:
        raise BadBlock(f"sealed segments cut short: {len(sealed)} of {expected} bytes on disk")
    view = memoryview(sealed)
    stride = segment_size + OVERHEAD
    chunks = [
        cipher.open(view[n * stride : (n + 1) * stride], aad + b"%d" % j)
        for n, j in enumerate(segments)
    ]
    first = segments.start * segment_size  # where chunks[0] begins in the block
    head, tail = piece.start - first, piece.end - (segments.stop - 1) * segment_size
    if len(chunks) == 1:
        only = chunks[0]
        return [only if head == 0 and tail == len(only) else only[head:tail]]
    if head:
        chunks[0] = chunks[0][head:]
    if tail != len(chunks[-1]):
        chunks[-1] = chunks[-1][:tail]
    return chunks

"""The encrypted cache end to end: ferryman with --cache-encrypt in front of moto.

Blocks are 1 MiB, sealed as 64 KiB segments (cache/segments.py). Every body
served is compared byte for byte with the object (pattern bytes that name
their own offsets); the proxy in front of moto shows what reached the store.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.cache.crypto import BlockCipher
from ferryman.cache.segments import OVERHEAD, SEGMENT_SIZE
from tests.damage import flip_byte
from tests.faultproxy import FaultProxy
from tests.integration.test_cache_gateway import Gateway, assert_serves_whole, entry_dirs
from tests.integration.test_serving import parse_multipart
from tests.s3server import MotoServer
from tests.serverproc import ServerProcess, pattern

MIB = 1024 * 1024
SIZE = 3 * MIB + 12345  # four blocks, the last one short (one segment and a bit)
SLOT = MIB + (MIB // SEGMENT_SIZE) * OVERHEAD  # from one sealed block to the next
STRIDE = SEGMENT_SIZE + OVERHEAD  # from one sealed segment to the next
DATA = pattern(SIZE, 3)
SMALL = {"tiny.bin": pattern(900, 1), "edge.bin": pattern(16 * 1024, 2)}  # kept in memory
SMALL["over.bin"] = pattern(16 * 1024 + 1, 4)  # one byte too many to be kept in memory


@pytest.fixture
def gateway(moto_server: MotoServer, fault_proxy: FaultProxy, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(moto_server, fault_proxy, tmp_path)
    gw.put("big.bin", DATA)
    for name, data in SMALL.items():
        gw.put(name, data)
    yield gw
    gw.stop()


def sealed_server(gateway: Gateway) -> ServerProcess:
    return gateway.start("--cache-encrypt", "--cache-readahead", "0", "--cache-revalidate", "1h")


def range_answer(srv: ServerProcess, path: str, data: bytes, start: int, end: int) -> None:
    """bytes=start-end (inclusive) is answered with exactly those bytes."""
    r = srv.get(path, {"Range": f"bytes={start}-{end}"})
    assert r.status == 206 and r.whole, (start, end, r.status)
    assert r.header("content-range") == f"bytes {start}-{end}/{len(data)}"
    assert r.body == data[start : end + 1], (start, end)


def the_entry(gateway: Gateway, key: str) -> Path:
    """The entry directory of `key` (named by HMAC under the cache key)."""
    cipher = BlockCipher((gateway.base / "state" / "cache.key").read_bytes())
    entry_id = cipher.entry_id(f"s3://{gateway.bucket}", key)
    (path,) = [p for p in entry_dirs(gateway.cache) if p.name == entry_id]
    return path


# -- small objects: opened once, answered from memory ----------------------------------------


def test_every_answer_for_a_small_encrypted_object_is_exact(gateway: Gateway) -> None:
    srv = sealed_server(gateway)
    for name, data in SMALL.items():
        path, size = "/" + name, len(data)
        for _ in range(3):  # cold, then warm: opened once and kept, then the answer kept too
            assert_serves_whole(srv, name, data)
        head = srv.request("HEAD", path)
        assert head.status == 200 and head.body == b""
        assert head.header("content-length") == str(size)
        etag = head.header("etag")
        assert etag
        assert srv.get(path, {"If-None-Match": etag}).status == 304
        assert srv.get(path, {"If-None-Match": '"other"'}).body == data
        assert srv.get(path, {"If-Match": '"other"'}).status == 412
        assert srv.get(path, {"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"}).status == 304
        for start, end in ((0, 0), (10, 19), (size - 1, size - 1), (0, size - 1), (7, size - 2)):
            range_answer(srv, path, data, start, end)
        suffix = srv.get(path, {"Range": "bytes=-5"})
        assert suffix.status == 206 and suffix.body == data[-5:]
        assert srv.get(path, {"Range": f"bytes={size}-"}).status == 416
        resumed = srv.get(path, {"Range": "bytes=100-", "If-Range": etag})
        assert resumed.status == 206 and resumed.body == data[100:]
        changed = srv.get(path, {"Range": "bytes=100-", "If-Range": '"other"'})
        assert changed.status == 200 and changed.body == data
        multi = srv.get(path, {"Range": "bytes=0-9,500-599,-3"})
        assert multi.status == 206
        parts = parse_multipart(multi.body, multi.header("content-type") or "")
        assert [payload for _, _, payload in parts] == [data[:10], data[500:600], data[-3:]]


def test_a_small_object_kept_in_memory_is_never_read_again(gateway: Gateway) -> None:
    """Once opened and checked, the bytes are answered from memory: a byte flipped on disk
    afterwards changes nothing and costs no fetch (read from disk, it would fail its check
    and be fetched again). A small object too large to keep is read, and healed, each time."""
    srv = sealed_server(gateway)
    for name, data in SMALL.items():
        for _ in range(2):
            assert_serves_whole(srv, name, data)
        flip_byte(the_entry(gateway, name) / "data", 12 + 40)  # in the first segment's ciphertext
    gateway.proxy.reset_counters()
    for name, data in SMALL.items():
        assert_serves_whole(srv, name, data)
        range_answer(srv, "/" + name, data, 5, 104)
    assert gateway.proxy.count("GET") == 1  # over.bin only: its block failed and was refetched
    assert gateway.fetched_ranges() == [(0, len(SMALL["over.bin"]) - 1)]


def test_a_small_object_whose_block_fails_its_check_is_fetched_again_not_kept(
    gateway: Gateway,
) -> None:
    srv = sealed_server(gateway)
    assert_serves_whole(srv, "tiny.bin", SMALL["tiny.bin"])  # cached, not yet kept in memory
    srv.stop()
    flip_byte(the_entry(gateway, "tiny.bin") / "data", 100)
    srv = sealed_server(gateway)  # a new worker: nothing in memory
    gateway.proxy.reset_counters()
    for _ in range(3):
        assert_serves_whole(srv, "tiny.bin", SMALL["tiny.bin"])
    assert gateway.fetched_ranges() == [(0, 899)]  # fetched again once, then kept


# -- ranges: only the segments they cover ----------------------------------------------------


def near_boundaries() -> st.SearchStrategy[int]:
    """An offset of the object, often a few bytes either side of a segment or block edge."""
    edges = st.builds(
        lambda n, d: min(max(n * SEGMENT_SIZE + d, 0), SIZE - 1),
        st.integers(0, SIZE // SEGMENT_SIZE),
        st.integers(-3, 3),
    )
    return st.one_of(st.integers(0, SIZE - 1), edges)


@pytest.fixture
def warm_server(gateway: Gateway) -> ServerProcess:
    srv = sealed_server(gateway)
    assert_serves_whole(srv, "big.bin", DATA)
    return srv


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=near_boundaries(), last=near_boundaries())
def test_every_range_of_an_encrypted_object_is_exact(
    warm_server: ServerProcess, first: int, last: int
) -> None:
    first, last = min(first, last), max(first, last)
    range_answer(warm_server, "/big.bin", DATA, first, last)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(near_boundaries(), st.integers(0, 200_000)), min_size=2, max_size=4))
def test_every_multipart_answer_of_an_encrypted_object_is_exact(
    warm_server: ServerProcess, ranges: list[tuple[int, int]]
) -> None:
    spans = [(start, min(start + length, SIZE - 1)) for start, length in ranges]
    header = "bytes=" + ",".join(f"{a}-{b}" for a, b in spans)
    r = warm_server.get("/big.bin", {"Range": header})
    assert r.status in (200, 206) and r.whole
    if r.status == 200:  # ranges adding up to more than the object: the whole of it
        assert r.body == DATA
        return
    parts = parse_multipart(r.body, r.header("content-type") or "")
    for _, content_range, payload in parts:
        match = re.fullmatch(rf"bytes (\d+)-(\d+)/{SIZE}", content_range)
        assert match, content_range
        start, end = map(int, match.groups())
        assert payload == DATA[start : end + 1]


def test_a_tampered_segment_costs_its_block_only_when_a_range_needs_it(gateway: Gateway) -> None:
    srv = sealed_server(gateway)
    assert_serves_whole(srv, "big.bin", DATA)
    data_file = the_entry(gateway, "big.bin") / "data"
    flip_byte(data_file, SLOT + 5 * STRIDE + 1000)  # block 1, segment 5
    gateway.proxy.reset_counters()
    range_answer(srv, "/big.bin", DATA, MIB + 2 * SEGMENT_SIZE, MIB + 3 * SEGMENT_SIZE + 99)
    assert gateway.fetched_ranges() == []  # segments 2 and 3 opened: the flip is not seen
    range_answer(srv, "/big.bin", DATA, MIB + 5 * SEGMENT_SIZE + 10, MIB + 5 * SEGMENT_SIZE + 20)
    assert gateway.fetched_blocks() == [1]  # caught: block 1 fetched again
    assert_serves_whole(srv, "big.bin", DATA)
    assert gateway.fetched_blocks() == [1]


def test_swapped_or_truncated_segments_are_fetched_again(gateway: Gateway) -> None:
    srv = sealed_server(gateway)
    assert_serves_whole(srv, "big.bin", DATA)
    data_file = the_entry(gateway, "big.bin") / "data"
    raw = data_file.read_bytes()
    at = 2 * SLOT + 7 * STRIDE  # block 2, segments 7 and 8 change places
    with open(data_file, "r+b") as handle:
        handle.seek(at)
        handle.write(raw[at + STRIDE : at + 2 * STRIDE] + raw[at : at + STRIDE])
    os.truncate(data_file, 3 * SLOT + 100)  # the last block (one segment and a bit) cut short
    gateway.proxy.reset_counters()
    range_answer(srv, "/big.bin", DATA, 2 * MIB + 8 * SEGMENT_SIZE, 2 * MIB + 8 * SEGMENT_SIZE)
    range_answer(srv, "/big.bin", DATA, SIZE - 10, SIZE - 1)
    assert sorted(gateway.fetched_blocks()) == [2, 3]
    assert_serves_whole(srv, "big.bin", DATA)
    assert sorted(gateway.fetched_blocks()) == [2, 3]


def test_streamed_answers_keep_their_connection_after_cut_transfers(gateway: Gateway) -> None:
    """An encrypted object is streamed. Clients that leave in the middle of whole
    answers must not cost the next clients their keep-alive connections (in the compiled
    request path, a cut stream once made every later streamed answer end its connection)."""
    srv = sealed_server(gateway)
    assert_serves_whole(srv, "big.bin", DATA)
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as cut:
            cut.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert cut.recv(4096).startswith(b"HTTP/1.1 200")
            cut.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    assert_serves_whole(srv, "big.bin", DATA)  # the server took note of the cuts meanwhile
    with srv.connect() as conn:
        for start in (5, MIB - 10, 2 * MIB + 1):
            r = conn.get("/big.bin", {"Range": f"bytes={start}-{start + 99}"})
            assert r.status == 206 and r.body == DATA[start : start + 100]
        r = conn.get("/big.bin")
        assert r.status == 200 and r.body == DATA


# -- the layout before segments --------------------------------------------------------------


def test_an_entry_of_the_layout_before_segments_is_fetched_again_not_misread(
    gateway: Gateway,
) -> None:
    """An entry as ferryman wrote it before sealed segments (one seal per block, meta
    without a segment size), under the same key, holding other bytes than the object: it
    is dropped and the object fetched again, never served."""
    srv = sealed_server(gateway)
    assert_serves_whole(srv, "big.bin", DATA)
    srv.stop()
    cipher = BlockCipher((gateway.base / "state" / "cache.key").read_bytes())
    entry = the_entry(gateway, "big.bin")
    entry_id = entry.name.encode()
    meta = json.loads(cipher.open((entry / "meta").read_bytes(), b"meta" + entry_id))
    etag = meta.pop("segment_size") and meta["etag"].encode()
    (entry / "meta").write_bytes(cipher.seal(json.dumps(meta).encode(), b"meta" + entry_id))
    wrong = pattern(SIZE, 99)
    with open(entry / "data", "wb") as handle:
        for index in range(4):
            plain = wrong[index * MIB : (index + 1) * MIB]
            handle.seek(index * (MIB + OVERHEAD))
            handle.write(cipher.seal(plain, b"%s\0%s\0%d" % (entry_id, etag, index)))
    (entry / "map").write_bytes(b"\x01" * 4)

    srv = sealed_server(gateway)
    gateway.proxy.reset_counters()
    assert_serves_whole(srv, "big.bin", DATA)
    assert sorted(gateway.fetched_blocks()) == [0, 1, 2, 3]
    assert "layout before sealed segments" in srv.log_text()

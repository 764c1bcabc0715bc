"""S3Store against a real moto S3 server, directly and through the fault proxy.

Objects are self-identifying pattern bytes (tests/conftest.py), so a byte
from the wrong offset shows. Every failure test asserts the exact StoreError
kind: no botocore or aiohttp exception may come out of the store.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.config import Config
from ferryman.errors import ConfigError
from ferryman.http.spans import Span
from ferryman.stores import s3
from ferryman.stores.base import (
    AccessDenied,
    ListEntry,
    NotFound,
    PreconditionFailed,
    StoreError,
    Throttled,
    Truncated,
    Unavailable,
)
from ferryman.stores.s3 import S3Store
from ferryman.stores.s3errors import store_error
from ferryman.stores.s3source import parse_source
from tests.faultproxy import FaultProxy, Rule
from tests.s3server import ACCESS_KEY, SECRET_KEY, MotoServer
from tests.serverproc import pattern, wait_until

T = TypeVar("T")
MIB = 1024 * 1024
CREDENTIALS = (ACCESS_KEY, SECRET_KEY, None)


def make_store(endpoint: str, bucket: str, prefix: str = "", **kw: Any) -> S3Store:
    return S3Store(bucket, prefix, endpoint=endpoint, credentials=CREDENTIALS, **kw)


async def with_store(store: S3Store, use: Callable[[S3Store], Awaitable[T]]) -> T:
    try:
        return await use(store)
    finally:
        await store.close()


def use_store(endpoint: str, bucket: str, use: Callable[[S3Store], Awaitable[T]], **kw: Any) -> T:
    """Run `use(store)` on a fresh loop with a store that is closed afterwards."""
    return asyncio.run(with_store(make_store(endpoint, bucket, **kw), use))


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def entries(store: S3Store, prefix: str) -> list[ListEntry]:
    return [entry async for entry in store.list(prefix)]


E = TypeVar("E", bound=StoreError)


def raises(
    kind: type[E], use: Callable[[S3Store], Awaitable[Any]], endpoint: str, bucket: str
) -> E:
    """The store error `use` raised; fails unless it is exactly of `kind`'s family."""
    with pytest.raises(StoreError) as caught:
        use_store(endpoint, bucket, use)
    error = caught.value
    assert isinstance(error, kind), repr(error)
    return error


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://my-bucket.v2/a/b/", ("my-bucket.v2", "a/b")),
        ("s3://abc/prefix", ("abc", "prefix")),
    ],
)
def test_parse_source(url: str, expected: tuple[str, str]) -> None:
    assert parse_source(url) == expected


@pytest.mark.parametrize(
    "url",
    ["bucket", "s3://", "s3://Bucket", "s3://ab", "s3://-ab", "s3://a_b", "s3://a..b",
     "s3://192.168.1.1", "s3://" + "a" * 64, "s3://bucket/a//b", "http://bucket"],
)  # fmt: skip
def test_parse_source_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_source(url)


BUCKETS = st.from_regex(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", fullmatch=True)
SEGMENTS = st.lists(st.text(st.characters(blacklist_characters="/"), min_size=1), max_size=4)


@given(bucket=BUCKETS, segments=SEGMENTS, slash=st.booleans())
def test_parse_source_keeps_any_prefix(bucket: str, segments: list[str], slash: bool) -> None:
    prefix = "/".join(segments)
    url = f"s3://{bucket}/{prefix}" + ("/" if slash and prefix else "")
    assert parse_source(url) == (bucket, prefix)


@given(bucket=BUCKETS, bad=st.sampled_from(["A", "_", " ", "\n", "..", "/"]), at=st.integers(0, 63))
def test_parse_source_refuses_a_bad_character_anywhere(bucket: str, bad: str, at: int) -> None:
    name = bucket[:at] + bad + bucket[at:]
    if bad == "/":
        name = "/" + name  # an empty bucket name
    with pytest.raises(ConfigError):
        parse_source(f"s3://{name}")


def test_from_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    config = Config(
        source="s3://media/videos/",
        s3_endpoint="http://127.0.0.1:9",
        s3_multipart_threshold=8 * MIB,
        s3_part_size=6 * MIB,
    )
    store = S3Store.from_config(config)
    assert (store.bucket, store.prefix, store.endpoint) == ("media", "videos", "http://127.0.0.1:9")
    assert store.region == "eu-west-3"
    assert (store.multipart_threshold, store.part_size) == (8 * MIB, 6 * MIB)
    assert store.description == "s3://media/videos at http://127.0.0.1:9"
    for endpoint in ("127.0.0.1:9000", "ftp://host", "http://"):
        with pytest.raises(ConfigError):
            S3Store.from_config(Config(source="s3://media", s3_endpoint=endpoint))
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert S3Store.from_config(config).region == "us-east-1"


# -- stat and read -------------------------------------------------------------------


def test_stat_reports_size_etag_time_digest_and_type(
    moto_server: MotoServer, s3_bucket: str
) -> None:
    data = pattern(1000)
    digest = hashlib.sha256(data).hexdigest()
    before = int(time.time()) - 5
    moto_server.put_object(
        s3_bucket, "dir/a.txt", data, {"x-amz-meta-sha256": digest, "Content-Type": "text/plain"}
    )
    moto_server.put_object(s3_bucket, "plain.bin", b"x")
    info = use_store(moto_server.url, s3_bucket, lambda store: store.stat("dir/a.txt"))
    assert info.key == "dir/a.txt"
    assert info.size == 1000
    assert info.etag == '"' + hashlib.md5(data).hexdigest() + '"'  # S3's ETag of a single PUT
    assert before <= info.last_modified <= int(time.time()) + 5
    assert info.sha256 == digest
    assert info.content_type == "text/plain"
    plain = use_store(moto_server.url, s3_bucket, lambda store: store.stat("plain.bin"))
    assert (plain.size, plain.sha256) == (1, None)


READ_RANGES = [(0, 1), (0, 16), (15, 17), (4095, 4096 + 70_000), (1_000_000, 1_000_001),
               (3 * MIB - 5, 3 * MIB + 5), (0, 3 * MIB + 7),
               (3 * MIB + 6, 3 * MIB + 7)]  # fmt: skip


def test_reads_are_byte_exact_at_every_offset(moto_server: MotoServer, s3_bucket: str) -> None:
    size = 3 * MIB + 7
    moto_server.put_object(s3_bucket, "p.bin", pattern(size))

    async def read_all(store: S3Store) -> list[tuple[bytes, list[int]]]:
        results = []
        for start, end in READ_RANGES:
            chunks = [chunk async for chunk in store.read("p.bin", start, end)]
            results.append((b"".join(chunks), [len(c) for c in chunks]))
        return results

    for (start, end), (data, sizes) in zip(
        READ_RANGES, use_store(moto_server.url, s3_bucket, read_all), strict=True
    ):
        assert data == pattern(end - start, start), (start, end)
        assert all(0 < n <= s3.READ_CHUNK for n in sizes)


def test_empty_range_sends_nothing(
    moto_endpoint: str, s3_bucket: str, fault_proxy: FaultProxy
) -> None:
    data = use_store(fault_proxy.url, s3_bucket, lambda store: collect(store.read("absent", 7, 7)))
    assert data == b""
    assert fault_proxy.count() == 0


def test_keys_are_relative_to_the_prefix(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.put_object(s3_bucket, "top/sub/f.txt", b"inside")
    moto_server.put_object(s3_bucket, "f.txt", b"outside")

    async def use(store: S3Store) -> tuple[bytes, list[ListEntry]]:
        return await collect(store.read("sub/f.txt", 0, 6)), await entries(store, "")

    data, listing = use_store(moto_server.url, s3_bucket, use, prefix="top")
    assert data == b"inside"
    assert listing == [ListEntry("sub", is_dir=True)]


def test_if_match_pins_one_version(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.put_object(s3_bucket, "v", pattern(100))

    async def use(store: S3Store) -> None:
        first = await store.stat("v")
        assert await collect(store.read("v", 10, 20, if_match=first.etag)) == pattern(10, 10)
        moto_server.put_object(s3_bucket, "v", pattern(100, 1))
        with pytest.raises(PreconditionFailed):
            await collect(store.read("v", 10, 20, if_match=first.etag))
        second = await store.stat("v")
        assert await collect(store.read("v", 10, 20, if_match=second.etag)) == pattern(10, 11)

    use_store(moto_server.url, s3_bucket, use)


def test_a_range_past_the_end_is_truncated(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.put_object(s3_bucket, "short", pattern(100))
    raises(
        Truncated, lambda store: collect(store.read("short", 90, 110)), moto_server.url, s3_bucket
    )
    raises(
        Truncated, lambda store: collect(store.read("short", 100, 110)), moto_server.url, s3_bucket
    )


def test_missing_objects_and_buckets_are_not_found(moto_endpoint: str, s3_bucket: str) -> None:
    raises(NotFound, lambda store: store.stat("nope"), moto_endpoint, s3_bucket)
    raises(NotFound, lambda store: collect(store.read("nope", 0, 10)), moto_endpoint, s3_bucket)
    raises(NotFound, lambda store: store.stat("x"), moto_endpoint, "no-such-bucket-here")
    raises(NotFound, lambda store: entries(store, ""), moto_endpoint, "no-such-bucket-here")


# -- list ----------------------------------------------------------------------------


def test_list_one_level_in_key_order(moto_server: MotoServer, s3_bucket: str) -> None:
    for key in ["d/b.txt", "d/a.txt", "d/sub/x", "d/sub.txt", "d/sub/deeper/y", "d/", "d//odd",
                "d/z/", "e/other", "top.txt"]:  # fmt: skip
        moto_server.put_object(s3_bucket, key, pattern(len(key)))
    listing = use_store(moto_server.url, s3_bucket, lambda store: entries(store, "d/"))
    names = [(e.name, e.is_dir) for e in listing]
    # "sub.txt" sorts before the directory "sub/" ('.' < '/'), as S3 orders keys;
    # the "d/" marker object and the empty-named "d//" prefix are left out.
    assert names == [
        ("a.txt", False),
        ("b.txt", False),
        ("sub.txt", False),
        ("sub", True),
        ("z", True),
    ]
    files = {e.name: e for e in listing if not e.is_dir}
    assert files["sub.txt"].size == len("d/sub.txt")
    assert files["a.txt"].last_modified is not None
    root = use_store(moto_server.url, s3_bucket, lambda store: entries(store, ""))
    assert [(e.name, e.is_dir) for e in root] == [("d", True), ("e", True), ("top.txt", False)]


def test_list_follows_every_page(moto_server: MotoServer, s3_bucket: str) -> None:
    keys = [f"many/f{i:03d}" for i in range(23)] + [f"many/d{i:02d}/x" for i in range(9)]
    for key in keys:
        moto_server.put_object(s3_bucket, key, b"")
    whole = use_store(moto_server.url, s3_bucket, lambda store: entries(store, "many/"))
    assert len(whole) == 32
    for page in (1, 4, 7):
        paged = use_store(
            moto_server.url, s3_bucket, lambda store: entries(store, "many/"), list_page=page
        )
        assert paged == whole, page
    assert [e.name for e in whole] == [f"d{i:02d}" for i in range(9)] + [
        f"f{i:03d}" for i in range(23)
    ]


# -- upload and delete -----------------------------------------------------------------


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Callable[[bytes], int]]:
    """Write bytes to a file and return a read descriptor, closed after the test."""
    fds: list[int] = []

    def make(data: bytes) -> int:
        path = tmp_path / f"spool{len(fds)}"
        path.write_bytes(data)
        fds.append(os.open(path, os.O_RDONLY))
        return fds[-1]

    yield make
    for fd in fds:
        os.close(fd)


def test_small_upload_sends_its_digest(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultProxy, spool: Callable[[bytes], int]
) -> None:
    for size in (0, 1, 100_000):
        data = pattern(size, 3)
        digest = hashlib.sha256(data).digest()
        key = f"up/{size}.bin"
        fd = spool(data)
        fault_proxy.reset_counters()
        use_store(
            fault_proxy.url,
            s3_bucket,
            lambda store: store.upload(key, fd, size, digest, "application/x-test"),  # noqa: B023
        )
        [put] = fault_proxy.log
        # moto does not check the checksum (a real S3 does): see that it was sent.
        assert put.by_name["x-amz-checksum-sha256"] == base64.b64encode(digest).decode()
        assert moto_server.get_object(s3_bucket, key) == (200, data)
        info = use_store(moto_server.url, s3_bucket, lambda store: store.stat(key))  # noqa: B023
        assert (info.size, info.sha256, info.content_type) == (
            size,
            digest.hex(),
            "application/x-test",
        )


def test_multipart_upload_checksums_each_part(
    moto_endpoint: str,
    moto_server: MotoServer,
    s3_bucket: str,
    fault_proxy: FaultProxy,
    spool: Callable[[bytes], int],
) -> None:
    size = 11 * MIB + 3
    data = pattern(size)
    digest = hashlib.sha256(data).digest()
    fd = spool(data)
    use_store(
        fault_proxy.url,
        s3_bucket,
        lambda store: store.upload("big.bin", fd, size, digest),
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    assert moto_server.get_object(s3_bucket, "big.bin") == (200, data)
    parts = [r for r in fault_proxy.log if r.method == "PUT"]
    assert len(parts) == 3
    for request in parts:
        number = int(request.target.split("partNumber=")[1].split("&")[0])
        piece = data[(number - 1) * 5 * MIB : number * 5 * MIB]
        sent = request.by_name["x-amz-checksum-sha256"]
        assert sent == base64.b64encode(hashlib.sha256(piece).digest()).decode()
    assert fault_proxy.count("POST") == 2  # create and complete
    info = use_store(moto_endpoint, s3_bucket, lambda store: store.stat("big.bin"))
    assert (info.size, info.sha256) == (size, digest.hex())


def test_part_size_grows_to_stay_within_the_part_limit(
    moto_server: MotoServer,
    s3_bucket: str,
    fault_proxy: FaultProxy,
    spool: Callable[[bytes], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(s3, "MAX_PARTS", 2)  # S3's is 10,000
    size = 11 * MIB
    data = pattern(size)
    fd = spool(data)
    use_store(
        fault_proxy.url,
        s3_bucket,
        lambda store: store.upload("two-parts", fd, size, hashlib.sha256(data).digest()),
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    assert [int(r.by_name["content-length"]) for r in fault_proxy.log if r.method == "PUT"] == [
        size // 2,
        size // 2,
    ]
    assert moto_server.get_object(s3_bucket, "two-parts") == (200, data)


def test_a_lost_part_is_retried(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultProxy, spool: Callable[[bytes], int]
) -> None:
    size = 10 * MIB + 1
    data = pattern(size)
    fault_proxy.add(Rule(method="PUT", path="partNumber=2", times=1, no_answer=True))
    fd = spool(data)
    use_store(
        fault_proxy.url,
        s3_bucket,
        lambda store: store.upload("retried", fd, size, hashlib.sha256(data).digest()),
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    assert fault_proxy.count("PUT") == 4
    assert moto_server.get_object(s3_bucket, "retried") == (200, data)


def test_a_failed_multipart_upload_is_aborted(
    moto_server: MotoServer,
    s3_bucket: str,
    fault_proxy: FaultProxy,
    spool: Callable[[bytes], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(s3, "PART_ATTEMPTS", 1)
    size = 15 * MIB
    fault_proxy.add(Rule(method="PUT", path="partNumber=3", times=None, slow_down=True))
    fd = spool(pattern(size))
    with pytest.raises(Throttled):
        use_store(
            fault_proxy.url,
            s3_bucket,
            lambda store: store.upload("aborted", fd, size, b"\0" * 32),
            multipart_threshold=5 * MIB,
            part_size=5 * MIB,
        )
    assert fault_proxy.count("DELETE") == 1  # AbortMultipartUpload
    status, listing = moto_server.request("GET", f"/{s3_bucket}?uploads")
    assert status == 200
    assert b"<UploadId>" not in listing
    assert moto_server.get_object(s3_bucket, "aborted")[0] == 404


def test_a_dropped_put_body_is_only_seen_by_reading_back(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultProxy, spool: Callable[[bytes], int]
) -> None:
    # moto does not check x-amz-checksum-sha256, so an emptied body is "stored":
    # the store reports what S3 answered, and only stat() shows the damage.
    data = pattern(5000)
    fault_proxy.add(Rule(method="PUT", empty_body=True))
    fd = spool(data)
    use_store(
        fault_proxy.url,
        s3_bucket,
        lambda store: store.upload("empty", fd, 5000, hashlib.sha256(data).digest()),
    )
    info = use_store(moto_server.url, s3_bucket, lambda store: store.stat("empty"))
    assert info.size == 0
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_upload_of_a_short_file_fails_before_sending(
    moto_endpoint: str, s3_bucket: str, fault_proxy: FaultProxy, spool: Callable[[bytes], int]
) -> None:
    fd = spool(b"only ten b")
    raises(
        Truncated, lambda store: store.upload("k", fd, 11, b"\0" * 32), fault_proxy.url, s3_bucket
    )
    assert fault_proxy.count("PUT") == 0


def test_file_window_reads_only_its_region(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(pattern(1000))
    fd = os.open(path, os.O_RDONLY)
    try:
        window = s3.FileWindow(fd, 100, 300)
        assert window.read(50) == pattern(50, 100)
        assert window.tell() == 50
        assert window.read() == pattern(250, 150)
        assert window.read(10) == b""
        assert window.seek(-10, os.SEEK_END) == 290
        assert window.read() == pattern(10, 390)
        window.seek(0)
        assert window.read(1) == pattern(1, 100)
        beyond = s3.FileWindow(fd, 900, 200)  # the file ends 100 bytes into it
        assert beyond.read(100) == pattern(100, 900)
        with pytest.raises(OSError):
            beyond.read(100)
        window.close()
        os.fstat(fd)  # the descriptor is still the caller's, still open
    finally:
        os.close(fd)


def test_delete(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.put_object(s3_bucket, "gone", b"x")
    use_store(moto_server.url, s3_bucket, lambda store: store.delete("gone"))
    assert moto_server.get_object(s3_bucket, "gone")[0] == 404
    use_store(moto_server.url, s3_bucket, lambda store: store.delete("gone"))  # absent: no error


@pytest.mark.parametrize(
    ("answer", "start", "end", "error"),
    [
        ({"ContentLength": 20}, 0, 20, None),  # a 200 that is exactly the range: right
        ({"ContentLength": 100}, 10, 20, Unavailable),  # the Range was ignored
        ({"ContentLength": 100}, 0, 20, Unavailable),  # a 200 with more than asked
        ({"ContentRange": "bytes 0-9/100"}, 10, 20, Unavailable),  # other bytes
        ({"ContentRange": "bytes 10-15/16"}, 10, 20, Truncated),  # the object ends first
        ({"ContentRange": "bytes 10-19/*"}, 10, 20, None),
        ({"ContentRange": "junk"}, 10, 20, Unavailable),
        ({"ContentRange": "bytes 10-19/15"}, 10, 20, Unavailable),  # past its own size
        ({"ContentRange": "bytes 10-\u0661\u0669/100"}, 10, 20, Unavailable),  # not ASCII digits
    ],
)
def test_an_answer_for_other_bytes_than_asked_is_refused(
    answer: dict[str, object], start: int, end: int, error: type[Exception] | None
) -> None:
    if error is None:
        s3._check_range("k", answer, Span(start, end))
    else:
        with pytest.raises(error):
            s3._check_range("k", answer, Span(start, end))


# -- failures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_moto() -> Iterator[MotoServer]:
    """A moto server that checks credentials: ferryman's test keys are unknown to it."""
    with MotoServer(auth=True) as server:
        yield server


def test_bad_credentials_are_access_denied(
    auth_moto: MotoServer, spool: Callable[[bytes], int]
) -> None:
    bucket = "any-bucket"
    fd = spool(b"data")
    raises(AccessDenied, lambda store: store.stat("k"), auth_moto.url, bucket)
    raises(AccessDenied, lambda store: collect(store.read("k", 0, 4)), auth_moto.url, bucket)
    raises(AccessDenied, lambda store: entries(store, ""), auth_moto.url, bucket)
    raises(AccessDenied, lambda store: store.upload("k", fd, 4, b"\0" * 32), auth_moto.url, bucket)


def test_slow_down_is_throttled_with_retry_after(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultProxy
) -> None:
    moto_server.put_object(s3_bucket, "k", pattern(100))
    fault_proxy.add(Rule(method="HEAD", slow_down=True))
    assert (
        raises(Throttled, lambda store: store.stat("k"), fault_proxy.url, s3_bucket).retry_after
        == 1
    )
    fault_proxy.add(Rule(method="GET", slow_down=True, retry_after=7))
    caught = raises(
        Throttled, lambda store: collect(store.read("k", 0, 10)), fault_proxy.url, s3_bucket
    )
    assert caught.retry_after == 7
    assert fault_proxy.count("GET") == 1  # no retry inside the library


def test_an_unreachable_endpoint_is_unavailable(s3_bucket: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        raises(Unavailable, lambda store: store.stat("k"), endpoint, s3_bucket)
        raises(Unavailable, lambda store: collect(store.read("k", 0, 1)), endpoint, s3_bucket)


def test_a_silent_store_is_unavailable(
    moto_server: MotoServer,
    s3_bucket: str,
    fault_proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(s3, "READ_TIMEOUT", 0.3)
    moto_server.put_object(s3_bucket, "k", b"x")
    fault_proxy.add(Rule(method="HEAD", latency=3.0))
    raises(Unavailable, lambda store: store.stat("k"), fault_proxy.url, s3_bucket)


@pytest.mark.parametrize("fault", ["truncate_after", "reset_after"])
def test_a_cut_body_is_truncated(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultProxy, fault: str
) -> None:
    size = 2 * MIB
    moto_server.put_object(s3_bucket, "cut", pattern(size))
    if fault == "reset_after":
        fault_proxy.add(Rule(method="GET", reset_after=300_000))
    else:
        fault_proxy.add(Rule(method="GET", truncate_after=300_000))
    received: list[bytes] = []

    async def use(store: S3Store) -> None:
        async for chunk in store.read("cut", 0, size):
            received.append(chunk)

    error = raises(StoreError, use, fault_proxy.url, s3_bucket)
    # A reset may also lose bytes already on the wire; either way, never a quiet end.
    assert isinstance(error, Truncated), repr(error)
    data = b"".join(received)
    assert len(data) <= 300_000
    assert data == pattern(len(data))


def test_closing_the_reader_stops_the_transfer(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultProxy
) -> None:
    size = 48 * MIB
    moto_server.put_object(s3_bucket, "huge", pattern(size))

    async def use(store: S3Store) -> bytes:
        reader = store.read("huge", 0, size)
        assert isinstance(reader, AsyncGenerator)  # to be closed before its end
        first: bytes = await anext(reader)
        await reader.aclose()
        return first

    first = use_store(fault_proxy.url, s3_bucket, use)
    assert first == pattern(len(first))
    assert wait_until(lambda: fault_proxy.aborted == 1, timeout=10)
    assert fault_proxy.bytes_out < size // 2


def test_cancelling_the_consumer_stops_the_transfer(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultProxy
) -> None:
    size = 48 * MIB
    moto_server.put_object(s3_bucket, "huge2", pattern(size))

    async def use(store: S3Store) -> None:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in store.read("huge2", 0, size):
                started.set()
                await asyncio.Event().wait()  # a client that stopped reading

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    use_store(fault_proxy.url, s3_bucket, use)
    assert wait_until(lambda: fault_proxy.aborted == 1, timeout=10)
    assert fault_proxy.bytes_out < size // 2


# -- the translation itself, for answers moto does not give ---------------------------------


def client_error(status: int, code: str, headers: dict[str, str] | None = None) -> Exception:
    from botocore.exceptions import ClientError  # type: ignore[import-untyped]

    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    error: Exception = ClientError(response, "GetObject")
    return error


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [(404, "NoSuchKey", NotFound), (404, "NoSuchBucket", NotFound), (404, "404", NotFound),
     (403, "AccessDenied", AccessDenied), (403, "SignatureDoesNotMatch", AccessDenied),
     (412, "PreconditionFailed", PreconditionFailed), (503, "SlowDown", Throttled),
     (503, "503", Throttled), (429, "TooManyRequests", Throttled), (400, "BadDigest", Truncated),
     (400, "IncompleteBody", Truncated), (416, "InvalidRange", Truncated),
     (500, "InternalError", Unavailable), (502, "502", Unavailable),
     (400, "InvalidArgument", Unavailable)],
)  # fmt: skip
def test_store_error_by_code_and_status(status: int, code: str, kind: type[StoreError]) -> None:
    error = store_error(client_error(status, code), "k")
    assert type(error) is kind
    assert code in error.detail


def test_retry_after_is_read_and_bounded() -> None:
    def retry_after(value: str) -> int:
        error = store_error(client_error(503, "SlowDown", {"retry-after": value}), "k")
        assert isinstance(error, Throttled)
        return error.retry_after

    assert [retry_after(v) for v in ("5", "0", "", "soon", "999999")] == [5, 1, 1, 1, 3600]

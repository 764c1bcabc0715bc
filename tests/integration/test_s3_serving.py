"""ferryman serving an S3 bucket (moto's server, a real endpoint), without the cache.

Objects are pattern bytes, so every byte served names its own offset; each
answer is compared byte for byte with the object.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, pattern
from tests.rawhttp import RawResponse
from tests.s3server import MotoServer, s3_env

WRITE = "w-token-0123456789"
BIG = 3 * 1024 * 1024 + 5


@pytest.fixture(scope="module")
def moto(moto_server: MotoServer) -> MotoServer:
    return moto_server


@pytest.fixture(scope="module")
def bucket(moto: MotoServer) -> str:
    name = moto.create_bucket()
    moto.put_object(name, "big.bin", pattern(BIG))
    moto.put_object(name, "hello.txt", b"hello, store\n")
    moto.put_object(name, "empty.bin", b"")
    moto.put_object(name, "docs/a.txt", b"a")
    moto.put_object(name, "docs/sub/b.txt", b"bb")
    moto.put_object(name, "site/index.html", b"<h1>site</h1>")
    moto.put_object(name, "odd name %.txt", b"odd")
    return name


@pytest.fixture(scope="module")
def served(moto: MotoServer, bucket: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    state = tmp_path_factory.mktemp("state")
    srv = ServerProcess(
        f"s3://{bucket}",  # type: ignore[arg-type]
        "--state-dir", str(state),
        env=s3_env(moto.url),
    )  # fmt: skip
    yield srv
    assert srv.stop() == 0, srv.log_text()


def get(srv: ServerProcess, path: str, **headers: str) -> RawResponse:
    with srv.connect() as conn:
        return conn.get(path, {k.replace("_", "-"): v for k, v in headers.items()})


def test_whole_objects_byte_exact(served: ServerProcess) -> None:
    big = get(served, "/big.bin")
    assert big.status == 200
    assert big.header("content-length") == str(BIG)
    assert hashlib.sha256(big.body).digest() == hashlib.sha256(pattern(BIG)).digest()
    assert big.header("accept-ranges") == "bytes"
    assert big.header(
        "etag",
    ).startswith('"')  # type: ignore[union-attr]
    assert get(served, "/hello.txt").body == b"hello, store\n"
    empty = get(served, "/empty.bin")
    assert (empty.status, empty.body, empty.header("content-length")) == (200, b"", "0")
    assert get(served, "/odd%20name%20%25.txt").body == b"odd"


def test_head_sends_headers_only(served: ServerProcess) -> None:
    with served.connect() as conn:
        head = conn.get("/big.bin", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.header("content-length") == str(BIG)
    assert head.header("last-modified")


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [("0-0", 0, 0), ("1000-1999", 1000, 1999), ("-100", BIG - 100, BIG - 1),
     (f"{BIG - 10}-", BIG - 10, BIG - 1), (f"2000000-{BIG * 2}", 2000000, BIG - 1)],
)  # fmt: skip
def test_single_ranges(served: ServerProcess, spec: str, start: int, end: int) -> None:
    answer = get(served, "/big.bin", Range=f"bytes={spec}")
    assert answer.status == 206
    assert answer.header("content-range") == f"bytes {start}-{end}/{BIG}"
    assert answer.body == pattern(end - start + 1, start)


def test_multiple_ranges(served: ServerProcess) -> None:
    answer = get(served, "/big.bin", Range="bytes=0-9,1048576-1048600,-5")
    assert answer.status == 206
    kind = answer.header("content-type") or ""
    assert kind.startswith("multipart/byteranges; boundary=")
    boundary = kind.split("boundary=")[1].encode()
    parts = answer.body.split(b"--" + boundary)[1:-1]
    expected = [(0, 9), (1048576, 1048600), (BIG - 5, BIG - 1)]
    assert len(parts) == len(expected)
    for part, (start, end) in zip(parts, expected, strict=True):
        head, _, data = part.partition(b"\r\n\r\n")
        assert f"Content-Range: bytes {start}-{end}/{BIG}".encode() in head
        assert data[:-2] == pattern(end - start + 1, start)


def test_preconditions_and_if_range(served: ServerProcess) -> None:
    etag = get(served, "/big.bin", Range="bytes=0-0").header("etag")
    assert etag
    assert get(served, "/big.bin", If_None_Match=etag).status == 304
    assert get(served, "/big.bin", If_Match='"other"').status == 412
    same = get(served, "/big.bin", Range="bytes=5-9", If_Range=etag)
    assert (same.status, same.body) == (206, pattern(5, 5))
    changed = get(served, "/big.bin", Range="bytes=5-9", If_Range='"old-version"')
    assert changed.status == 200 and len(changed.body) == BIG


def test_unsatisfiable_and_missing(served: ServerProcess) -> None:
    past = get(served, "/big.bin", Range=f"bytes={BIG}-")
    assert past.status == 416
    assert past.header("content-range") == f"bytes */{BIG}"
    missing = get(served, "/no-such-object")
    assert missing.status == 404
    assert json.loads(missing.body)["error"] == "not_found"
    assert get(served, "/.hidden").status == 404


def test_directories_list_and_redirect(served: ServerProcess) -> None:
    moved = get(served, "/docs")
    assert moved.status == 301 and moved.header("location") == "/docs/"
    asked = get(served, "/docs/sub?sort=name&x=%2F")  # the query goes along, as it is
    assert asked.status == 301 and asked.header("location") == "/docs/sub/?sort=name&x=%2F"
    listing = json.loads(get(served, "/docs/", Accept="application/json").body)
    names = [(e["name"], e["type"]) for e in listing["entries"]]
    assert names == [("sub", "directory"), ("a.txt", "file")]
    assert listing["entries"][1]["size"] == 1
    root = json.loads(get(served, "/", Accept="application/json").body)
    assert {e["name"] for e in root["entries"]} >= {"big.bin", "docs", "site", "hello.txt"}
    page = get(served, "/docs/")
    assert page.status == 200 and b'href="sub/"' in page.body
    assert get(served, "/site/").body == b"<h1>site</h1>"  # index.html stands for the prefix
    assert get(served, "/nothing-here/").status == 404


def test_prefix_listing_links_fetch_their_objects(
    served: ServerProcess, moto: MotoServer, bucket: str
) -> None:
    with served.connect() as conn:
        doc = json.loads(conn.get("/", {"Accept": "application/json"}).body.decode("utf-8"))
        for entry in doc["entries"]:
            got = conn.get("/" + entry["href"])
            assert got.status == 200, entry
            if entry["type"] == "file":
                assert got.body == moto.get_object(bucket, entry["name"])[1]
    hrefs = {e["name"]: e["href"] for e in doc["entries"]}
    assert hrefs["odd name %.txt"] == "odd%20name%20%25.txt" and hrefs["docs"] == "docs/"


def test_listing_follows_every_page(moto: MotoServer, tmp_path: Path) -> None:
    """More keys than one ListObjectsV2 page (1,000) are all listed."""
    name = moto.create_bucket()
    count = 1005
    for i in range(count):
        moto.put_object(name, f"many/k{i:05d}", b"x")
    srv = ServerProcess(f"s3://{name}", "--state-dir", str(tmp_path), env=s3_env(moto.url))  # type: ignore[arg-type]
    try:
        listing = json.loads(get(srv, "/many/", Accept="application/json").body)
        rest = json.loads(get(srv, listing["next"], Accept="application/json").body)
    finally:
        srv.stop()
    names = [e["name"] for e in listing["entries"] + rest["entries"]]
    assert names == [f"k{i:05d}" for i in range(count)] and rest["next"] is None


def test_prefix_is_the_root(moto: MotoServer, bucket: str, tmp_path: Path) -> None:
    srv = ServerProcess(f"s3://{bucket}/docs", "--state-dir", str(tmp_path), env=s3_env(moto.url))  # type: ignore[arg-type]
    try:
        assert get(srv, "/a.txt").body == b"a"
        assert get(srv, "/sub/b.txt").body == b"bb"
        assert get(srv, "/hello.txt").status == 404  # outside the prefix
    finally:
        srv.stop()


# -- writes ------------------------------------------------------------------------------


@pytest.fixture
def writable(moto: MotoServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    name = moto.create_bucket()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    state = tmp_path / "state"
    srv = ServerProcess(
        f"s3://{name}",  # type: ignore[arg-type]
        "--state-dir", str(state), "--allow-write", "--tokens", str(tokens),
        env=s3_env(moto.url),
    )  # fmt: skip
    yield srv, name, state
    srv.stop()


def put(srv: ServerProcess, path: str, data: bytes, **headers: str) -> RawResponse:
    fields = {"Content-Length": str(len(data)), "Authorization": f"Bearer {WRITE}"}
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = [f"PUT {path} HTTP/1.1", "Host: t", *(f"{k}: {v}" for k, v in fields.items())]
    with srv.connect() as conn:
        return conn.request(("\r\n".join(lines) + "\r\n\r\n").encode() + data)[0]


def catalog_row(state: Path, key: str) -> tuple[int, str] | None:
    with sqlite3.connect(state / "catalog.db") as db:
        row = db.execute("SELECT size, sha256 FROM objects WHERE path = ?", (key,)).fetchone()
    return None if row is None else (row[0], row[1])


def test_put_stores_verified_object_with_its_digest(writable) -> None:  # type: ignore[no-untyped-def]
    srv, _, state = writable
    data = pattern(200_000)
    sha = hashlib.sha256(data).digest()
    created = put(
        srv, "/dir/new.bin", data, Repr_Digest=f"sha-256=:{base64.b64encode(sha).decode()}:"
    )
    assert created.status == 201, created.body
    assert created.header("location") == "/dir/new.bin"
    served = get(srv, "/dir/new.bin")
    assert served.body == data
    assert served.header("repr-digest") == f"sha-256=:{base64.b64encode(sha).decode()}:"
    assert served.header("etag") == created.header("etag")
    assert catalog_row(state, "dir/new.bin") == (len(data), sha.hex())
    replaced = put(srv, "/dir/new.bin", b"second")
    assert replaced.status == 204
    assert get(srv, "/dir/new.bin").body == b"second"


def test_put_with_wrong_digest_stores_nothing(writable) -> None:  # type: ignore[no-untyped-def]
    srv, _, state = writable
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    answer = put(srv, "/x.bin", b"payload", Content_Digest=f"sha-256=:{wrong}:")
    assert answer.status == 400
    assert get(srv, "/x.bin").status == 404
    assert not (state / "catalog.db").exists() or catalog_row(state, "x.bin") is None


def test_write_preconditions_and_delete(writable) -> None:  # type: ignore[no-untyped-def]
    srv, _, state = writable
    assert put(srv, "/c.txt", b"one", If_None_Match="*").status == 201
    assert put(srv, "/c.txt", b"two", If_None_Match="*").status == 412
    etag = get(srv, "/c.txt").header("etag")
    assert put(srv, "/c.txt", b"three", If_Match='"stale"').status == 412
    assert put(srv, "/c.txt", b"three", If_Match=etag).status == 204  # type: ignore[arg-type]
    with srv.connect() as conn:
        deleted = conn.get("/c.txt", {"Authorization": f"Bearer {WRITE}"}, method="DELETE")
    assert deleted.status == 204
    assert get(srv, "/c.txt").status == 404
    with sqlite3.connect(state / "catalog.db") as db:
        (gone,) = db.execute("SELECT deleted FROM objects WHERE path = 'c.txt'").fetchone()
    assert gone


def test_keys_longer_than_s3_allows_are_414(moto: MotoServer, tmp_path: Path) -> None:
    """S3 keys are at most 1024 bytes, the prefix included: a longer path is refused
    before the store is asked, for reads and writes; 1024 bytes exactly are stored."""
    name = moto.create_bucket()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    srv = ServerProcess(
        f"s3://{name}/pre/fix",  # type: ignore[arg-type]
        "--state-dir", str(tmp_path / "state"), "--allow-write", "--tokens", str(tokens),
        "--max-name-bytes", "1024", env=s3_env(moto.url),
    )  # fmt: skip
    try:
        room = 1024 - len("pre/fix/")
        fits = "/" + "k" * 300 + "/" + "v" * (room - 301)  # a 300-byte segment: as allowed
        assert put(srv, fits, b"at the limit").status == 201
        status, stored = moto.get_object(name, "pre/fix" + fits)
        assert (status, stored) == (200, b"at the limit") and len(
            ("pre/fix" + fits).encode()
        ) == 1024
        assert get(srv, fits).body == b"at the limit"
        for method in ("PUT", "GET", "DELETE"):
            with srv.connect() as conn:
                headers = {"Authorization": f"Bearer {WRITE}", "Content-Length": "0"}
                r = conn.get(fits + "x", headers, method=method)
            assert (r.status, json.loads(r.body)["error"]) == (414, "uri_too_long"), method
        assert "Traceback" not in srv.log_text()
    finally:
        srv.stop()


def test_multipart_upload_above_threshold(moto: MotoServer, tmp_path: Path) -> None:
    name = moto.create_bucket()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    srv = ServerProcess(
        f"s3://{name}",  # type: ignore[arg-type]
        "--state-dir", str(tmp_path / "state"), "--allow-write", "--tokens", str(tokens),
        "--s3-multipart-threshold", "6MiB", "--s3-part-size", "5MiB",
        env=s3_env(moto.url),
    )  # fmt: skip
    try:
        data = pattern(12 * 1024 * 1024 + 3)
        assert put(srv, "/large.bin", data).status == 201
        status, stored = moto.get_object(name, "large.bin")
        assert status == 200 and stored == data
        etag = get(srv, "/large.bin", Range="bytes=0-0").header("etag") or ""
        assert etag.endswith('-3"')  # S3's ETag of a three-part upload
    finally:
        srv.stop()

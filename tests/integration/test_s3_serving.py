"""ferryman serving an S3 bucket (moto's server, a real endpoint), without the cache.

Objects are pattern bytes, so every byte served names its own offset; each
answer is compared byte for byte with the object.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3server import MotoServer, s3_env
from tests.serverproc import ServerProcess, Servers, pattern
from tests.writing import Writable, bearer, delete, put

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
def served(
    moto: MotoServer, bucket: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    state = tmp_path_factory.mktemp("state")
    srv = ServerProcess(f"s3://{bucket}", "--state-dir", str(state), env=s3_env(moto.url))
    yield srv
    assert srv.stop() == 0, srv.log_text()


def test_whole_objects_byte_exact(served: ServerProcess) -> None:
    big = served.get("/big.bin")
    assert big.status == 200
    assert big.header("content-length") == str(BIG)
    assert hashlib.sha256(big.body).digest() == hashlib.sha256(pattern(BIG)).digest()
    assert big.header("accept-ranges") == "bytes"
    assert (big.header("etag") or "").startswith('"')
    assert served.get("/hello.txt").body == b"hello, store\n"
    empty = served.get("/empty.bin")
    assert (empty.status, empty.body, empty.header("content-length")) == (200, b"", "0")
    assert served.get("/odd%20name%20%25.txt").body == b"odd"


def test_head_sends_headers_only(served: ServerProcess) -> None:
    head = served.request("HEAD", "/big.bin")
    assert head.status == 200 and head.body == b""
    assert head.header("content-length") == str(BIG)
    assert head.header("last-modified")


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [("0-0", 0, 0), ("1000-1999", 1000, 1999), ("-100", BIG - 100, BIG - 1),
     (f"{BIG - 10}-", BIG - 10, BIG - 1), (f"2000000-{BIG * 2}", 2000000, BIG - 1)],
)  # fmt: skip
def test_single_ranges(served: ServerProcess, spec: str, start: int, end: int) -> None:
    answer = served.get("/big.bin", {"Range": f"bytes={spec}"})
    assert answer.status == 206
    assert answer.header("content-range") == f"bytes {start}-{end}/{BIG}"
    assert answer.body == pattern(end - start + 1, start)


def test_multiple_ranges(served: ServerProcess) -> None:
    answer = served.get("/big.bin", {"Range": "bytes=0-9,1048576-1048600,-5"})
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
    etag = served.get("/big.bin", {"Range": "bytes=0-0"}).header("etag")
    assert etag
    assert served.get("/big.bin", {"If-None-Match": etag}).status == 304
    assert served.get("/big.bin", {"If-Match": '"other"'}).status == 412
    same = served.get("/big.bin", {"Range": "bytes=5-9", "If-Range": etag})
    assert (same.status, same.body) == (206, pattern(5, 5))
    changed = served.get("/big.bin", {"Range": "bytes=5-9", "If-Range": '"old-version"'})
    assert changed.status == 200 and len(changed.body) == BIG


def test_unsatisfiable_and_missing(served: ServerProcess) -> None:
    past = served.get("/big.bin", {"Range": f"bytes={BIG}-"})
    assert past.status == 416
    assert past.header("content-range") == f"bytes */{BIG}"
    missing = served.get("/no-such-object")
    assert missing.status == 404
    assert json.loads(missing.body)["error"] == "not_found"
    assert served.get("/.hidden").status == 404


def test_directories_list_and_redirect(served: ServerProcess) -> None:
    moved = served.get("/docs")
    assert moved.status == 301 and moved.header("location") == "/docs/"
    asked = served.get("/docs/sub?sort=name&x=%2F")  # the query goes along, as it is
    assert asked.status == 301 and asked.header("location") == "/docs/sub/?sort=name&x=%2F"
    listing = json.loads(served.get("/docs/", {"Accept": "application/json"}).body)
    names = [(e["name"], e["type"]) for e in listing["entries"]]
    assert names == [("sub", "directory"), ("a.txt", "file")]
    assert listing["entries"][1]["size"] == 1
    root = json.loads(served.get("/", {"Accept": "application/json"}).body)
    assert {e["name"] for e in root["entries"]} >= {"big.bin", "docs", "site", "hello.txt"}
    page = served.get("/docs/")
    assert page.status == 200 and b'href="sub/"' in page.body
    assert served.get("/site/").body == b"<h1>site</h1>"  # index.html stands for the prefix
    assert served.get("/nothing-here/").status == 404


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


def test_listing_follows_every_page(ferryman: Servers, moto: MotoServer, tmp_path: Path) -> None:
    """More keys than one ListObjectsV2 page (1,000) are all listed."""
    name = moto.create_bucket()
    count = 1005
    for i in range(count):
        moto.put_object(name, f"many/k{i:05d}", b"x")
    srv = ferryman("--state-dir", str(tmp_path), root=f"s3://{name}", env=s3_env(moto.url))
    listing = json.loads(srv.get("/many/", {"Accept": "application/json"}).body)
    rest = json.loads(srv.get(listing["next"], {"Accept": "application/json"}).body)
    names = [e["name"] for e in listing["entries"] + rest["entries"]]
    assert names == [f"k{i:05d}" for i in range(count)] and rest["next"] is None


def test_prefix_is_the_root(
    ferryman: Servers, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    prefix = f"s3://{bucket}/docs"
    srv = ferryman("--state-dir", str(tmp_path), root=prefix, env=s3_env(moto.url))
    assert srv.get("/a.txt").body == b"a"
    assert srv.get("/sub/b.txt").body == b"bb"
    assert srv.get("/hello.txt").status == 404  # outside the prefix


# -- writes ------------------------------------------------------------------------------


@pytest.fixture
def in_bucket(writable: Writable, moto: MotoServer, tmp_path: Path) -> tuple[ServerProcess, Path]:
    """A server writing to a new bucket; its state directory."""
    srv = writable(root=f"s3://{moto.create_bucket()}", s3_endpoint=moto.url)
    return srv, tmp_path / "state"


def catalog_row(state: Path, key: str) -> tuple[int, str] | None:
    with sqlite3.connect(state / "catalog.db") as db:
        row = db.execute("SELECT size, sha256 FROM objects WHERE path = ?", (key,)).fetchone()
    return None if row is None else (row[0], row[1])


def test_put_stores_verified_object_with_its_digest(in_bucket: tuple[ServerProcess, Path]) -> None:
    srv, state = in_bucket
    data = pattern(200_000)
    sha = hashlib.sha256(data).digest()
    created = put(
        srv, "/dir/new.bin", data, {"Repr-Digest": f"sha-256=:{base64.b64encode(sha).decode()}:"}
    )
    assert created.status == 201, created.body
    assert created.header("location") == "/dir/new.bin"
    served = srv.get("/dir/new.bin")
    assert served.body == data
    assert served.header("repr-digest") == f"sha-256=:{base64.b64encode(sha).decode()}:"
    assert served.header("etag") == created.header("etag")
    assert catalog_row(state, "dir/new.bin") == (len(data), sha.hex())
    replaced = put(srv, "/dir/new.bin", b"second")
    assert replaced.status == 204
    assert srv.get("/dir/new.bin").body == b"second"


def test_put_with_wrong_digest_stores_nothing(in_bucket: tuple[ServerProcess, Path]) -> None:
    srv, state = in_bucket
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    answer = put(srv, "/x.bin", b"payload", {"Content-Digest": f"sha-256=:{wrong}:"})
    assert answer.status == 400
    assert srv.get("/x.bin").status == 404
    assert not (state / "catalog.db").exists() or catalog_row(state, "x.bin") is None


def test_write_preconditions_and_delete(in_bucket: tuple[ServerProcess, Path]) -> None:
    srv, state = in_bucket
    assert put(srv, "/c.txt", b"one", {"If-None-Match": "*"}).status == 201
    assert put(srv, "/c.txt", b"two", {"If-None-Match": "*"}).status == 412
    etag = srv.get("/c.txt").header("etag")
    assert etag
    assert put(srv, "/c.txt", b"three", {"If-Match": '"stale"'}).status == 412
    assert put(srv, "/c.txt", b"three", {"If-Match": etag}).status == 204
    assert delete(srv, "/c.txt").status == 204
    assert srv.get("/c.txt").status == 404
    with sqlite3.connect(state / "catalog.db") as db:
        (gone,) = db.execute("SELECT deleted FROM objects WHERE path = 'c.txt'").fetchone()
    assert gone


def test_keys_longer_than_s3_allows_are_414(writable: Writable, moto: MotoServer) -> None:
    """S3 keys are at most 1024 bytes, the prefix included: a longer path is refused
    before the store is asked, for reads and writes; 1024 bytes exactly are stored."""
    name = moto.create_bucket()
    srv = writable("--max-name-bytes", "1024", root=f"s3://{name}/pre/fix", s3_endpoint=moto.url)
    room = 1024 - len("pre/fix/")
    fits = "/" + "k" * 300 + "/" + "v" * (room - 301)  # a 300-byte segment: as allowed
    assert put(srv, fits, b"at the limit").status == 201
    status, stored = moto.get_object(name, "pre/fix" + fits)
    assert (status, stored) == (200, b"at the limit") and len(("pre/fix" + fits).encode()) == 1024
    assert srv.get(fits).body == b"at the limit"
    for method in ("PUT", "GET", "DELETE"):
        r = srv.request(method, fits + "x", {**bearer(), "Content-Length": "0"})
        assert (r.status, json.loads(r.body)["error"]) == (414, "uri_too_long"), method
    assert "Traceback" not in srv.log_text()


def test_multipart_upload_above_threshold(writable: Writable, moto: MotoServer) -> None:
    name = moto.create_bucket()
    multipart = ("--s3-multipart-threshold", "6MiB", "--s3-part-size", "5MiB")
    srv = writable(*multipart, root=f"s3://{name}", s3_endpoint=moto.url)
    data = pattern(12 * 1024 * 1024 + 3)
    assert put(srv, "/large.bin", data).status == 201
    status, stored = moto.get_object(name, "large.bin")
    assert status == 200 and stored == data
    etag = srv.get("/large.bin", {"Range": "bytes=0-0"}).header("etag") or ""
    assert etag.endswith('-3"')  # S3's ETag of a three-part upload


def test_a_scanned_bucket_serves_the_catalogs_digest_while_the_object_is_that_version(
    moto: MotoServer, tmp_path: Path
) -> None:
    """Objects written by another tool carry no digest of their own: `catalog scan` reads
    each under If-Match and records its ETag, and the digest is served while the ETag and
    size still match; an object replaced since (same size) is served without it."""
    import os
    import subprocess
    import sys

    name = moto.create_bucket()
    data, other = pattern(70_000), pattern(70_000, 1)
    moto.put_object(name, "a.bin", data)
    state = tmp_path / "state"
    scan = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "catalog", "scan", f"s3://{name}",
         "--state-dir", str(state)],
        capture_output=True, text=True, timeout=60, env={**os.environ, **s3_env(moto.url)},
    )  # fmt: skip
    assert scan.returncode == 0, scan.stderr
    srv = ServerProcess(f"s3://{name}", "--state-dir", str(state), env=s3_env(moto.url))
    try:
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        assert srv.get("/a.bin").header("repr-digest") == f"sha-256=:{digest}:"
        moto.put_object(name, "a.bin", other)
        answer = srv.get("/a.bin")
        assert answer.body == other and answer.header("repr-digest") is None
    finally:
        srv.stop()

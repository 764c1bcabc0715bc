"""PUT and DELETE through real sockets: verified, atomic, and traceless on failure."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from ferryman.catalog.db import SqliteCatalog
from tests.mounts import tmpfs
from tests.rawhttp import request_bytes
from tests.serverproc import ServerProcess, Servers, need, pattern, wait_until
from tests.writing import (
    READ,
    WRITE,
    WRITER,
    Writable,
    bearer,
    catalogued,
    put,
    upload_temporaries,
)

Store = tuple[ServerProcess, Path]  # a writable server, its SOURCE


@pytest.fixture
def store(writable: Writable, tmp_path: Path) -> Store:
    """SOURCE tmp_path/root, its state in SOURCE/.ferryman; tokens to write, to read,
    and to write under /inbox only."""
    tokens = f"{WRITER}{READ} read\npfx-token-0123456 write /inbox\n"
    return writable(tokens=tokens, state=None), tmp_path / "root"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_put_creates_then_replaces_with_verified_headers(store: Store) -> None:
    srv, root = store
    data = pattern(3_000_001)
    r = put(srv, "/new/dir/f.bin", data)
    assert r.status == 201 and r.header("location") == "/new/dir/f.bin"
    assert r.header("repr-digest") == f"sha-256=:{b64(hashlib.sha256(data).digest())}:"
    assert (root / "new/dir/f.bin").read_bytes() == data
    with srv.connect() as conn:
        got = conn.get("/new/dir/f.bin")
    assert got.body == data and got.header("etag") == r.header("etag")
    again = put(srv, "/new/dir/f.bin", b"second")
    assert again.status == 204 and (root / "new/dir/f.bin").read_bytes() == b"second"
    assert not upload_temporaries(root)


@pytest.mark.parametrize(
    "make_header",
    [
        lambda d: {"Content-MD5": b64(hashlib.md5(d).digest())},
        lambda d: {"Content-Digest": f"sha-256=:{b64(hashlib.sha256(d).digest())}:"},
        lambda d: {"Repr-Digest": f"sha-512=:{b64(hashlib.sha512(d).digest())}:"},
        lambda d: {"Content-Digest": f"unixsum=:AA==:,sha-256=:{b64(hashlib.sha256(d).digest())}:"},
        lambda d: {"Content-Digest": f"md5=:{b64(hashlib.md5(d).digest())}:"},
        lambda d: {"Digest": f"sha-512={b64(hashlib.sha512(d).digest())}, UNIXsum=12"},
        lambda d: {"Digest": f"MD5={b64(hashlib.md5(d).digest())}"},
    ],
    ids=["md5", "content-digest-sha256", "repr-digest-sha512", "unknown-beside-known",
         "content-digest-md5", "rfc3230-sha512", "rfc3230-md5"],
)  # fmt: skip
def test_right_digests_are_accepted(
    store: Store, make_header: Callable[[bytes], dict[str, str]]
) -> None:
    srv, root = store
    data = pattern(100_000)
    assert put(srv, "/ok.bin", data, make_header(data)).status == 201
    assert (root / "ok.bin").read_bytes() == data


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-MD5": b64(hashlib.md5(b"other").digest())},
        {"Content-Digest": f"sha-256=:{b64(hashlib.sha256(b'other').digest())}:"},
        {"Repr-Digest": f"sha-512=:{b64(hashlib.sha512(b'other').digest())}:"},
        {"Content-MD5": "not base64!"},
        {"Content-Digest": "sha-256=:tooshort:"},
    ],
    ids=["md5", "sha256", "sha512", "md5-garbage", "digest-garbage"],
)
def test_wrong_digests_store_nothing(store: Store, headers: dict[str, str]) -> None:
    srv, root = store
    (root / "keep.bin").write_bytes(b"original")
    r = put(srv, "/keep.bin", pattern(200_000), headers)
    assert r.status == 400
    assert json.loads(r.body)["error"] in ("digest_mismatch", "bad_digest")
    assert (root / "keep.bin").read_bytes() == b"original"
    assert not upload_temporaries(root)
    assert not catalogued(root / ".ferryman", "keep.bin")


SHA_OTHER = b64(hashlib.sha256(b"other").digest())


@pytest.mark.parametrize(
    ("headers", "error", "named"),
    [
        ({"Content-Digest": "unixsum=:AAAA:"}, "bad_digest", "Content-Digest unixsum"),
        ({"Repr-Digest": "crc32c=:AAAAAA==:"}, "bad_digest", "Repr-Digest crc32c"),
        ({"Digest": "UNIXsum=1234"}, "bad_digest", "Digest UNIXsum"),
        ({"Content-Digest": "sha-256="}, "bad_digest", "Content-Digest"),
        ({"Content-Digest": "sha-256=abc"}, "bad_digest", "Content-Digest"),
        ({"Repr-Digest": f"sha-256=:{SHA_OTHER}"}, "bad_digest", "Repr-Digest"),
        ({"Digest": "SHA-256="}, "bad_digest", "Digest"),
        ({"Digest": "SHA-256=AAAA"}, "bad_digest", "Digest sha-256"),
        ({"Digest": f"SHA-256={SHA_OTHER}"}, "digest_mismatch", "Digest sha-256"),
        ({"Digest": f"md5={b64(hashlib.md5(b'other').digest())}"}, "digest_mismatch", "Digest md5"),
        ({"Content-MD5": b64(hashlib.md5(b"other").digest())}, "digest_mismatch", "Content-MD5"),
        ({"Content-Digest": "md5=:AAAA:"}, "bad_digest", "Content-Digest md5"),
    ],
    ids=["cd-unknown-only", "rd-unknown-only", "rfc3230-unknown-only", "cd-empty-value",
         "cd-not-byte-sequence", "rd-unterminated", "rfc3230-empty", "rfc3230-short",
         "rfc3230-mismatch", "rfc3230-md5-mismatch", "content-md5-mismatch", "cd-md5-short"],
)  # fmt: skip
def test_digest_fields_are_checked_or_refused(
    store: Store, headers: dict[str, str], error: str, named: str
) -> None:
    """Never ignored: a digest ferryman cannot check, alone, is refused like a malformed one."""
    srv, root = store
    (root / "keep.bin").write_bytes(b"original")
    r = put(srv, "/keep.bin", pattern(50_000), headers)
    assert r.status == 400, r.body
    body = json.loads(r.body)
    assert body["error"] == error and named in body["detail"], body
    if named.lower().endswith(("unixsum", "crc32c")):  # says what it can check instead
        assert r.header("want-repr-digest") == "sha-256=10, sha-512=5"
    r = put(srv, "/new.bin", pattern(50_000), headers)
    assert r.status == 400 and not (root / "new.bin").exists()
    assert (root / "keep.bin").read_bytes() == b"original"
    assert not upload_temporaries(root)
    assert not catalogued(root / ".ferryman", "keep.bin")
    assert "Traceback" not in srv.log_text()


def test_client_disconnecting_halfway_leaves_nothing(store: Store) -> None:
    srv, root = store
    sock = socket.create_connection((srv.host, srv.port))
    head = request_bytes("PUT", "/half.bin", {**bearer(), "Content-Length": "5000000"})
    sock.sendall(head + pattern(2_500_000))
    assert wait_until(lambda: bool(upload_temporaries(root)), 5)  # the upload was under way
    sock.close()
    assert wait_until(lambda: not upload_temporaries(root), 5), upload_temporaries(root)
    assert not (root / "half.bin").exists()
    assert not catalogued(root / ".ferryman", "half.bin")
    with srv.connect() as conn:
        assert conn.get("/half.bin").status == 404


def test_chunked_upload_with_expect_continue(store: Store) -> None:
    srv, root = store
    data = pattern(1_000_003)
    with srv.connect() as conn:
        chunked = {"Transfer-Encoding": "chunked", "Expect": "100-continue"}
        conn.send(request_bytes("PUT", "/chunked.bin", {**bearer(), **chunked}))
        assert conn.read().status == 100
        for i in range(0, len(data), 65536):
            piece = data[i : i + 65536]
            conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        assert conn.read().status == 201
        assert conn.get("/chunked.bin").body == data  # and the connection was reusable
    assert (root / "chunked.bin").read_bytes() == data


def test_too_large_is_413_before_any_byte_is_invited(writable: Writable, tmp_path: Path) -> None:
    srv = writable("--max-upload-size", "1000", root=tmp_path, state=None)
    with srv.connect() as conn:
        announced = {"Content-Length": "2000", "Expect": "100-continue"}
        r = conn.request("PUT", "/big", {**bearer(), **announced})
        assert r.status == 413
        assert conn.closed_by_peer(5)
    assert put(srv, "/small", b"x" * 1000).status == 201
    assert not (tmp_path / "big").exists()
    assert catalogued(tmp_path / ".ferryman", "small")
    assert not catalogued(tmp_path / ".ferryman", "big")


def test_concurrent_puts_end_with_one_whole_version(store: Store) -> None:
    srv, root = store
    versions = [bytes([65 + i]) * 2_000_000 for i in range(8)]
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda v=v: statuses.append(put(srv, "/race.bin", v).status))
        for v in versions
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) and all(s in (201, 204) for s in statuses) and len(statuses) == 8
    final = (root / "race.bin").read_bytes()
    assert final in versions
    assert not upload_temporaries(root)
    with SqliteCatalog(root / ".ferryman" / "catalog.db") as cat:  # the catalog names that version
        entry = cat.get("race.bin")
        assert entry is not None and entry.sha256 == hashlib.sha256(final).hexdigest()


def test_preconditions_on_writes(store: Store) -> None:
    srv, root = store
    first = put(srv, "/p.txt", b"one", {"If-None-Match": "*"})
    assert first.status == 201
    assert put(srv, "/p.txt", b"two", {"If-None-Match": "*"}).status == 412
    assert put(srv, "/p.txt", b"two", {"If-Match": '"stale"'}).status == 412
    assert (root / "p.txt").read_bytes() == b"one"
    etag = first.header("etag")
    assert etag
    assert put(srv, "/p.txt", b"two", {"If-Match": etag}).status == 204
    assert (root / "p.txt").read_bytes() == b"two"
    assert put(srv, "/absent.txt", b"x", {"If-Match": "*"}).status == 412


def test_delete(store: Store) -> None:
    srv, root = store
    put(srv, "/d.txt", b"bye")
    with srv.connect() as conn:
        assert conn.request("DELETE", "/d.txt", {**bearer(), "If-Match": '"x"'}).status == 412
        assert conn.request("DELETE", "/d.txt", bearer()).status == 204
        assert conn.get("/d.txt").status == 404
        assert conn.request("DELETE", "/d.txt", bearer()).status == 404
    assert not (root / "d.txt").exists()


def test_a_deletion_the_catalog_cannot_record_deletes_nothing(
    writable: Writable, tmp_path: Path
) -> None:
    """The catalog is locked by another writer past its busy timeout: the deletion's
    intent cannot be recorded, so nothing is deleted (503, retry). A file removed
    behind ferryman's back while catalogued is recorded deleted by the next DELETE."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    srv = writable(root=root, state=state)
    assert put(srv, "/d.bin", b"bye").status == 201
    holder = sqlite3.connect(state / "catalog.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long audit write would hold it
    try:
        with srv.connect(timeout=30) as conn:
            r = conn.request("DELETE", "/d.bin", bearer())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status == 503 and r.header("retry-after") == "1"
    assert json.loads(r.body) == {"error": "catalog_busy", "detail": "nothing deleted"}
    assert (root / "d.bin").read_bytes() == b"bye" and catalogued(state, "d.bin")
    (root / "d.bin").unlink()  # behind ferryman's back
    with srv.connect() as conn:
        assert conn.request("DELETE", "/d.bin", {**bearer(), "If-Match": "*"}).status == 412
        assert catalogued(state, "d.bin")
        assert conn.request("DELETE", "/d.bin", bearer()).status == 204
        assert not catalogued(state, "d.bin")
        assert conn.request("DELETE", "/d.bin", bearer()).status == 404  # recorded: nothing left


def test_a_disk_error_other_than_full_is_500_and_stores_nothing(
    writable: Writable, tmp_path: Path
) -> None:
    """A file-size limit on the server (RLIMIT_FSIZE): writes past it fail with EFBIG."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "keep.bin").write_bytes(b"original")
    limit = ("prlimit", f"--fsize={1024 * 1024}", "--")
    srv = writable(root=root, wrapper=limit)
    r = put(srv, "/keep.bin", pattern(3_000_000))
    assert r.status == 500, r.body
    assert json.loads(r.body)["detail"] == "cannot write the file (File too large); nothing stored"
    assert (root / "keep.bin").read_bytes() == b"original"
    assert not upload_temporaries(root)
    assert not catalogued(tmp_path / "state", "keep.bin")
    assert put(srv, "/small.bin", b"fits").status == 201


def test_access_control(store: Store) -> None:
    srv, root = store
    missing = put(srv, "/a.txt", b"x", token="")
    assert missing.status == 401
    assert (missing.header("www-authenticate") or "").startswith("Bearer")
    assert put(srv, "/a.txt", b"x", token=READ).status == 403
    assert put(srv, "/a.txt", b"x", token="no-such-token-000").status == 403
    assert put(srv, "/inbox/a.txt", b"x", token="pfx-token-0123456").status == 201
    assert put(srv, "/inbox-other/a.txt", b"x", token="pfx-token-0123456").status == 403
    assert not (root / "a.txt").exists() and not (root / "inbox-other").exists()
    with srv.connect() as conn:
        assert conn.get("/inbox/a.txt").status == 200  # reads stay open


def test_paths_that_cannot_be_written(store: Store, tmp_path: Path) -> None:
    srv, root = store
    (root / "adir").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert put(srv, "/adir", b"x").status == 409
    assert put(srv, "/adir/", b"x").status == 405
    assert put(srv, "/link/f.txt", b"x").status == 409  # never written through a symlink
    assert put(srv, "/.hidden", b"x").status == 404
    assert put(srv, "/../x", b"x").status == 400
    assert put(srv, "/%FF.bin", b"x").status == 400  # not UTF-8: refused before writing
    assert not [p for p in root.iterdir() if p.name.endswith(".bin")]
    assert not list(outside.iterdir())
    with srv.connect() as conn:
        no_length = b"PUT /nolength HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n"
        [r] = conn.exchange(no_length % WRITE.encode())
    assert r.status == 411


def send(srv: ServerProcess, method: str, target: str) -> tuple[int, str]:
    """A bodiless GET or DELETE (with the write token): (status, error code or "")."""
    r = srv.request(method, target, bearer())
    return r.status, (json.loads(r.body)["error"] if r.status >= 400 else "")


def test_names_too_long_are_refused_not_failed(store: Store) -> None:
    """Longest segment 255 bytes (400 above), longest path: its absolute form fits
    PATH_MAX (414 above). Until now the file system's ENAMETOOLONG was a 500."""
    srv, root = store
    longest = 4095 - len(str(root).encode())  # root + "/" + path + NUL <= 4096
    deep = "/" + "/".join(["d" * 250] * (longest // 251))
    deep += "/" + "f" * (longest - len(deep) - 1)
    assert len(deep.encode()) == longest
    assert put(srv, deep, b"deep").status == 201
    assert send(srv, "GET", deep) == (200, "")
    assert send(srv, "DELETE", deep) == (204, "")
    name = "/n" + "é" * 127  # 255 bytes
    assert put(srv, quote(name), b"long").status == 201
    assert (root / name[1:]).read_bytes() == b"long"
    assert send(srv, "GET", quote(name)) == (200, "")
    for path, answer in [
        (quote(name) + "x", (400, "bad_path")),
        (quote(name) + "x/f.txt", (400, "bad_path")),
        ("/d/" + "a" * 1000, (400, "bad_path")),
        (deep + "g", (414, "uri_too_long")),
        ("/" + "/".join(["e" * 200] * 30), (414, "uri_too_long")),
    ]:
        r = put(srv, path, b"x")
        assert (r.status, json.loads(r.body)["error"]) == answer, (path[:40], r.body)
        assert send(srv, "GET", path) == answer
        assert send(srv, "DELETE", path) == answer
    assert sorted(p.name for p in root.iterdir()) == [".ferryman", "d" * 250, name[1:]]
    assert not upload_temporaries(root)
    assert "Traceback" not in srv.log_text()


def test_names_with_control_characters_are_refused(store: Store) -> None:
    srv, root = store
    (root / "line\nbreak.txt").write_bytes(b"made elsewhere")
    for char in ("%01", "%0A", "%0D", "%1B", "%1F", "%7F", "%C2%85", "%C2%9B"):
        for path in (f"/a{char}b.txt", f"/dir{char}/f.txt"):
            r = put(srv, path, b"x")
            assert (r.status, json.loads(r.body)["error"]) == (400, "bad_path"), (path, r.body)
            assert send(srv, "DELETE", path) == (400, "bad_path")
    assert send(srv, "DELETE", "/line%0Abreak.txt") == (400, "bad_path")
    assert send(srv, "GET", "/line%0Abreak.txt") == (200, "")  # read as ever
    assert sorted(p.name for p in root.iterdir()) == [".ferryman", "line\nbreak.txt"]
    assert put(srv, "/tab%09.txt", b"x").status == 400
    assert put(srv, "/caf%C3%A9%20%E2%80%94%201.txt", b"x").status == 201  # not control chars
    assert "Traceback" not in srv.log_text()


def test_writes_are_off_unless_allowed(ferryman: Servers, tmp_path: Path) -> None:
    srv = ferryman(root=tmp_path)
    r = put(srv, "/x", b"x")
    assert r.status == 405 and r.header("allow") == "GET, HEAD, OPTIONS"
    assert not (tmp_path / "x").exists()


def test_allow_write_without_credentials_is_a_boot_failure(tmp_path: Path) -> None:
    import sys

    argv = [sys.executable, "-m", "ferryman.cli", "serve", str(tmp_path), "--port", "0"]
    done = subprocess.run([*argv, "--allow-write"], capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and "--tokens or --signing-key" in done.stderr


def test_curl_upload_round_trip(store: Store, tmp_path: Path) -> None:
    curl = need("curl")
    srv, root = store
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(4_000_000))
    digest = b64(hashlib.sha256(source.read_bytes()).digest())
    done = subprocess.run(
        [curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(source),
         "-H", f"Authorization: Bearer {WRITE}", "-H", f"Content-Digest: sha-256=:{digest}:",
         f"{srv.url}/up/src.bin"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout == "201", done.stderr
    assert (root / "up/src.bin").read_bytes() == source.read_bytes()


def catalog_of(root: Path) -> SqliteCatalog:
    return SqliteCatalog(root / ".ferryman" / "catalog.db")


def test_catalog_records_writes_and_gets_carry_repr_digest(store: Store) -> None:
    srv, root = store
    data = pattern(250_000)
    r = put(srv, "/cat/a.bin", data)
    cat = catalog_of(root)
    try:
        entry = cat.get("cat/a.bin")
        assert entry is not None and not entry.deleted
        assert (entry.size, entry.sha256, entry.etag) == (
            len(data), hashlib.sha256(data).hexdigest(), r.header("etag"),
        )  # fmt: skip
        with srv.connect() as conn:
            for headers in ({}, {"Range": "bytes=0-9"}):
                got = conn.get("/cat/a.bin", headers)
                assert got.header("repr-digest") == r.header("repr-digest")
        # changed behind ferryman's back: no stale digest, and the log says why
        (root / "cat/a.bin").write_bytes(b"tampered")
        with srv.connect() as conn:
            assert conn.get("/cat/a.bin").header("repr-digest") is None
        assert wait_until(lambda: "changed on disk outside ferryman" in srv.log_text(), 5)
        # a failed write leaves the catalog as it was
        before = cat.history("cat/a.bin")
        assert put(srv, "/cat/a.bin", b"zz", {"Content-MD5": b64(b"0" * 16)}).status == 400
        assert cat.history("cat/a.bin") == before
        with srv.connect() as conn:
            assert conn.request("DELETE", "/cat/a.bin", bearer()).status == 204
        gone = cat.get("cat/a.bin")
        assert gone is not None and gone.deleted
        assert [h.deleted for h in cat.history("cat/a.bin")] == [False, True]
    finally:
        cat.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem as the served root (needs root to mount a tmpfs)."""
    with tmpfs(tmp_path / "disk", "1m") as mount:
        yield mount


def test_full_disk_is_507_and_stores_nothing(
    writable: Writable, tmp_path: Path, small_disk: Path
) -> None:
    (small_disk / "keep.bin").write_bytes(b"original")
    srv = writable(root=small_disk)
    r = put(srv, "/keep.bin", pattern(3_000_000))
    assert r.status == 507 and json.loads(r.body)["error"] == "insufficient_storage"
    assert (small_disk / "keep.bin").read_bytes() == b"original"
    assert not upload_temporaries(small_disk)
    assert not catalogued(tmp_path / "state", "keep.bin")
    assert put(srv, "/fits.bin", b"small").status == 201  # the space came back
    assert catalogued(tmp_path / "state", "fits.bin")


def test_body_that_stops_arriving_is_408_and_stores_nothing(
    writable: Writable, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    srv = writable("--body-timeout", "1", state=None)
    with srv.connect() as conn:
        head = request_bytes("PUT", "/slow.bin", {**bearer(), "Content-Length": "100000"})
        conn.send(head + b"x" * 1000)
        r = conn.read()
        assert r.status == 408
        assert conn.closed_by_peer(5)
    assert not (root / "slow.bin").exists() and not upload_temporaries(root)
    assert not catalogued(root / ".ferryman", "slow.bin")


def test_verify_writes_size_still_checks_digests(writable: Writable, tmp_path: Path) -> None:
    root = tmp_path / "root"
    srv = writable("--verify-writes", "size", state=None)
    data = pattern(300_000)
    assert put(srv, "/s.bin", data).status == 201
    assert (root / "s.bin").read_bytes() == data
    bad = {"Content-Digest": f"sha-256=:{b64(hashlib.sha256(b'x').digest())}:"}
    assert put(srv, "/t.bin", data, bad).status == 400  # the client's digest is checked anyway
    assert not (root / "t.bin").exists()

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
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import ServerProcess, need, pattern, wait_until
from tests.mounts import tmpfs

WRITE, READ = "w-token-0123456789", "r-token-0123456789"


@pytest.fixture
def store(ferryman, tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n{READ} read\npfx-token-0123456 write /inbox\n")
    srv = ferryman("--allow-write", "--tokens", str(tokens), root=root)
    return srv, root


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".ferryman-upload-*")]


def catalogued(state: Path, path: str) -> bool:
    """Whether the catalog under `state` has a live entry for `path`."""
    from ferryman.catalog.db import Catalog

    with Catalog(state / "catalog.db") as cat:
        entry = cat.get(path)
        return entry is not None and not entry.deleted


def put(
    srv: ServerProcess, path: str, data: bytes, headers: dict | None = None, token: str = WRITE
):  # type: ignore[no-untyped-def]
    all_headers = {"Content-Length": str(len(data)), **(headers or {})}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    lines = [f"PUT {path} HTTP/1.1", "Host: t", *(f"{k}: {v}" for k, v in all_headers.items())]
    with srv.connect() as conn:
        return conn.request(("\r\n".join(lines) + "\r\n\r\n").encode() + data)[0]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_put_creates_then_replaces_with_verified_headers(store) -> None:  # type: ignore[no-untyped-def]
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
    assert not temp_files(root)


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
def test_right_digests_are_accepted(store, make_header) -> None:  # type: ignore[no-untyped-def]
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
def test_wrong_digests_store_nothing(store, headers: dict) -> None:  # type: ignore[no-untyped-def]
    srv, root = store
    (root / "keep.bin").write_bytes(b"original")
    r = put(srv, "/keep.bin", pattern(200_000), headers)
    assert r.status == 400
    assert json.loads(r.body)["error"] in ("digest_mismatch", "bad_digest")
    assert (root / "keep.bin").read_bytes() == b"original"
    assert not temp_files(root)
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
def test_digest_fields_are_checked_or_refused(store, headers: dict, error: str, named: str) -> None:  # type: ignore[no-untyped-def]
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
    assert not temp_files(root)
    assert not catalogued(root / ".ferryman", "keep.bin")
    assert "Traceback" not in srv.log_text()


def test_client_disconnecting_halfway_leaves_nothing(store) -> None:  # type: ignore[no-untyped-def]
    srv, root = store
    sock = socket.create_connection((srv.host, srv.port))
    head = f"PUT /half.bin HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {WRITE}\r\n"
    sock.sendall((head + "Content-Length: 5000000\r\n\r\n").encode() + pattern(2_500_000))
    assert wait_until(lambda: bool(temp_files(root)), 5)  # the upload was under way
    sock.close()
    assert wait_until(lambda: not temp_files(root), 5), temp_files(root)
    assert not (root / "half.bin").exists()
    assert not catalogued(root / ".ferryman", "half.bin")
    with srv.connect() as conn:
        assert conn.get("/half.bin").status == 404


def test_chunked_upload_with_expect_continue(store) -> None:  # type: ignore[no-untyped-def]
    srv, root = store
    data = pattern(1_000_003)
    with srv.connect() as conn:
        conn.send(
            b"PUT /chunked.bin HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
            b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n" % WRITE.encode()
        )
        assert conn.read().status == 100
        for i in range(0, len(data), 65536):
            piece = data[i : i + 65536]
            conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        assert conn.read().status == 201
        assert conn.get("/chunked.bin").body == data  # and the connection was reusable
    assert (root / "chunked.bin").read_bytes() == data


def test_too_large_is_413_before_any_byte_is_invited(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    srv = ferryman("--allow-write", "--tokens", str(tokens), "--max-upload-size", "1000",
                   root=tmp_path)  # fmt: skip
    with srv.connect() as conn:
        r = conn.request(
            b"PUT /big HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
            b"Content-Length: 2000\r\nExpect: 100-continue\r\n\r\n" % WRITE.encode()
        )[0]
        assert r.status == 413
        assert conn.closed_by_peer(5)
    assert put(srv, "/small", b"x" * 1000).status == 201
    assert not (tmp_path / "big").exists()
    assert catalogued(tmp_path / ".ferryman", "small")
    assert not catalogued(tmp_path / ".ferryman", "big")


def test_concurrent_puts_end_with_one_whole_version(store) -> None:  # type: ignore[no-untyped-def]
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
    assert not temp_files(root)
    from ferryman.catalog.db import Catalog

    with Catalog(root / ".ferryman" / "catalog.db") as cat:  # the catalog names that version
        entry = cat.get("race.bin")
        assert entry is not None and entry.sha256 == hashlib.sha256(final).hexdigest()


def test_preconditions_on_writes(store) -> None:  # type: ignore[no-untyped-def]
    srv, root = store
    first = put(srv, "/p.txt", b"one", {"If-None-Match": "*"})
    assert first.status == 201
    assert put(srv, "/p.txt", b"two", {"If-None-Match": "*"}).status == 412
    assert put(srv, "/p.txt", b"two", {"If-Match": '"stale"'}).status == 412
    assert (root / "p.txt").read_bytes() == b"one"
    assert put(srv, "/p.txt", b"two", {"If-Match": first.header("etag")}).status == 204
    assert (root / "p.txt").read_bytes() == b"two"
    assert put(srv, "/absent.txt", b"x", {"If-Match": "*"}).status == 412


def test_delete(store) -> None:  # type: ignore[no-untyped-def]
    srv, root = store
    put(srv, "/d.txt", b"bye")
    with srv.connect() as conn:
        auth = {"Authorization": f"Bearer {WRITE}"}
        assert conn.get("/d.txt", {**auth, "If-Match": '"x"'}, method="DELETE").status == 412
        assert conn.get("/d.txt", auth, method="DELETE").status == 204
        assert conn.get("/d.txt").status == 404
        assert conn.get("/d.txt", auth, method="DELETE").status == 404
    assert not (root / "d.txt").exists()


def test_a_deletion_the_catalog_cannot_record_deletes_nothing(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The catalog is locked by another writer past its busy timeout: the deletion's
    intent cannot be recorded, so nothing is deleted (503, retry). A file removed
    behind ferryman's back while catalogued is recorded deleted by the next DELETE."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    srv = ferryman("--allow-write", "--tokens", str(tokens), "--state-dir", str(state), root=root)
    assert put(srv, "/d.bin", b"bye").status == 201
    auth = {"Authorization": f"Bearer {WRITE}"}
    holder = sqlite3.connect(state / "catalog.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long audit write would hold it
    try:
        with srv.connect(timeout=30) as conn:
            r = conn.get("/d.bin", auth, method="DELETE")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status == 503 and r.header("retry-after") == "1"
    assert json.loads(r.body) == {"error": "catalog_busy", "detail": "nothing deleted"}
    assert (root / "d.bin").read_bytes() == b"bye" and catalogued(state, "d.bin")
    (root / "d.bin").unlink()  # behind ferryman's back
    with srv.connect() as conn:
        assert conn.get("/d.bin", {**auth, "If-Match": "*"}, method="DELETE").status == 412
        assert catalogued(state, "d.bin")
        assert conn.get("/d.bin", auth, method="DELETE").status == 204
        assert not catalogued(state, "d.bin")
        assert conn.get("/d.bin", auth, method="DELETE").status == 404  # recorded: nothing left


def test_a_disk_error_other_than_full_is_500_and_stores_nothing(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A file-size limit on the server (RLIMIT_FSIZE): writes past it fail with EFBIG."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "keep.bin").write_bytes(b"original")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    limit = ("prlimit", f"--fsize={1024 * 1024}", "--")
    srv = ferryman("--allow-write", "--tokens", str(tokens), "--state-dir",
                   str(tmp_path / "state"), root=root, wrapper=limit)  # fmt: skip
    r = put(srv, "/keep.bin", pattern(3_000_000))
    assert r.status == 500, r.body
    assert json.loads(r.body)["detail"] == "cannot write the file (File too large); nothing stored"
    assert (root / "keep.bin").read_bytes() == b"original"
    assert not temp_files(root)
    assert not catalogued(tmp_path / "state", "keep.bin")
    assert put(srv, "/small.bin", b"fits").status == 201


def test_access_control(store) -> None:  # type: ignore[no-untyped-def]
    srv, root = store
    missing = put(srv, "/a.txt", b"x", token="")
    assert missing.status == 401 and missing.header(
        "www-authenticate",
    ).startswith("Bearer")  # type: ignore[union-attr]
    assert put(srv, "/a.txt", b"x", token=READ).status == 403
    assert put(srv, "/a.txt", b"x", token="no-such-token-000").status == 403
    assert put(srv, "/inbox/a.txt", b"x", token="pfx-token-0123456").status == 201
    assert put(srv, "/inbox-other/a.txt", b"x", token="pfx-token-0123456").status == 403
    assert not (root / "a.txt").exists() and not (root / "inbox-other").exists()
    with srv.connect() as conn:
        assert conn.get("/inbox/a.txt").status == 200  # reads stay open


def test_paths_that_cannot_be_written(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
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
        r = conn.request(
            b"PUT /nolength HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n"
            % WRITE.encode()
        )[0]
    assert r.status == 411


def send(srv: ServerProcess, method: str, path: str) -> tuple[int, str]:
    """A bodiless GET or DELETE (with the write token): (status, error code or "")."""
    with srv.connect() as conn:
        r = conn.get(path, {"Authorization": f"Bearer {WRITE}"}, method=method)
    return r.status, (json.loads(r.body)["error"] if r.status >= 400 else "")


def test_names_too_long_are_refused_not_failed(store) -> None:  # type: ignore[no-untyped-def]
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
    assert not temp_files(root)
    assert "Traceback" not in srv.log_text()


def test_names_with_control_characters_are_refused(store) -> None:  # type: ignore[no-untyped-def]
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


def test_writes_are_off_unless_allowed(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman(root=tmp_path)
    r = put(srv, "/x", b"x")
    assert r.status == 405 and r.header("allow") == "GET, HEAD, OPTIONS"
    assert not (tmp_path / "x").exists()


def test_allow_write_without_credentials_is_a_boot_failure(tmp_path: Path) -> None:
    import sys

    argv = [sys.executable, "-m", "ferryman.cli", "serve", str(tmp_path), "--port", "0"]
    done = subprocess.run([*argv, "--allow-write"], capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and "--tokens or --signing-key" in done.stderr


def test_curl_upload_round_trip(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
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


def catalog_of(root: Path):  # type: ignore[no-untyped-def]
    from ferryman.catalog.db import Catalog

    return Catalog(root / ".ferryman" / "catalog.db")


def test_catalog_records_writes_and_gets_carry_repr_digest(store) -> None:  # type: ignore[no-untyped-def]
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
            auth = {"Authorization": f"Bearer {WRITE}"}
            assert conn.get("/cat/a.bin", auth, method="DELETE").status == 204
        gone = cat.get("cat/a.bin")
        assert gone is not None and gone.deleted
        assert [h.deleted for h in cat.history("cat/a.bin")] == [False, True]
    finally:
        cat.close()


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MiB filesystem as the served root (needs root to mount a tmpfs)."""
    with tmpfs(tmp_path / "disk", "1m") as mount:
        yield mount


def test_full_disk_is_507_and_stores_nothing(ferryman, tmp_path: Path, small_disk: Path) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    (small_disk / "keep.bin").write_bytes(b"original")
    srv = ferryman("--allow-write", "--tokens", str(tokens), "--state-dir",
                   str(tmp_path / "state"), root=small_disk)  # fmt: skip
    r = put(srv, "/keep.bin", pattern(3_000_000))
    assert r.status == 507 and json.loads(r.body)["error"] == "insufficient_storage"
    assert (small_disk / "keep.bin").read_bytes() == b"original"
    assert not temp_files(small_disk)
    assert not catalogued(tmp_path / "state", "keep.bin")
    assert put(srv, "/fits.bin", b"small").status == 201  # the space came back
    assert catalogued(tmp_path / "state", "fits.bin")


def test_body_that_stops_arriving_is_408_and_stores_nothing(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    root = tmp_path / "root"
    root.mkdir()
    srv = ferryman("--allow-write", "--tokens", str(tokens), "--body-timeout", "1", root=root)
    with srv.connect() as conn:
        conn.send(
            b"PUT /slow.bin HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
            b"Content-Length: 100000\r\n\r\n" % WRITE.encode() + b"x" * 1000
        )
        r = conn.read()
        assert r.status == 408
        assert conn.closed_by_peer(5)
    assert not (root / "slow.bin").exists() and not temp_files(root)
    assert not catalogued(root / ".ferryman", "slow.bin")


def test_verify_writes_size_still_checks_digests(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    root = tmp_path / "root"
    root.mkdir()
    srv = ferryman("--allow-write", "--tokens", str(tokens), "--verify-writes", "size", root=root)
    data = pattern(300_000)
    assert put(srv, "/s.bin", data).status == 201
    assert (root / "s.bin").read_bytes() == data
    bad = {"Content-Digest": f"sha-256=:{b64(hashlib.sha256(b'x').digest())}:"}
    assert put(srv, "/t.bin", data, bad).status == 400  # the client's digest is checked anyway
    assert not (root / "t.bin").exists()

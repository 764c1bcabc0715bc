"""Archive members over real servers: .tar by offset, .tar.gz/.tgz through spool files.

Archives are built with tarfile at test time from self-identifying pattern
content. Every server gets its own --state-dir, so the spool (STATE/spool)
can be counted: a spool file must exist exactly as long as its transfer.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.app.spool import LOCK_NAME
from tests.integration.test_serving import parse_multipart
from tests.rawhttp import request_bytes
from tests.serverproc import ServerProcess, Servers, need, pattern, wait_until
from tests.unit.test_archive_index import with_a_forged_member

MTIME = 1_700_000_000
DIR_MTIME = 1_600_000_000
BIG = 16 * 1024 * 1024  # well past the socket buffers of a small-window client
KINDS = ("bundle.tar", "bundle.tgz", "bundle.tar.gz")
PLAIN = {  # member -> content
    "hello.txt": b"hello, archive\n",
    "data/p0.bin": b"",
    "data/p5000.bin": pattern(5000),
    "data/p1000000.bin": pattern(1_000_000),
    "docs/readme.md": b"# readme\n",
    "./dot/x.txt": b"dot segment\n",
    "odd name \u00fc.txt": b"odd\n",
    ".hidden": b"hidden\n",
    "data/.secret": b"secret\n",
    "../evil": b"evil\n",
    "/etc/x": b"absolute\n",
    "a/../../b": b"climbs\n",
    "shadowed.txt": b"replaced by a symlink below\n",
}
UNSERVABLE = (
    "evil", "etc/x", "b", "x", "link", "hard", "dev", "fifo", "shadowed.txt", "missing.txt",
    "data/p5000.bin/", "data/nope/x", ".hidden", "data/.secret", "hello.txt/x",
)  # fmt: skip


def _info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **attrs: object
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, size, MTIME
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def build_archive(path: Path, members: dict[str, bytes], *, extras: bool = True) -> None:
    gzipped = path.name.lower().endswith(("gz", "tgz"))
    with tarfile.open(path, "w:gz" if gzipped else "w", format=tarfile.PAX_FORMAT) as tar:
        if extras:
            docs = _info("docs", tarfile.DIRTYPE)
            docs.mtime = DIR_MTIME
            tar.addfile(docs)
        for name, data in members.items():
            tar.addfile(_info(name, size=len(data)), io.BytesIO(data))
        if extras:
            tar.addfile(_info("link", tarfile.SYMTYPE, linkname="hello.txt"))
            tar.addfile(_info("hard", tarfile.LNKTYPE, linkname="hello.txt"))
            tar.addfile(_info("dev", tarfile.CHRTYPE, devmajor=1, devminor=3))
            tar.addfile(_info("fifo", tarfile.FIFOTYPE))
            tar.addfile(_info("shadowed.txt", tarfile.SYMTYPE, linkname="hello.txt"))


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archives") / "root"
    root.mkdir()
    for name in KINDS:
        build_archive(root / name, PLAIN)
    (root / "sub").mkdir()
    build_archive(root / "sub" / "UPPER.TGZ", {"hello.txt": b"upper\n"}, extras=False)
    build_archive(root / "big.tgz", {"big.bin": pattern(BIG)}, extras=False)
    build_archive(root / "empty.tar", {}, extras=False)
    build_archive(
        root / "many.tar", {f"m/{i:05d}.txt": b"%d" % i for i in range(1500)}, extras=False
    )
    (root / "fake.tar").write_bytes(b"not a tar archive at all\n" * 100)
    forged = with_a_forged_member()
    (root / "forged.tar").write_bytes(forged)
    (root / "forged.tgz").write_bytes(gzip.compress(forged))
    (root / "dir.tar").mkdir()
    (root / "dir.tar" / "inside.txt").write_text("a directory named like an archive\n")
    return root


@pytest.fixture(
    scope="module",
    params=[("uvloop", "on", "16384"), ("asyncio", "off", "0")],
    ids=["uvloop-sendfile", "asyncio-buffered"],
)
def srv(
    request: pytest.FixtureRequest,
    archive_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    loop, sendfile, small = request.param
    state = tmp_path_factory.mktemp("state")
    proc = ServerProcess(
        archive_root, "--loop", loop, "--sendfile", sendfile, "--small-body", small,
        "--state-dir", str(state),
    )  # fmt: skip
    yield proc
    assert proc.stop() == 0, proc.log_text()


def spool_files(state: Path) -> list[str]:
    """What the spool holds, but its reservation lock."""
    directory = state / "spool"
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name != LOCK_NAME)


# -- members ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "member", ["hello.txt", "data/p0.bin", "data/p5000.bin", "data/p1000000.bin"]
)
def test_member_is_byte_exact(srv: ServerProcess, kind: str, member: str) -> None:
    with srv.connect() as conn:
        r = conn.get(f"/{kind}/{member}")
    assert r.status == 200, r.body
    assert r.body == PLAIN[member]
    assert r.header("content-length") == str(len(PLAIN[member]))
    assert r.header("accept-ranges") == "bytes"


@pytest.mark.parametrize("kind", KINDS)
def test_member_headers(srv: ServerProcess, kind: str) -> None:
    with srv.connect() as conn:
        a = conn.get(f"/{kind}/hello.txt")
        again = conn.get(f"/{kind}/hello.txt")
        other = conn.get(f"/{kind}/docs/readme.md")
        head = conn.request("HEAD", f"/{kind}/data/p1000000.bin")
    assert a.header("content-type") == "text/plain; charset=utf-8"
    assert a.header("last-modified") == "Tue, 14 Nov 2023 22:13:20 GMT"  # MTIME
    etag = a.header("etag") or ""
    assert re.fullmatch(r'"[0-9a-f]{24}"', etag)  # strong
    assert again.header("etag") == etag
    assert other.header("etag") not in (etag, None)
    assert (head.status, head.body, head.header("content-length")) == (200, b"", "1000000")


RANGES = ["bytes=100-199", "bytes=-500", "bytes=999000-", "bytes=0-0", "bytes=123457-654321"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("header", RANGES)
def test_single_range_of_a_member(srv: ServerProcess, kind: str, header: str) -> None:
    size = 1_000_000
    with srv.connect() as conn:
        r = conn.get(f"/{kind}/data/p1000000.bin", {"Range": header})
    assert r.status == 206, r.body
    content_range = re.fullmatch(r"bytes (\d+)-(\d+)/1000000", r.header("content-range") or "")
    assert content_range, r.headers
    start, end = map(int, content_range.groups())
    first, _, last = header.removeprefix("bytes=").partition("-")
    expected = (size - int(last), size - 1) if not first else (int(first), int(last or size - 1))
    assert (start, end) == expected
    assert r.body == pattern(end - start + 1, start)


@pytest.mark.parametrize("kind", KINDS)
def test_multiple_ranges_of_a_member(srv: ServerProcess, kind: str) -> None:
    with srv.connect() as conn:
        r = conn.get(f"/{kind}/data/p1000000.bin", {"Range": "bytes=500000-500015,0-15,-16"})
    assert r.status == 206
    parts = parse_multipart(r.body, r.header("content-type") or "")
    assert [p[1] for p in parts] == [
        "bytes 500000-500015/1000000", "bytes 0-15/1000000", "bytes 999984-999999/1000000",
    ]  # fmt: skip
    for _, content_range, payload in parts:
        start = int(content_range.split()[1].split("-")[0])
        assert payload == pattern(16, start)
    assert len(r.body) == int(r.header("content-length") or -1)


@pytest.mark.parametrize("kind", KINDS)
def test_unsatisfiable_range_of_a_member(srv: ServerProcess, kind: str) -> None:
    with srv.connect() as conn:
        r = conn.get(f"/{kind}/data/p5000.bin", {"Range": "bytes=5000-"})
    assert (r.status, r.header("content-range")) == (416, "bytes */5000")


@pytest.mark.parametrize("kind", KINDS)
def test_conditional_requests_on_a_member(srv: ServerProcess, kind: str) -> None:
    url = f"/{kind}/data/p5000.bin"
    with srv.connect() as conn:
        etag = conn.get(url).header("etag") or ""
        not_modified = conn.get(url, {"If-None-Match": etag})
        resumed = conn.get(url, {"Range": "bytes=4000-", "If-Range": etag})
        changed = conn.get(url, {"Range": "bytes=4000-", "If-Range": '"elsewhere"'})
        failed = conn.get(url, {"If-Match": '"elsewhere"'})
    assert (not_modified.status, not_modified.body) == (304, b"")
    assert (resumed.status, resumed.body) == (206, pattern(1000, 4000))
    assert (changed.status, changed.body) == (200, pattern(5000))
    assert failed.status == 412


@pytest.mark.parametrize("kind", KINDS)
def test_normalised_and_encoded_names(srv: ServerProcess, kind: str) -> None:
    with srv.connect() as conn:
        dot = conn.get(f"/{kind}/dot/x.txt")
        odd = conn.get(f"/{kind}/odd%20name%20%C3%BC.txt")
        up = conn.get(f"/{kind}/data/../hello.txt")
    assert (dot.status, dot.body) == (200, PLAIN["./dot/x.txt"])
    assert (odd.status, odd.body) == (200, b"odd\n")
    assert (up.status, up.body) == (200, PLAIN["hello.txt"])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("member", UNSERVABLE)
def test_unservable_members_are_404(srv: ServerProcess, kind: str, member: str) -> None:
    with srv.connect() as conn:
        r = conn.get(f"/{kind}/{member}")
    assert r.status == 404, (member, r.body)
    assert b"evil" not in r.body and b"absolute" not in r.body


# -- listings and what is (not) an archive ------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_listing_html(srv: ServerProcess, kind: str) -> None:
    with srv.connect() as conn:
        r = conn.get(f"/{kind}/")
    assert r.status == 200
    assert r.header("content-type") == "text/html; charset=utf-8"
    page = r.body.decode()
    assert f"<title>Index of /{kind}/</title>" in page
    hrefs = re.findall(r'<div class="row">.*?<a href="([^"]+)"', page)
    assert hrefs == ["/", "data/", "docs/", "dot/", "hello.txt", "odd%20name%20%C3%BC.txt"]


@pytest.mark.parametrize("kind", KINDS)
def test_listing_json(srv: ServerProcess, kind: str) -> None:
    with srv.connect() as conn:
        top = conn.get(f"/{kind}/", {"Accept": "application/json"})
        data = conn.get(f"/{kind}/data/", {"Accept": "application/json"})
    assert top.header("content-type") == "application/json"
    entries = {e["name"]: e for e in json.loads(top.body)["entries"]}
    assert entries["docs"] == {
        "name": "docs", "href": "docs/", "type": "directory", "size": 0,
        "modified": "Sun, 13 Sep 2020 12:26:40 GMT",  # DIR_MTIME, from the archive
    }  # fmt: skip
    assert entries["data"]["type"] == "directory"  # implied by its members
    doc = json.loads(data.body)
    assert doc["path"] == f"/{kind}/data/"
    assert [(e["name"], e["type"], e["size"]) for e in doc["entries"]] == [
        ("p0.bin", "file", 0),
        ("p5000.bin", "file", 5000),
        ("p1000000.bin", "file", 1_000_000),
    ]  # fmt: skip (natural order: numbers in names compare as numbers)


@pytest.mark.parametrize("kind", KINDS)
def test_directory_member_without_slash_redirects(srv: ServerProcess, kind: str) -> None:
    with srv.connect() as conn:
        r = conn.get(f"/{kind}/docs?x=1")
    assert (r.status, r.header("location")) == (301, f"/{kind}/docs/?x=1")


def test_the_archive_itself_is_a_file(srv: ServerProcess, archive_root: Path) -> None:
    with srv.connect() as conn:
        r = conn.get("/bundle.tgz")
    assert (r.status, r.body) == (200, (archive_root / "bundle.tgz").read_bytes())


@pytest.mark.parametrize(
    ("url", "status", "body"),
    [
        pytest.param("/sub/UPPER.TGZ/hello.txt", 200, b"upper\n"),
        ("/dir.tar/inside.txt", 200, b"a directory named like an archive\n"),
        ("/fake.tar/x", 404, None),
        ("/fake.tar/", 404, None),
        ("/missing.tar/x", 404, None),
        ("/bundle.tar/hello.txt/", 404, None),
    ],
)
def test_what_is_an_archive(srv: ServerProcess, url: str, status: int, body: bytes | None) -> None:
    with srv.connect() as conn:
        r = conn.get(url)
    assert r.status == status
    if body is not None:
        assert r.body == body


@pytest.mark.parametrize("archive", ["forged.tar", "forged.tgz"])
def test_a_member_of_negative_size_is_not_served(srv: ServerProcess, archive: str) -> None:
    with srv.connect() as conn:
        ok = conn.get(f"/{archive}/ok")
        forged = conn.get(f"/{archive}/neg")
        ranged = conn.get(f"/{archive}/neg", {"Range": "bytes=0-0"})
        listing = conn.get(f"/{archive}/", {"Accept": "application/json"})
    assert (ok.status, ok.body) == (200, b"fine")
    assert (forged.status, ranged.status) == (404, 404)
    assert [e["name"] for e in json.loads(listing.body)["entries"]] == ["ok"]


def test_empty_archive_lists_nothing(srv: ServerProcess) -> None:
    with srv.connect() as conn:
        r = conn.get("/empty.tar/", {"Accept": "application/json"})
    assert (r.status, json.loads(r.body)["entries"]) == (200, [])


def test_a_large_listing(srv: ServerProcess) -> None:
    """1,500 members: two pages of --listing-page-size (1,000), linked to each other."""
    with srv.connect() as conn:
        first = json.loads(conn.get("/many.tar/m/", {"Accept": "application/json"}).body)
        second = json.loads(conn.get(first["next"], {"Accept": "application/json"}).body)
        html = conn.get("/many.tar/m/?page=2")
        last = conn.get("/many.tar/m/" + second["entries"][-1]["href"])
    names = [e["name"] for e in first["entries"] + second["entries"]]
    assert names == [f"{i:05d}.txt" for i in range(1500)]
    assert (first["total"], first["pages"], second["next"], second["prev"]) == (
        1500, 2, None, "/many.tar/m/")  # fmt: skip
    assert html.body.count(b"<tr data-name=") == 500
    assert b'<link rel="prev" href="./">' in html.body
    assert last.body == b"1499"


def test_concurrent_requests_for_one_compressed_member(srv: ServerProcess) -> None:
    results: list[bytes] = []

    def fetch() -> None:
        with srv.connect() as conn:
            results.append(conn.get("/bundle.tgz/data/p1000000.bin").body)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [PLAIN["data/p1000000.bin"]] * 8


# -- the spool: a temporary file lives exactly as long as its transfer -------------------


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def start(ferryman: Servers, root: Path, state: Path, *flags: str) -> ServerProcess:
    """A server whose copies go with their last transfer (--spool-keep 0), unless told."""
    return ferryman(
        "--state-dir", str(state), "--grace-period", "2", "--spool-keep", "0", *flags, root=root
    )


def open_download(srv: ServerProcess, url: str) -> tuple[socket.socket, bytes]:
    """A GET from a client with a small receive window; returns the socket and body so far."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        sock.settimeout(10)
        sock.connect((srv.host, srv.port))
        sock.sendall(request_bytes("GET", url))
        buffered = b""
        while b"\r\n\r\n" not in buffered:
            chunk = sock.recv(65536)
            assert chunk, "closed before the head"
            buffered += chunk
        head, _, body = buffered.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert f"Content-Length: {BIG}".encode() in head
    except BaseException:
        sock.close()
        raise
    return sock, body


def read_until(sock: socket.socket, body: bytes, size: int) -> bytes:
    while len(body) < size:
        chunk = sock.recv(min(65536, size - len(body)))
        assert chunk, "closed early"
        body += chunk
    return body


def open_descriptors(pid: int) -> set[str]:
    """What a process has open, by target (a descriptor closed while we look is skipped)."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    return targets


def test_head_and_304_extract_nothing(ferryman: Servers, archive_root: Path, state: Path) -> None:
    srv = start(ferryman, archive_root, state)
    with srv.connect() as conn:
        head = conn.request("HEAD", "/bundle.tgz/data/p1000000.bin")
        etag = head.header("etag") or ""
        cached = conn.get("/bundle.tgz/data/p1000000.bin", {"If-None-Match": etag})
        assert not (state / "spool").exists()  # made on the first extraction, not before
        full = conn.get("/bundle.tgz/data/p1000000.bin")
    assert (head.status, head.header("content-length")) == (200, "1000000")
    assert cached.status == 304
    assert full.body == PLAIN["data/p1000000.bin"]
    assert (state / "spool").is_dir()
    assert wait_until(lambda: spool_files(state) == [], timeout=1.0)
    assert (state / "spool").stat().st_mode & 0o777 == 0o700


@pytest.mark.clients
def test_slow_curl_gets_the_member_whole_and_its_temp_file_goes(
    ferryman: Servers, archive_root: Path, state: Path, tmp_path: Path
) -> None:
    curl = need("curl")
    srv = start(ferryman, archive_root, state)
    out = tmp_path / "out.bin"
    url = f"{srv.url}/bundle.tar.gz/data/p5000.bin"
    done = subprocess.run(
        [curl, "-sS", "--fail", "--limit-rate", "500", "-o", str(out), url], timeout=30
    )
    assert done.returncode == 0
    assert out.read_bytes() == pattern(5000)
    assert wait_until(lambda: spool_files(state) == [], timeout=1.0), spool_files(state)


def test_temp_file_lives_with_the_transfer_and_goes_when_the_client_leaves(
    ferryman: Servers, archive_root: Path, state: Path
) -> None:
    srv = start(ferryman, archive_root, state)
    (worker,) = srv.child_pids()
    with srv.connect() as conn:  # warm up: the index is built and cached
        assert conn.get("/big.tgz/", {"Connection": "close"}).status == 200
        assert conn.closed_by_peer(5.0)  # the server's socket is gone too
    descriptors = open_descriptors(worker)
    sock, body = open_download(srv, "/big.tgz/big.bin")
    try:
        body = read_until(sock, body, BIG // 2)
        assert body == pattern(len(body))
        # Half-way, with the rest more than the socket buffers hold: the transfer is
        # running, so its file is still there though the handler returned long ago.
        assert len(spool_files(state)) == 1
    finally:
        sock.close()
    assert wait_until(lambda: spool_files(state) == [], timeout=1.0), spool_files(state)
    with srv.connect() as conn:  # the server is fine
        assert conn.get("/big.tgz/big.bin", {"Range": "bytes=-16"}).body == pattern(16, BIG - 16)
    assert wait_until(lambda: spool_files(state) == [], timeout=1.0)
    # Every descriptor (archive, its duplicates, the spool file, the socket) was closed.
    assert wait_until(lambda: open_descriptors(worker) == descriptors, timeout=2.0), (
        open_descriptors(worker) ^ descriptors
    )


class Zeros:
    def read(self, size: int = 0, /) -> bytes:
        return bytes(size)


def test_a_client_gone_before_the_extraction_ends_leaves_nothing(
    ferryman: Servers, tmp_path: Path, state: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    size = 256 * 1024 * 1024  # long enough to see the file appear while it is written
    with tarfile.open(root / "z.tgz", "w:gz", compresslevel=1) as tar:
        item = tarfile.TarInfo("zeros")
        item.size = size
        tar.addfile(item, Zeros())
    srv = start(ferryman, root, state)
    with srv.connect() as conn:
        conn.send(request_bytes("GET", "/z.tgz/zeros"))
        assert wait_until(lambda: len(spool_files(state)) == 1, timeout=10.0)
    # The handler is not cancelled: the extraction ends, finds the peer gone, and the
    # body it made is released without a byte sent.
    assert wait_until(lambda: spool_files(state) == [], timeout=10.0), spool_files(state)
    with srv.connect() as conn:
        r = conn.get("/z.tgz/zeros", {"Range": "bytes=-4"})
    assert (r.status, r.body) == (206, bytes(4))


def test_a_stop_that_aborts_a_transfer_removes_its_temp_file(
    ferryman: Servers, archive_root: Path, state: Path
) -> None:
    srv = start(ferryman, archive_root, state)  # grace period 2 s
    sock, body = open_download(srv, "/big.tgz/big.bin")
    try:
        read_until(sock, body, 1024 * 1024)
        assert len(spool_files(state)) == 1
        srv.signal(signal.SIGTERM)  # the client reads no more: the grace period runs out
        assert srv.wait(15) == 0
    finally:
        sock.close()
    assert spool_files(state) == []


def test_sigkilled_server_leaves_orphans_that_the_next_start_removes(
    ferryman: Servers, archive_root: Path, state: Path
) -> None:
    srv = start(ferryman, archive_root, state)
    workers = srv.child_pids()
    sock, body = open_download(srv, "/big.tgz/big.bin")
    try:
        read_until(sock, body, 1024 * 1024)
        orphans = spool_files(state)
        assert len(orphans) == 1
        srv.proc.kill()  # the arbiter first, so nothing restarts the worker
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        srv.proc.wait(10)
    finally:
        sock.close()
    assert spool_files(state) == orphans  # nobody was left to remove it
    (state / "spool" / "unrelated.txt").write_text("not ours")
    start(ferryman, archive_root, state)
    assert wait_until(lambda: spool_files(state) == ["unrelated.txt"], timeout=5.0)


def test_a_worker_killed_mid_transfer_has_its_files_swept(
    ferryman: Servers, archive_root: Path, state: Path
) -> None:
    srv = start(ferryman, archive_root, state)
    (worker,) = srv.child_pids()
    sock, body = open_download(srv, "/big.tgz/big.bin")
    try:
        read_until(sock, body, 1024 * 1024)
        assert len(spool_files(state)) == 1
        os.kill(worker, signal.SIGKILL)
        assert wait_until(lambda: spool_files(state) == [], timeout=5.0), spool_files(state)
    finally:
        sock.close()
    assert wait_until(lambda: srv.child_pids() not in ([], [worker]), timeout=10.0)
    with srv.connect() as conn:  # the replacement serves
        assert conn.get("/bundle.tgz/hello.txt").body == PLAIN["hello.txt"]


def test_an_archive_replaced_by_rename_is_indexed_again(
    ferryman: Servers, tmp_path: Path, state: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    build_archive(root / "r.tgz", {"a.txt": b"first\n"}, extras=False)
    srv = start(ferryman, root, state)
    with srv.connect() as conn:
        assert conn.get("/r.tgz/a.txt").body == b"first\n"
        build_archive(
            tmp_path / "new.tgz", {"b.txt": b"x", "a.txt": b"second version\n"}, extras=False
        )
        os.rename(tmp_path / "new.tgz", root / "r.tgz")
        assert conn.get("/r.tgz/a.txt").body == b"second version\n"
        assert conn.get("/r.tgz/b.txt").body == b"x"

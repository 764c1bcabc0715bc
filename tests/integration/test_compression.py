"""Compression against a real ferryman: codings on the fly, precompressed sidecars,
ETags and 304s per coding, Vary, ranges, a big file that does not block the loop, and
the memory a coded transfer takes."""

from __future__ import annotations

import http.client
import io
import os
import subprocess
import tarfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import brotli
import pytest
import zstandard
from bench.soak import children, vm_rss

from tests.serverproc import ServerProcess, Servers, need, wait_until

CODINGS = ("zstd", "br", "gzip")
JSON = b"[" + b",".join(b'{"id": %d, "name": "item %d", "tags": ["a", "b"]}' % (i, i)
                         for i in range(4000)) + b"]"  # fmt: skip
BIG = 100 * 1024 * 1024


def decode(coding: str | None, data: bytes) -> bytes:
    if coding is None:
        return data
    if coding == "gzip":
        return zlib.decompress(data, 31)
    if coding == "br":
        decoded: bytes = brotli.decompress(data)
        return decoded
    assert coding == "zstd"
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def words(size: int, seed: int = 7) -> bytes:
    """Text that compresses like text (not a repeated block)."""
    vocabulary = [b"%x" % (seed * 7919 + i * 104729) for i in range(997)]
    out = io.BytesIO()
    i = 0
    while out.tell() < size:
        out.write(vocabulary[(i * 31 + i // 7) % 997] + (b"\n" if i % 13 == 12 else b" "))
        i += 1
    return out.getvalue()[:size]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "data.json").write_bytes(JSON)
    (root / "app.js").write_bytes(words(3 * 1024 * 1024))  # above --compress-buffer: streamed
    (root / "tiny.txt").write_bytes(b"small text\n")
    (root / "photo.png").write_bytes(os.urandom(50_000))
    (root / "font.woff2").write_bytes(os.urandom(20_000))
    with tarfile.open(root / "bundle.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("docs/data.json")
        info.size = len(JSON)
        tar.addfile(info, io.BytesIO(JSON))
    return root


def get(
    srv: ServerProcess, path: str, *headers: tuple[str, str], method: str = "GET"
) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    try:
        conn.request(method, path, headers=dict(headers))
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


def ae(value: str) -> tuple[str, str]:
    return ("Accept-Encoding", value)


# -- on the fly ------------------------------------------------------------------------


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("path", ["/data.json", "/app.js", "/bundle.tar.gz/docs/data.json"])
def test_each_coding_decodes_to_the_file(
    ferryman: Servers, site: Path, coding: str, path: str
) -> None:
    srv = ferryman(root=site)
    response, body = get(srv, path, ae(coding))
    assert response.status == 200
    assert response.getheader("Content-Encoding") == coding
    assert response.getheader("Vary") == "Accept-Encoding"
    expected = JSON if path != "/app.js" else (site / "app.js").read_bytes()
    assert decode(coding, body) == expected
    assert len(body) < len(expected) // 3
    if path == "/app.js":  # larger than --compress-buffer: streamed
        assert response.getheader("Transfer-Encoding") == "chunked"
    else:
        assert response.getheader("Content-Length") == str(len(body))


@pytest.mark.clients
@pytest.mark.parametrize("path", ["/data.json", "/app.js"])
def test_curl_compressed_gets_the_exact_bytes(
    ferryman: Servers, site: Path, path: str, tmp_path: Path
) -> None:
    curl = need("curl")
    srv = ferryman(root=site)
    out = tmp_path / "out"
    for accept in ("gzip", "br", "zstd", None):
        args = [curl, "-sf", "--compressed", "-o", str(out), "-D", "-", srv.url + path]
        if accept is not None:
            args[1:1] = ["-H", f"Accept-Encoding: {accept}"]
        head = subprocess.run(args, check=True, capture_output=True, text=True).stdout.lower()
        assert out.read_bytes() == (site / path.lstrip("/")).read_bytes()
        assert f"content-encoding: {accept or 'zstd'}" in head  # curl's own list has zstd


def test_the_clients_preference_then_zstd_br_gzip(ferryman: Servers, site: Path) -> None:
    srv = ferryman(root=site)
    cases = {
        "gzip, deflate, br, zstd": "zstd",
        "gzip, br": "br",
        "gzip;q=1, zstd;q=0.5": "gzip",
        "br;q=0, *": "zstd",
        "identity": None,
        "gzip;q=0": None,
        "": None,
    }
    for accept, coding in cases.items():
        response, body = get(srv, "/data.json", ae(accept))
        assert response.getheader("Content-Encoding") == coding, accept
        assert decode(coding, body) == JSON


def test_identity_refused_and_nothing_else_is_406(ferryman: Servers, site: Path) -> None:
    srv = ferryman(root=site)
    response, body = get(srv, "/data.json", ae("identity;q=0, deflate"))
    assert response.status == 406
    assert b'"not_acceptable"' in body
    # Refusing identity makes even a small body coded.
    response, body = get(srv, "/tiny.txt", ae("identity;q=0, gzip"))
    assert response.getheader("Content-Encoding") == "gzip"
    assert decode("gzip", body) == b"small text\n"


@pytest.mark.parametrize("path", ["/photo.png", "/font.woff2", "/tiny.txt"])
def test_no_coding_for_compressed_types_or_small_bodies(
    ferryman: Servers, site: Path, path: str
) -> None:
    srv = ferryman(root=site)
    response, body = get(srv, path, ae("gzip, br, zstd"))
    assert response.getheader("Content-Encoding") is None
    assert body == (site / path.lstrip("/")).read_bytes()
    compressible = path.endswith(".txt")
    assert (response.getheader("Vary") == "Accept-Encoding") is compressible


def test_compress_none_and_a_list(ferryman: Servers, site: Path) -> None:
    off = ferryman("--compress", "none", "--precompressed", "none", root=site)
    response, _ = get(off, "/data.json", ae("gzip, br, zstd"))
    assert response.getheader("Content-Encoding") is None
    assert response.getheader("Vary") is None
    some = ferryman("--compress", "gzip", root=site)
    response, _ = get(some, "/data.json", ae("gzip, br, zstd"))
    assert response.getheader("Content-Encoding") == "gzip"


# -- validators, Vary, ranges --------------------------------------------------------------


def test_an_etag_per_coding_and_a_304_for_the_coding_asked(ferryman: Servers, site: Path) -> None:
    srv = ferryman(root=site)
    etags: dict[str, str] = {}
    for coding in (*CODINGS, "identity"):
        response, _ = get(srv, "/data.json", ae(coding))
        etags[coding] = response.getheader("ETag") or ""
    assert len(set(etags.values())) == 4
    assert all(etags[c] == etags["identity"][:-1] + f'+{c}"' for c in CODINGS)
    for coding in (*CODINGS, "identity"):
        response, body = get(srv, "/data.json", ae(coding), ("If-None-Match", etags[coding]))
        assert response.status == 304, coding
        assert response.getheader("ETag") == etags[coding]
        assert response.getheader("Vary") == "Accept-Encoding"
        # Another coding's ETag does not match this answer.
        other = etags["gzip" if coding != "gzip" else "br"]
        response, body = get(srv, "/data.json", ae(coding), ("If-None-Match", other))
        assert response.status == 200
        assert decode(None if coding == "identity" else coding, body) == JSON


def test_vary_on_every_answer_of_a_compressible_file(ferryman: Servers, site: Path) -> None:
    srv = ferryman(root=site)
    answers = [
        get(srv, "/data.json"),
        get(srv, "/data.json", ae("gzip")),
        get(srv, "/data.json", ae("gzip"), method="HEAD"),
        get(srv, "/data.json", ("Range", "bytes=0-9")),
        get(srv, "/data.json", ae("br"), ("Range", "bytes=0-9")),
        get(srv, "/app.js", ae("zstd")),
        get(srv, "/bundle.tar.gz/docs/data.json", ae("gzip")),
    ]
    etag = answers[1][0].getheader("ETag") or ""
    answers.append(get(srv, "/data.json", ae("gzip"), ("If-None-Match", etag)))
    for response, _ in answers:
        assert response.getheader("Vary") == "Accept-Encoding", response.status


def test_a_range_of_a_file_coded_on_the_fly_is_answered_from_identity(
    ferryman: Servers, site: Path
) -> None:
    srv = ferryman(root=site)
    response, body = get(srv, "/data.json", ae("gzip"), ("Range", "bytes=100-199"))
    assert response.status == 206
    assert response.getheader("Content-Encoding") is None
    assert body == JSON[100:200]
    # An If-Range naming the coded answer does not match identity: the whole coded body.
    coded, _ = get(srv, "/data.json", ae("gzip"))
    assert coded.getheader("Accept-Ranges") is None  # no byte positions of a coding on the fly
    etag = coded.getheader("ETag") or ""
    response, body = get(srv, "/data.json", ae("gzip"), ("Range", "bytes=100-"),
                         ("If-Range", etag))  # fmt: skip
    assert response.status == 200
    assert decode("gzip", body) == JSON


def test_head_of_a_coded_answer(ferryman: Servers, site: Path) -> None:
    srv = ferryman(root=site)
    response, body = get(srv, "/app.js", ae("gzip"), method="HEAD")
    assert response.status == 200 and body == b""
    assert response.getheader("Content-Encoding") == "gzip"


# -- precompressed sidecars -------------------------------------------------------------


def _sidecar(site: Path, coding: str, data: bytes, *, older: bool = False) -> Path:
    suffix = {"gzip": ".gz", "br": ".br", "zstd": ".zst"}[coding]
    path = site / f"data.json{suffix}"
    path.write_bytes(data)
    st = (site / "data.json").stat()
    if older:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    return path


def test_a_fresh_sidecar_is_served_with_its_coding_and_the_files_type(
    ferryman: Servers, site: Path
) -> None:
    made = {
        "gzip": _gzip9(JSON),
        "br": brotli.compress(JSON, quality=11),
        "zstd": zstandard.ZstdCompressor(level=19).compress(JSON),
    }
    for coding, data in made.items():
        _sidecar(site, coding, data)
    srv = ferryman(root=site)
    for coding, data in made.items():
        response, body = get(srv, "/data.json", ae(coding))
        assert response.getheader("Content-Encoding") == coding
        assert response.getheader("Content-Type") == "application/json; charset=utf-8"
        assert body == data  # the sidecar's own bytes
        assert decode(coding, body) == JSON
    # Among codings wanted equally, a sidecar of any comes before coding on the fly.
    (site / "data.json.zst").unlink()
    response, body = get(srv, "/data.json", ae("gzip, deflate, br, zstd"))
    assert response.getheader("Content-Encoding") == "br" and body == made["br"]
    # A higher q still wins over a sidecar.
    response, body = get(srv, "/data.json", ae("zstd, br;q=0.5"))
    assert response.getheader("Content-Encoding") == "zstd"
    assert body != made["zstd"] and decode("zstd", body) == JSON


def _gzip9(data: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


def test_a_stale_sidecar_is_ignored(ferryman: Servers, site: Path) -> None:
    stale = _sidecar(site, "gzip", _gzip9(b"an older version of the file"), older=True)
    srv = ferryman(root=site)
    response, body = get(srv, "/data.json", ae("gzip"))
    assert response.getheader("Content-Encoding") == "gzip"
    assert decode("gzip", body) == JSON  # coded on the fly, not the stale sidecar
    os.utime(stale)  # now it is newer than the file: served
    response, body = get(srv, "/data.json", ae("gzip"))
    assert body == stale.read_bytes()


def test_a_sidecar_by_its_own_name_is_an_ordinary_download(ferryman: Servers, site: Path) -> None:
    gz = _sidecar(site, "gzip", _gzip9(JSON))
    srv = ferryman(root=site)
    response, body = get(srv, "/data.json.gz", ae("gzip, br, zstd"))
    assert response.getheader("Content-Encoding") is None
    assert response.getheader("Content-Type") == "application/gzip"
    assert body == gz.read_bytes()


def test_ranges_of_a_sidecar_are_exact_and_its_etag_its_own(ferryman: Servers, site: Path) -> None:
    gz = _sidecar(site, "gzip", _gzip9(JSON)).read_bytes()
    srv = ferryman(root=site)
    whole, _ = get(srv, "/data.json", ae("gzip"))
    etag = whole.getheader("ETag") or ""
    response, body = get(srv, "/data.json", ae("gzip"), ("Range", "bytes=10-109"))
    assert response.status == 206
    assert response.getheader("Content-Encoding") == "gzip"
    assert response.getheader("Content-Range") == f"bytes 10-109/{len(gz)}"
    assert body == gz[10:110]
    response, body = get(srv, "/data.json", ae("gzip"), ("Range", "bytes=10-"),
                         ("If-Range", etag))  # fmt: skip
    assert response.status == 206 and body == gz[10:]
    response, _ = get(srv, "/data.json", ae("gzip"), ("If-None-Match", etag))
    assert response.status == 304
    plain, _ = get(srv, "/data.json")
    assert etag not in (plain.getheader("ETag"), None)


def test_a_kept_sidecar_answers_again_and_shows_every_change(ferryman: Servers, site: Path) -> None:
    """A sidecar's descriptor stays open between requests: the same bytes again, its
    own name still an ordinary download, and a changed, replaced or removed sidecar
    seen at the next request."""
    first = _gzip9(JSON)
    gz = _sidecar(site, "gzip", first)
    srv = ferryman(root=site)

    def coded() -> tuple[http.client.HTTPResponse, bytes]:
        response, body = get(srv, "/data.json", ae("gzip"))
        assert response.getheader("Content-Encoding") == "gzip"
        assert response.getheader("Content-Type") == "application/json; charset=utf-8"
        return response, body

    for _ in range(3):
        assert coded()[1] == first
    # The same descriptor answers its own name as a file, and then the sidecar again.
    response, body = get(srv, "/data.json.gz", ae("gzip"))
    assert response.getheader("Content-Encoding") is None and body == first
    assert response.getheader("Content-Type") == "application/gzip"
    assert coded()[1] == first
    # Changed in place, the same size: new bytes, a new ETag.
    etag = coded()[0].getheader("ETag")
    second = bytes(b ^ 0xFF if i == 20 else b for i, b in enumerate(first))
    with gz.open("r+b") as f:
        f.write(second)
    response, body = coded()
    assert body == second and response.getheader("ETag") != etag
    # Replaced by rename.
    third = _gzip9(JSON + b" ")
    (site / "new.gz").write_bytes(third)
    os.replace(site / "new.gz", gz)
    assert coded()[1] == third
    # Removed: coded on the fly.
    gz.unlink()
    body = coded()[1]
    assert body not in (first, second, third) and decode("gzip", body) == JSON


def test_precompressed_none(ferryman: Servers, site: Path) -> None:
    _sidecar(site, "gzip", _gzip9(b"not what the file says"))
    srv = ferryman("--precompressed", "none", root=site)
    _, body = get(srv, "/data.json", ae("gzip"))
    assert decode("gzip", body) == JSON


# -- the loop, and memory -------------------------------------------------------------------


def _worker_pid(srv: ServerProcess) -> int:
    assert wait_until(lambda: children(srv.proc.pid))
    return next(iter(children(srv.proc.pid)))


def test_a_big_file_coded_on_the_fly_does_not_block_the_loop(
    ferryman: Servers, tmp_path: Path
) -> None:
    """100 MiB of text coded while other requests are answered, in bounded memory."""
    root = tmp_path / "big"
    root.mkdir()
    with open(root / "big.txt", "wb") as f:
        block = words(1024 * 1024)
        for i in range(BIG // len(block)):
            f.write(block[i:] + block[:i])
    (root / "small.txt").write_bytes(b"answered\n")
    srv = ferryman("--workers", "1", root=root)
    worker = _worker_pid(srv)
    before = vm_rss(worker)
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=120)
    conn.request("GET", "/big.txt", headers={"Accept-Encoding": "gzip"})
    big = conn.getresponse()
    assert big.getheader("Transfer-Encoding") == "chunked"
    decoder = zlib.decompressobj(31)
    done = threading.Event()
    state = {"decoded": 0, "peak": before}
    answered_during: list[int] = []

    def read_big() -> None:
        expected = open(root / "big.txt", "rb")  # noqa: SIM115
        try:
            while chunk := big.read(256 * 1024):
                data = decoder.decompress(chunk)
                assert data == expected.read(len(data))
                state["decoded"] += len(data)
                state["peak"] = max(state["peak"], vm_rss(worker))
            assert decoder.flush() == b"" and not expected.read(1)
        finally:
            expected.close()
            done.set()

    reader = threading.Thread(target=read_big)
    reader.start()
    try:
        while not done.is_set() and len(answered_during) < 20:
            response, body = get(srv, "/small.txt")
            if not done.is_set():
                answered_during.append(response.status)
            assert body == b"answered\n"
    finally:
        reader.join(120)
        conn.close()
    assert state["decoded"] == BIG
    assert len(answered_during) >= 5  # answered while the big body was being coded and sent
    # One step's input and output, the coder's window, the write buffer: not the file.
    assert state["peak"] - before < 48 * 1024 * 1024, (before, state["peak"])


@pytest.mark.slow
def test_coded_answers_repeated_do_not_grow_memory(ferryman: Servers, site: Path) -> None:
    """Short soak: every coding, whole (from memory and coded again) and streamed."""
    long = os.environ.get("FERRYMAN_SLOW") == "1"
    srv = ferryman("--workers", "1", "--compress-cache", "64KiB", root=site)
    worker = _worker_pid(srv)
    paths = ["/data.json", "/bundle.tar.gz/docs/data.json", "/tiny.txt"]

    def rounds(count: int) -> Iterator[None]:
        for i in range(count):
            coding = CODINGS[i % 3]
            for path in paths:
                response, body = get(srv, path, ae(coding))
                assert response.status == 200
            if i % 10 == 0:
                response, body = get(srv, "/app.js", ae(coding))
                assert decode(coding, body) == (site / "app.js").read_bytes()
            yield

    for _ in rounds(100):  # warm up: threads, coders, index, kept bodies
        pass
    warm = vm_rss(worker)
    for _ in rounds(2000 if long else 400):
        pass
    growth = vm_rss(worker) - warm
    assert growth < 4 * 1024 * 1024, f"RSS grew {growth / 2**20:.2f} MiB"


# -- a bucket -----------------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True], ids=["store", "cache"])
def test_a_buckets_objects_are_coded_on_the_fly(
    request: pytest.FixtureRequest, tmp_path: Path, cached: bool
) -> None:
    from tests.s3server import s3_env

    moto = request.getfixturevalue("moto_server")
    bucket = moto.create_bucket()
    big = words(2 * 1024 * 1024)  # above --compress-buffer: streamed
    moto.put_object(bucket, "data.json", JSON)
    moto.put_object(bucket, "big.txt", big)
    args = ["--state-dir", str(tmp_path / "state")]
    if cached:
        args += ["--cache-dir", str(tmp_path / "cache")]
    srv = ServerProcess(f"s3://{bucket}", *args, env=s3_env(moto.url))
    try:
        for _ in range(2):  # the second time from a warm cache entry, when there is one
            for path, expected in (("/data.json", JSON), ("/big.txt", big)):
                for coding in CODINGS:
                    response, body = get(srv, path, ae(coding))
                    assert response.getheader("Content-Encoding") == coding
                    assert response.getheader("Vary") == "Accept-Encoding"
                    assert decode(coding, body) == expected
                response, body = get(srv, path, ae("gzip"), ("Range", "bytes=5-14"))
                assert response.status == 206 and body == expected[5:15]
                assert response.getheader("Content-Encoding") is None
        etag = get(srv, "/data.json", ae("br"))[0].getheader("ETag") or ""
        assert get(srv, "/data.json", ae("br"), ("If-None-Match", etag))[0].status == 304
    finally:
        assert srv.stop() == 0, srv.log_text()

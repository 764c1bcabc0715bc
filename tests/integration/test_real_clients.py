"""Real download clients against a real ferryman: pause and resume must be exact.

curl, wget and aria2c resume or split downloads with Range requests; each
test checks the finished file's SHA-256 against the source and, through the
access log, that the bytes really came from Range requests (206), not from a
silent full re-download. The If-Range test proves a file replaced between
two halves is sent whole (200) instead of being stitched from two versions.

Every test runs over each transfer path (uvloop/asyncio, sendfile on/off).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serverproc import TRANSFER_PATHS, ServerProcess, Servers, need, pattern

pytestmark = pytest.mark.clients

BIG = "p5242887.bin"  # 5 MiB + 7 bytes in the shared docroot
BIG_SIZE = 5 * 1024 * 1024 + 7
CLIENT_TIMEOUT = 30
# combined format: 127.0.0.1 - - [time] "GET /x HTTP/1.1" 206 1234 "-" "curl/7.88.1"
LOG_LINE = re.compile(r'"(\S+) (\S+) HTTP/1\.[01]" (\d{3}) (\d+) "[^"]*" "([^"]*)"')

Start = Callable[..., ServerProcess]


@dataclass(frozen=True)
class Logged:
    method: str
    target: str
    status: int
    size: int
    agent: str


@dataclass
class LoggedServer:
    """A ferryman with an access log file that tests can read back."""

    srv: ServerProcess
    log_path: Path

    @property
    def url(self) -> str:
        return self.srv.url

    def entries(self, target: str) -> list[Logged]:
        """Stop the server (which flushes its log) and return the lines for `target`."""
        assert self.srv.stop() == 0, self.srv.log_text()
        found = [
            Logged(m[1], m[2], int(m[3]), int(m[4]), m[5])
            for m in LOG_LINE.finditer(self.log_path.read_text())
        ]
        return [entry for entry in found if entry.target == target]


@pytest.fixture(params=TRANSFER_PATHS)
def start(
    request: pytest.FixtureRequest, ferryman: Servers, tmp_path: Path
) -> Callable[..., LoggedServer]:
    """Start a ferryman on this test's transfer path, with an access log."""
    loop, sendfile = request.param

    def run(*, root: Path | None = None) -> LoggedServer:
        log_path = tmp_path / "access.log"
        srv = ferryman(
            "--loop", loop, "--sendfile", sendfile, "--access-log", str(log_path), root=root
        )
        return LoggedServer(srv, log_path)

    return run


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_digest(docroot: Path, name: str) -> str:
    return sha256((docroot / name).read_bytes())


def run_client(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, cwd=cwd, check=False
    )
    assert done.returncode == 0, f"{argv[0]} failed ({done.returncode}):\n{done.stderr}"
    return done


def interrupted_curl(url: str, out: Path, keep: int) -> None:
    """Start curl, take the first `keep` bytes it delivers, then kill it mid-transfer.

    curl writes into a pipe nobody drains past `keep` bytes, so it stalls mid-body
    and dies with the download unfinished, as a dropped connection would leave it.
    """
    proc = subprocess.Popen([need("curl"), "-s", url], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        data = proc.stdout.read(keep)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert len(data) == keep, "curl never delivered the first part"
    out.write_bytes(data)


# -- curl ---------------------------------------------------------------------------


def test_curl_resumes_a_killed_download_with_a_range_request(
    start: Callable[..., LoggedServer], docroot: Path, tmp_path: Path
) -> None:
    server = start()
    out = tmp_path / BIG
    kept = 777_777  # not aligned to any block or record size
    interrupted_curl(f"{server.url}/{BIG}", out, kept)

    run_client(need("curl"), "-sS", "-C", "-", "-o", str(out), f"{server.url}/{BIG}")

    assert sha256(out.read_bytes()) == source_digest(docroot, BIG)
    resumed = [e for e in server.entries(f"/{BIG}") if e.status == 206]
    assert len(resumed) == 1, resumed
    assert resumed[0].size == BIG_SIZE - kept, "the resume must fetch exactly the missing tail"


def test_curl_continue_completes_a_ranged_prefix(
    start: Callable[..., LoggedServer], docroot: Path, tmp_path: Path
) -> None:
    server = start()
    out = tmp_path / BIG
    prefix = 1_000_003  # not aligned to any block or record size
    run_client(need("curl"), "-sS", "-r", f"0-{prefix - 1}", "-o", str(out), f"{server.url}/{BIG}")
    assert out.read_bytes() == pattern(prefix)

    run_client(need("curl"), "-sS", "-C", "-", "-o", str(out), f"{server.url}/{BIG}")

    assert sha256(out.read_bytes()) == source_digest(docroot, BIG)
    entries = server.entries(f"/{BIG}")
    assert [(e.status, e.size) for e in entries] == [(206, prefix), (206, BIG_SIZE - prefix)]


def test_curl_if_range_with_an_old_etag_gets_the_whole_new_file(
    start: Callable[..., LoggedServer], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    target = root / "changing.bin"
    old = pattern(200_000)
    target.write_bytes(old)
    server = start(root=root)
    url = f"{server.url}/changing.bin"
    curl = need("curl")

    first_headers = tmp_path / "first.headers"
    run_client(curl, "-sS", "-r", "0-99", "-D", str(first_headers), "-o", str(tmp_path / "a"), url)
    old_etag = header_value(first_headers, "etag")
    assert (tmp_path / "a").read_bytes() == old[:100]

    # A new version of the same size, installed atomically as a publisher would.
    new = pattern(200_000, start=1_000_000)
    staging = root / ".staging"
    staging.write_bytes(new)
    os.replace(staging, target)

    rest_headers = tmp_path / "rest.headers"
    rest = tmp_path / "rest"
    run_client(
        curl, "-sS", "-r", "100-", "-H", f"If-Range: {old_etag}",
        "-D", str(rest_headers), "-o", str(rest), url,
    )  # fmt: skip
    assert status_of(rest_headers) == 200, "a stale If-Range must turn the Range off"
    assert header_value(rest_headers, "content-range") is None
    assert rest.read_bytes() == new, "the whole new version, never old and new bytes mixed"
    assert header_value(rest_headers, "etag") != old_etag


def test_curl_if_range_with_the_current_etag_gets_the_range(
    start: Callable[..., LoggedServer], docroot: Path, tmp_path: Path
) -> None:
    server = start()
    url = f"{server.url}/{BIG}"
    curl = need("curl")
    head = tmp_path / "head.headers"
    run_client(curl, "-sS", "-I", "-D", str(head), "-o", os.devnull, url)
    etag = header_value(head, "etag")
    assert etag is not None and etag.startswith('"'), "a strong ETag is needed for If-Range"

    out, hdrs = tmp_path / "tail", tmp_path / "tail.headers"
    run_client(curl, "-sS", "-r", "100-", "-H", f"If-Range: {etag}", "-D", str(hdrs), "-o",
               str(out), url)  # fmt: skip
    assert status_of(hdrs) == 206
    assert header_value(hdrs, "content-range") == f"bytes 100-{BIG_SIZE - 1}/{BIG_SIZE}"
    assert out.read_bytes() == (docroot / BIG).read_bytes()[100:]


def header_value(dump: Path, name: str) -> str | None:
    """A header of the last response in a curl -D dump."""
    last = dump.read_bytes().decode("latin-1").split("\r\n\r\n")[-2]
    for line in last.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def status_of(dump: Path) -> int:
    last = dump.read_bytes().decode("latin-1").split("\r\n\r\n")[-2]
    return int(last.split(" ", 2)[1])


# -- aria2c ---------------------------------------------------------------------------


def test_aria2c_segmented_download_is_exact(
    start: Callable[..., LoggedServer], docroot: Path, tmp_path: Path
) -> None:
    aria2c = need("aria2c")
    server = start()
    run_client(
        aria2c, "-x8", "-s8", "-k1M", "--allow-overwrite=true", "--auto-file-renaming=false",
        "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn",
        "-d", str(tmp_path), "-o", BIG, f"{server.url}/{BIG}",
    )  # fmt: skip

    assert sha256((tmp_path / BIG).read_bytes()) == source_digest(docroot, BIG)
    entries = server.entries(f"/{BIG}")
    partial = [e for e in entries if e.status == 206]
    assert len(partial) >= 2, f"aria2c should have split the download: {entries}"
    assert all(e.agent.startswith("aria2") for e in entries)


# -- wget -------------------------------------------------------------------------------


def test_wget_continue_finishes_a_partial_file(
    start: Callable[..., LoggedServer], docroot: Path, tmp_path: Path
) -> None:
    wget = need("wget")
    server = start()
    source = (docroot / BIG).read_bytes()
    partial = 3_333_333
    (tmp_path / BIG).write_bytes(source[:partial])

    run_client(wget, "-q", "-c", "-P", str(tmp_path), f"{server.url}/{BIG}")

    assert sha256((tmp_path / BIG).read_bytes()) == sha256(source)
    entries = server.entries(f"/{BIG}")
    assert [(e.status, e.size) for e in entries] == [(206, BIG_SIZE - partial)]
    assert entries[0].agent.startswith("Wget")


def test_wget_continue_on_a_complete_file_downloads_nothing(
    start: Callable[..., LoggedServer], docroot: Path, tmp_path: Path
) -> None:
    """wget asks for bytes=SIZE-: the server answers 416 and the file stays intact."""
    wget = need("wget")
    server = start()
    source = (docroot / "p1000000.bin").read_bytes()
    (tmp_path / "p1000000.bin").write_bytes(source)

    run_client(wget, "-q", "-c", "-P", str(tmp_path), f"{server.url}/p1000000.bin")

    assert (tmp_path / "p1000000.bin").read_bytes() == source
    entries = server.entries("/p1000000.bin")
    assert [e.status for e in entries] == [416], entries

"""HTTPS: a real ferryman with --tls-cert and --tls-key, real clients, real sockets.

Certificates are made per test (tests/tlscerts.py) and trusted by the
clients as their own CA: curl --cacert, wget --ca-certificate, aria2c
--ca-certificate, Python's ssl with cafile. What is checked: bodies byte for
byte on every loop with --sendfile on (a sendfile on a TLS socket would put
plaintext into the stream), ranges and resumes, ALPN and the protocol
floor, a certificate that changes on SIGHUP (and one that is bad then),
and clients that are not TLS clients: plain HTTP, nothing at all, half a
handshake, many of them at once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.rawhttp import Conn
from tests.serverproc import ServerProcess, need, wait_until
from tests.tlscerts import Pair, make_pair

BIG_SIZE = 100 * 1024 * 1024
CLIENT_TIMEOUT = 60
# combined format: ... "GET /x HTTP/1.1" 206 1234 "-" "curl/7.88.1"
LOG_LINE = re.compile(r'"GET (\S+) HTTP/1\.[01]" (\d{3}) (\d+) "[^"]*" "([^"]*)"')
WORKER_READY = re.compile(r"ferryman\[(\d+)\] INFO worker (\d+) ready")
# The first bytes of a TLS handshake record; the rest of the ClientHello never comes.
HALF_A_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path / "tls", "first")


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree holding one 100 MiB file of random bytes (and a small one)."""
    root = tmp_path_factory.mktemp("tls-root")
    with open(root / "big.bin", "wb") as f:
        for _ in range(BIG_SIZE // (1 << 20)):
            f.write(os.urandom(1 << 20))
    (root / "hello.txt").write_text("hello, world\n")
    return root


def client_context(pair: Pair) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pair.cert))


@contextmanager
def tls_conn(srv: ServerProcess, context: ssl.SSLContext) -> Iterator[Conn]:
    raw = socket.create_connection((srv.host, srv.port), timeout=10)
    try:
        sock = context.wrap_socket(raw, server_hostname=srv.host)
    except BaseException:
        raw.close()
        raise
    with Conn(sock) as conn:
        yield conn


def served_certificate(srv: ServerProcess) -> bytes:
    """The certificate a new connection gets (DER), whoever issued it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with tls_conn(srv, context) as conn:
        assert isinstance(conn.sock, ssl.SSLSocket)
        cert = conn.sock.getpeercert(binary_form=True)
        assert conn.get("/hello.txt").status == 200
    assert cert is not None
    return cert


def handshake_lines(srv: ServerProcess) -> list[str]:
    return [line for line in list(srv.lines) if "TLS handshake" in line]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def run_client(*argv: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(argv, capture_output=True, timeout=CLIENT_TIMEOUT, check=False)
    assert done.returncode == 0, f"{argv[0]} failed ({done.returncode}): {done.stderr!r}"
    return done


def access_entries(srv: ServerProcess, log: Path, target: str) -> list[tuple[int, int, str]]:
    """(status, size, agent) of each GET of `target`, once the server stopped."""
    assert srv.stop() == 0, srv.log_text()
    return [(int(m[2]), int(m[3]), m[4]) for m in LOG_LINE.finditer(log.read_text())
            if m[1] == target]  # fmt: skip


# -- the start --------------------------------------------------------------------------


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "serve", *args, "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_readiness_line_says_https(ferryman, pair: Pair) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman(*pair.flags())
    assert srv.url.startswith("https://127.0.0.1:"), srv.log_text()
    assert "TLS certificate CN=first, valid until" in srv.log_text()
    assert served_certificate(srv) == pair.der


@pytest.mark.parametrize("case", ["missing", "mismatched", "expired", "without-key"])
def test_a_certificate_that_cannot_be_served_stops_the_start(
    tmp_path: Path, docroot: Path, pair: Pair, case: str
) -> None:
    other = make_pair(tmp_path / "other", "other")
    expired = make_pair(tmp_path / "expired", "expired",
                        not_before=_days(-60), not_after=_days(-1))  # fmt: skip
    flags, named = {
        "missing": (("--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(pair.key)),
                    "(--tls-cert): cannot read it (No such file or directory)"),
        "mismatched": (("--tls-cert", str(pair.cert), "--tls-key", str(other.key)),
                       "does not belong to TLS certificate"),
        "expired": (expired.flags(), "(CN=expired) expired on"),
        "without-key": (("--tls-cert", str(pair.cert)), "--tls-cert needs --tls-key"),
    }[case]  # fmt: skip
    done = serve(str(docroot), *flags)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "started worker" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if "cannot start:" in line]
    assert len(lines) == 1 and named in lines[0], done.stderr


def _days(n: int):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=n)


# -- real clients -------------------------------------------------------------------------


@pytest.mark.clients
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_curl_downloads_100_mib_byte_exact_with_sendfile_on(  # type: ignore[no-untyped-def]
    ferryman, big_root: Path, pair: Pair, tmp_path: Path, loop: str
) -> None:
    """--sendfile on is the default: over TLS the body must still go through the transport."""
    curl = need("curl")
    srv = ferryman(*pair.flags(), "--loop", loop, "--sendfile", "on", root=big_root)
    out = tmp_path / "big.bin"
    run_client(curl, "-sS", "--cacert", str(pair.cert), "-o", str(out), f"{srv.url}/big.bin")
    assert sha256_file(out) == sha256_file(big_root / "big.bin")
    source = (big_root / "big.bin").read_bytes()
    one = run_client(curl, "-sS", "--cacert", str(pair.cert), "-r", "12345678-12400000",
                     f"{srv.url}/big.bin")  # fmt: skip
    assert one.stdout == source[12345678:12400001]
    parts = run_client(curl, "-sS", "-i", "--cacert", str(pair.cert),
                       "-r", "0-99,50000000-50000099", f"{srv.url}/big.bin")  # fmt: skip
    assert b"206 Partial Content" in parts.stdout
    assert source[:100] in parts.stdout and source[50000000:50000100] in parts.stdout
    assert "Traceback" not in srv.log_text()


@pytest.mark.clients
def test_wget_continues_a_partial_file_over_https(  # type: ignore[no-untyped-def]
    ferryman, big_root: Path, pair: Pair, tmp_path: Path
) -> None:
    wget = need("wget")
    log = tmp_path / "access.log"
    srv = ferryman(*pair.flags(), "--access-log", str(log), root=big_root)
    out = tmp_path / "out"
    out.mkdir()
    kept = 33_333_333
    with open(big_root / "big.bin", "rb") as source:
        (out / "big.bin").write_bytes(source.read(kept))
    run_client(wget, "-q", "-c", f"--ca-certificate={pair.cert}", "-P", str(out),
               f"{srv.url}/big.bin")  # fmt: skip
    assert sha256_file(out / "big.bin") == sha256_file(big_root / "big.bin")
    entries = access_entries(srv, log, "/big.bin")
    assert [(status, size) for status, size, _ in entries] == [(206, BIG_SIZE - kept)], entries


@pytest.mark.clients
def test_aria2c_resumes_over_https(  # type: ignore[no-untyped-def]
    ferryman, big_root: Path, pair: Pair, tmp_path: Path
) -> None:
    aria2c = need("aria2c")
    log = tmp_path / "access.log"
    srv = ferryman(*pair.flags(), "--access-log", str(log), root=big_root)
    kept = 44_444_444
    with open(big_root / "big.bin", "rb") as source:
        (tmp_path / "big.bin").write_bytes(source.read(kept))
    run_client(
        aria2c, "-c", f"--ca-certificate={pair.cert}", "--file-allocation=none",
        "--summary-interval=0", "--console-log-level=warn", "-d", str(tmp_path),
        "-o", "big.bin", f"{srv.url}/big.bin",
    )  # fmt: skip
    assert sha256_file(tmp_path / "big.bin") == sha256_file(big_root / "big.bin")
    entries = access_entries(srv, log, "/big.bin")
    # aria2c first reads a little of a whole GET, then resumes at its own piece boundary
    # at or before the end of the partial file: the tail comes from a Range request.
    tails = [size for status, size, _ in entries if status == 206]
    assert len(tails) == 1 and BIG_SIZE - kept <= tails[0] < BIG_SIZE, entries
    assert sum(size for _, size, _ in entries) < BIG_SIZE, entries  # not downloaded again whole


# -- Python's ssl: ALPN and the protocol floor ------------------------------------------------


def test_alpn_selects_http_1_1(ferryman, pair: Pair) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman(*pair.flags())
    for offered, selected in ((["h2", "http/1.1"], "http/1.1"), (["h2"], None)):
        context = client_context(pair)
        context.set_alpn_protocols(offered)
        with tls_conn(srv, context) as conn:
            assert conn.sock.selected_alpn_protocol() == selected  # type: ignore[attr-defined]
            assert conn.get("/hello.txt").status == 200


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_2_is_the_floor(ferryman, pair: Pair) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman(*pair.flags())
    floor = client_context(pair)
    floor.maximum_version = ssl.TLSVersion.TLSv1_2
    with tls_conn(srv, floor) as conn:
        assert conn.sock.version() == "TLSv1.2"  # type: ignore[attr-defined]
        assert conn.get("/hello.txt").status == 200

    old = client_context(pair)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client's OpenSSL would not offer 1.1 else
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)), tls_conn(srv, old):
        pass
    assert wait_until(lambda: handshake_lines(srv), 10)
    assert "failed: unsupported protocol" in handshake_lines(srv)[0], srv.log_text()
    assert served_certificate(srv) == pair.der  # and the server goes on


def test_a_client_closing_with_close_notify_is_closed_quietly(ferryman, pair: Pair) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman(*pair.flags())
    for _ in range(3):
        with tls_conn(srv, client_context(pair)) as conn:
            assert conn.get("/hello.txt").status == 200
            conn.stream.close()
            plain = conn.sock.unwrap()  # type: ignore[attr-defined]  # the server answers it
            plain.close()
    assert served_certificate(srv) == pair.der
    assert srv.stop() == 0
    assert "WARNING" not in srv.log_text() and "ERROR" not in srv.log_text(), srv.log_text()


# -- clients that are not TLS clients -----------------------------------------------------------


def test_a_plain_http_request_on_the_tls_port_fails_alone(ferryman, pair: Pair) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman(*pair.flags())
    with tls_conn(srv, client_context(pair)) as before:
        assert before.get("/hello.txt").status == 200
        with srv.connect() as plain:
            plain.send(b"GET /hello.txt HTTP/1.1\r\nHost: test\r\n\r\n")
            assert plain.closed_by_peer(10)
        assert before.get("/hello.txt").status == 200  # the connection beside it is served
    assert wait_until(lambda: handshake_lines(srv), 10)
    assert served_certificate(srv) == pair.der
    lines = handshake_lines(srv)
    assert len(lines) == 1 and "it sent a plain HTTP request" in lines[0], lines
    assert "Traceback" not in srv.log_text() and "ERROR" not in srv.log_text()


@pytest.mark.parametrize("sends", [b"", HALF_A_HELLO], ids=["nothing", "half-a-hello"])
def test_a_stalled_handshake_is_dropped_at_the_header_timeout(  # type: ignore[no-untyped-def]
    ferryman, pair: Pair, sends: bytes
) -> None:
    srv = ferryman(*pair.flags(), "--header-timeout", "1")
    with srv.connect() as silent:
        silent.send(sends)
        # The loop's own handshake timeout is 60 s: closed sooner, it was ferryman's.
        assert silent.closed_by_peer(30)
    assert wait_until(lambda: handshake_lines(srv), 10)
    assert "not finished within --header-timeout" in handshake_lines(srv)[0]
    assert served_certificate(srv) == pair.der


def test_a_flood_of_half_open_handshakes_does_not_block_the_loop(  # type: ignore[no-untyped-def]
    ferryman, pair: Pair
) -> None:
    srv = ferryman(*pair.flags(), "--header-timeout", "2")
    flood = [socket.create_connection((srv.host, srv.port), timeout=10) for _ in range(300)]
    try:
        for sock in flood[::2]:
            sock.sendall(HALF_A_HELLO)
        for _ in range(5):  # served while all 300 wait in their handshakes
            with tls_conn(srv, client_context(pair)) as conn:
                assert conn.get("/hello.txt").status == 200
        for sock in flood:  # then every one of them is dropped at its deadline
            assert Conn(sock).closed_by_peer(30)
    finally:
        for sock in flood:
            sock.close()
    assert "Traceback" not in srv.log_text()
    assert served_certificate(srv) == pair.der


def test_a_handshake_in_progress_does_not_hold_up_the_stop(ferryman, pair: Pair) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman(*pair.flags(), "--header-timeout", "120")
    with srv.connect() as silent:
        silent.send(HALF_A_HELLO)
        assert wait_until(lambda: served_certificate(srv) == pair.der, 5)
        srv.signal(signal.SIGTERM)
        assert srv.wait(60) == 0, srv.log_text()  # not the 120 s of its handshake
        assert silent.closed_by_peer(10)
    assert "Traceback" not in srv.log_text()


# -- SIGHUP --------------------------------------------------------------------------------------


def install(pair: Pair, live: Path) -> None:
    """Put `pair` where the server reads its certificate: a renewal, as certbot would."""
    live.mkdir(exist_ok=True)
    shutil.copyfile(pair.cert, live / "cert.pem")
    shutil.copyfile(pair.key, live / "key.pem")


def rolls_done(srv: ServerProcess) -> int:
    return srv.log_text().count("rolling restart done")


def test_sighup_serves_a_new_certificate_to_new_connections(  # type: ignore[no-untyped-def]
    ferryman, docroot: Path, tmp_path: Path, pair: Pair
) -> None:
    second = make_pair(tmp_path / "second", "second")
    live = tmp_path / "live"
    install(pair, live)
    srv = ferryman("--tls-cert", str(live / "cert.pem"), "--tls-key", str(live / "key.pem"),
                   "--workers", "2")  # fmt: skip
    assert served_certificate(srv) == pair.der
    big = (docroot / "p5242887.bin").read_bytes()
    with tls_conn(srv, client_context(pair)) as kept:  # a transfer under way across the reload
        kept.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        kept.send(b"GET /p5242887.bin HTTP/1.1\r\nHost: test\r\n\r\n")
        head = kept.stream.readline()
        install(second, live)
        srv.signal(signal.SIGHUP)
        assert wait_until(lambda: rolls_done(srv) == 1, 30), srv.log_text()
        assert head.startswith(b"HTTP/1.1 200")
        while kept.stream.readline() not in (b"\r\n", b""):
            pass
        assert kept.stream.read(len(big)) == big  # finished on the old worker, old certificate
    assert "SIGHUP: TLS certificate reloaded: CN=second" in srv.log_text()
    for _ in range(6):  # both new workers: every new connection
        assert served_certificate(srv) == second.der


def test_a_bad_certificate_on_sighup_is_logged_and_the_old_one_kept(  # type: ignore[no-untyped-def]
    ferryman, tmp_path: Path, pair: Pair
) -> None:
    other = make_pair(tmp_path / "other", "other")
    live = tmp_path / "live"
    install(pair, live)
    srv = ferryman("--tls-cert", str(live / "cert.pem"), "--tls-key", str(live / "key.pem"))
    shutil.copyfile(other.cert, live / "cert.pem")  # renewed half way: the key is still the old
    srv.signal(signal.SIGHUP)
    assert wait_until(lambda: rolls_done(srv) == 1, 30), srv.log_text()
    lines = [line for line in srv.lines if "not reloaded" in line]
    assert len(lines) == 1, srv.log_text()
    assert "does not belong to TLS certificate" in lines[0] and "still serving CN=first" in lines[0]
    assert served_certificate(srv) == pair.der
    # A worker started now, with the bad files on disk, serves the pair last checked.
    pid = int(WORKER_READY.findall(srv.log_text())[-1][0])
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: len(WORKER_READY.findall(srv.log_text())) == 3, 30), srv.log_text()
    assert served_certificate(srv) == pair.der
    assert srv.proc.poll() is None
    assert "Traceback" not in srv.log_text()

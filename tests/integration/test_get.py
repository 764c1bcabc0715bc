"""`ferryman get` against real servers: ferryman (its Repr-Digest from a scanned catalog),
nginx, and the fault proxy between them to cut, count and damage what is sent."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import FaultProxy, Rule
from tests.serverproc import need, pattern, wait_until

GET = [sys.executable, "-m", "ferryman.cli", "get"]
SIZE = 6 * 1024 * 1024 + 5


def run_get(cwd: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([*GET, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})  # fmt: skip


def start_get(cwd: Path, *args: str) -> subprocess.Popen[str]:
    # As from a terminal: SIGINT at its default even when the tests themselves run in
    # the background (a shell starts those with SIGINT ignored, which a child inherits
    # and Python then leaves ignored).
    return subprocess.Popen([*GET, *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible)  # fmt: skip


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def recorded(sidecar: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(sidecar.read_text())
        return doc
    except (OSError, ValueError):
        return None


def bytes_recorded(sidecar: Path) -> int:
    doc = recorded(sidecar)
    return 0 if doc is None else sum(done for _, _, done in doc["segments"])


def catalogued_server(ferryman: Any, tmp_path: Path, data: bytes, *flags: str) -> Any:
    """ferryman serving big.bin, whose digest `catalog scan` recorded."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    (root / "big.bin").write_bytes(data)
    scan = [sys.executable, "-m", "ferryman.cli", "catalog", "scan", str(root)]
    subprocess.run([*scan, "--state-dir", str(state)], check=True, capture_output=True, timeout=60)
    return ferryman("--state-dir", str(state), *flags, root=root)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def test_a_download_is_byte_exact_and_verified(ferryman: Any, tmp_path: Path, out: Path) -> None:
    data = pattern(SIZE)
    srv = catalogued_server(ferryman, tmp_path, data)
    done = run_get(out, f"{srv.url}/big.bin")
    assert done.returncode == 0, done.stderr
    assert (out / "big.bin").read_bytes() == data
    assert "verified against Repr-Digest" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["big.bin"]  # no .part, no sidecar


@pytest.mark.parametrize("connections", [1, 4])
def test_a_killed_download_resumes_and_fetches_only_the_rest(
    ferryman: Any, tmp_path: Path, out: Path, connections: int
) -> None:
    data = pattern(SIZE, 7)
    srv = catalogued_server(ferryman, tmp_path, data)
    sidecar = out / "big.bin.part.json"
    with FaultProxy(srv.url) as proxy:
        url = f"{proxy.url}/big.bin"
        first = start_get(out, url, "-x", str(connections), "--limit-rate", "2M")
        try:
            assert wait_until(lambda: bytes_recorded(sidecar) >= SIZE // 2, timeout=60)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        doc = recorded(sidecar)
        assert doc is not None and len(doc["segments"]) == connections
        have = bytes_recorded(sidecar)
        assert 0 < have < SIZE
        proxy.reset_counters()
        done = run_get(out, url, "-x", str(connections))
        assert done.returncode == 0, done.stderr
        assert "continuing" in done.stderr and "verified against Repr-Digest" in done.stderr
        assert proxy.bytes_out == SIZE - have  # exactly the bytes the record lacked
    assert (out / "big.bin").read_bytes() == data
    assert not sidecar.exists() and not (out / "big.bin.part").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_download_records_its_progress_and_says_how_to_go_on(
    ferryman: Any, tmp_path: Path, out: Path, signum: int
) -> None:
    srv = catalogued_server(ferryman, tmp_path, pattern(SIZE))
    sidecar = out / "big.bin.part.json"
    first = start_get(out, f"{srv.url}/big.bin", "-x", "2", "--limit-rate", "2M")
    assert wait_until(lambda: bytes_recorded(sidecar) > 0, timeout=60)
    first.send_signal(signum)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 130, err
    assert "interrupted" in err and "the same command continues it" in err
    assert "Traceback" not in err
    assert bytes_recorded(sidecar) > 0 and (out / "big.bin.part").exists()


def test_a_file_changed_between_runs_is_fetched_anew(
    ferryman: Any, tmp_path: Path, out: Path
) -> None:
    srv = catalogued_server(ferryman, tmp_path, pattern(SIZE))
    sidecar = out / "big.bin.part.json"
    first = start_get(out, f"{srv.url}/big.bin", "--limit-rate", "2M")
    try:
        assert wait_until(lambda: bytes_recorded(sidecar) > 0, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    new = pattern(SIZE, 1)  # same size, other bytes
    (tmp_path / "root" / "new").write_bytes(new)
    os.replace(tmp_path / "root" / "new", tmp_path / "root" / "big.bin")
    done = run_get(out, f"{srv.url}/big.bin", "--sha256", hashlib.sha256(new).hexdigest())
    assert done.returncode == 0, done.stderr
    assert "changed on the server" in done.stderr
    assert (out / "big.bin").read_bytes() == new


def test_a_file_replaced_during_a_run_with_four_connections_is_fetched_anew(
    ferryman: Any, tmp_path: Path, out: Path
) -> None:
    """Connections are cut every 512 KiB; once bytes are recorded the file is replaced, so
    the next retry of a segment meets the new version while the others are mid-transfer:
    the run starts over, and nothing of the old version ends up in the new file."""
    srv = catalogued_server(ferryman, tmp_path, pattern(SIZE))
    new = pattern(SIZE, 9)
    sidecar = out / "big.bin.part.json"
    with FaultProxy(srv.url) as proxy:
        proxy.add(Rule(method="GET", truncate_after=512 * 1024, times=None))
        args = ["-x", "4", "--limit-rate", "3M", "--sha256", hashlib.sha256(new).hexdigest()]
        running = start_get(out, f"{proxy.url}/big.bin", *args)
        try:
            assert wait_until(lambda: bytes_recorded(sidecar) > 0, timeout=60)
            (tmp_path / "root" / "new").write_bytes(new)
            os.replace(tmp_path / "root" / "new", tmp_path / "root" / "big.bin")
            _, err = running.communicate(timeout=120)
        finally:
            running.kill()
    assert running.returncode == 0, err
    assert "changed on the server" in err
    assert (out / "big.bin").read_bytes() == new


@pytest.mark.parametrize("connections", [1, 4])
def test_connections_cut_every_few_hundred_kib_still_give_a_verified_file(
    ferryman: Any, tmp_path: Path, out: Path, connections: int
) -> None:
    data = pattern(SIZE, 3)
    srv = catalogued_server(ferryman, tmp_path, data)
    with FaultProxy(srv.url) as proxy:
        proxy.add(Rule(method="GET", truncate_after=300 * 1024, times=None))
        done = run_get(out, f"{proxy.url}/big.bin", "-x", str(connections), "--retries", "2")
        assert done.returncode == 0, done.stderr
        assert proxy.count("GET") >= SIZE // (300 * 1024)
        if connections == 4:
            ranges = {r.by_name.get("range", "") for r in proxy.log}
            assert sum(r.endswith(f"-{SIZE - 1}") for r in ranges) >= 1
            assert len({r.split("=")[1].split("-")[1] for r in ranges}) >= 4  # four ends
    assert (out / "big.bin").read_bytes() == data
    assert "verified against Repr-Digest" in done.stderr


@pytest.mark.parametrize("connections", [1, 4])
def test_a_flipped_byte_exits_1_and_leaves_nothing(
    ferryman: Any, tmp_path: Path, out: Path, connections: int
) -> None:
    srv = catalogued_server(ferryman, tmp_path, pattern(SIZE))
    with FaultProxy(srv.url) as proxy:
        proxy.add(Rule(method="GET", corrupt_at=1000, times=None))
        done = run_get(out, f"{proxy.url}/big.bin", "-x", str(connections))
    assert done.returncode == 1, done.stderr
    assert "does not match Repr-Digest" in done.stderr and "download it again" in done.stderr
    assert list(out.iterdir()) == []


def test_a_wrong_sha256_exits_1_and_says_to_check_it(
    ferryman: Any, tmp_path: Path, out: Path
) -> None:
    srv = catalogued_server(ferryman, tmp_path, pattern(1000))
    done = run_get(out, f"{srv.url}/big.bin", "--sha256", "0" * 64)
    assert done.returncode == 1
    assert "check the --sha256 value" in done.stderr
    assert list(out.iterdir()) == []


def test_404_exits_3_with_one_line_and_leaves_nothing(ferryman: Any, out: Path) -> None:
    srv = ferryman()
    done = run_get(out, f"{srv.url}/nothing-here.bin?sig=secret")
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert lines == [f"ferryman get: HTTP 404 Not Found: {srv.url}/nothing-here.bin?..."]
    assert list(out.iterdir()) == []


def test_answers_that_say_later_are_retried_and_4xx_is_not(
    ferryman: Any, tmp_path: Path, out: Path
) -> None:
    data = pattern(100_000)
    srv = catalogued_server(ferryman, tmp_path, data)
    with FaultProxy(srv.url) as proxy:
        proxy.add(Rule(method="GET", slow_down=True, retry_after=1, times=2))
        done = run_get(out, f"{proxy.url}/big.bin")
        assert done.returncode == 0, done.stderr
        assert proxy.count("GET") == 3
        assert (out / "big.bin").read_bytes() == data
        proxy.reset_counters()
        proxy.add(Rule(method="GET", error_status=403, error_code="AccessDenied", times=None))
        done = run_get(out, f"{proxy.url}/big.bin", "-o", "again.bin")
        assert done.returncode == 3 and "HTTP 403" in done.stderr
        assert proxy.count("GET") == 1
    assert sorted(p.name for p in out.iterdir()) == ["big.bin"]


def test_a_token_is_sent_from_a_file_or_the_environment(
    ferryman: Any, tmp_path: Path, out: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token read\n")
    srv = catalogued_server(ferryman, tmp_path, pattern(5000), "--private",
                            "--tokens", str(tokens))  # fmt: skip
    url = f"{srv.url}/big.bin"
    refused = run_get(out, url)
    assert refused.returncode == 3 and "HTTP 401" in refused.stderr
    assert "s3cret" not in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    assert run_get(out, url, "--token-file", str(token_file), "-o", "a.bin").returncode == 0
    assert run_get(out, url, "-o", "b.bin", env={"FERRYMAN_TOKEN": "s3cret-token"}).returncode == 0
    assert (out / "a.bin").read_bytes() == (out / "b.bin").read_bytes() == pattern(5000)


@contextmanager
def redirector(target: str) -> Iterator[tuple[str, list[str | None]]]:
    """A server on another port that redirects every GET to `target` + its path, and
    keeps the Authorization each request carried."""
    seen: list[str | None] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_followed_and_the_token_stays_with_its_origin(
    ferryman: Any, tmp_path: Path, out: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token read\n")
    private = catalogued_server(ferryman, tmp_path, pattern(5000), "--private",
                                "--tokens", str(tokens))  # fmt: skip
    env = {"FERRYMAN_TOKEN": "s3cret-token"}
    with redirector(private.url) as (url, seen):
        done = run_get(out, f"{url}/big.bin", env=env)
        assert done.returncode == 3 and "HTTP 401" in done.stderr  # not sent to another port
        assert seen == ["Bearer s3cret-token"]
    assert list(out.iterdir()) == []
    public = ferryman(root=tmp_path / "root")
    with redirector(public.url) as (url, _):
        done = run_get(out, f"{url}/big.bin", env=env)
        assert done.returncode == 0, done.stderr
        assert (out / "big.bin").read_bytes() == pattern(5000)


def test_the_name_stays_in_the_directory_unless_o_says_otherwise(
    ferryman: Any, tmp_path: Path, out: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "back\\slash name.txt").write_bytes(b"x")
    srv = ferryman(root=root)
    done = run_get(out, f"{srv.url}/back%5Cslash%20name.txt")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir()] == ["back_slash name.txt"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_get(out, f"{srv.url}/back%5Cslash%20name.txt", "-o", str(elsewhere))
    assert done.returncode == 0 and (elsewhere / "back_slash name.txt").exists()
    done = run_get(out, f"{srv.url}/")
    assert done.returncode == 2 and "give -o PATH" in done.stderr


# -- nginx --------------------------------------------------------------------------------

NGINX_CONF = """\
daemon off;
master_process off;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        root {root};
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _self_signed(directory: Path) -> None:
    """A certificate for 127.0.0.1, its own issuer: trusted only where SSL_CERT_FILE names it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ferryman test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """nginx serving a root over http and https: (http URL, https URL, root)."""
    binary = need("nginx")
    workdir, root = tmp_path / "nginx", tmp_path / "nginx-root"
    workdir.mkdir()
    root.mkdir()
    _self_signed(workdir)
    port, tls_port = _free_port(), _free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port, tls_port=tls_port, root=root))
    proc = subprocess.Popen([binary, "-p", str(workdir), "-c", str(conf), "-e",
                             str(workdir / "error.log")], stderr=subprocess.PIPE)  # fmt: skip

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", tls_port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        if not wait_until(listening, timeout=15):
            pytest.fail(f"nginx did not start: {(workdir / 'error.log').read_text()}")
        yield f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}", root
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_against_nginx_with_four_connections_and_a_known_digest(
    nginx: tuple[str, str, Path], out: Path
) -> None:
    url, _, root = nginx
    data = pattern(SIZE, 11)
    (root / "big.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    done = run_get(out, f"{url}/big.bin", "-x", "4", "--sha256", digest)
    assert done.returncode == 0, done.stderr
    assert "verified against --sha256" in done.stderr
    assert (out / "big.bin").read_bytes() == data
    done = run_get(out, f"{url}/big.bin", "-o", "plain.bin")
    assert done.returncode == 0 and "unverified" in done.stderr
    assert (out / "plain.bin").read_bytes() == data


def test_against_nginx_a_killed_download_resumes(nginx: tuple[str, str, Path], out: Path) -> None:
    url, _, root = nginx
    data = pattern(SIZE, 5)
    (root / "big.bin").write_bytes(data)
    sidecar = out / "big.bin.part.json"
    with FaultProxy(url) as proxy:
        first = start_get(out, f"{proxy.url}/big.bin", "-x", "2", "--limit-rate", "2M")
        try:
            assert wait_until(lambda: bytes_recorded(sidecar) >= SIZE // 2, timeout=60)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        have = bytes_recorded(sidecar)
        proxy.reset_counters()
        done = run_get(out, f"{proxy.url}/big.bin", "-x", "2")
        assert done.returncode == 0, done.stderr
        assert proxy.bytes_out == SIZE - have
    assert (out / "big.bin").read_bytes() == data


def test_https_verifies_the_server_against_the_ca_store(
    nginx: tuple[str, str, Path], tmp_path: Path, out: Path
) -> None:
    _, url, root = nginx
    (root / "small.bin").write_bytes(pattern(70_000))
    done = run_get(out, f"{url}/small.bin")
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1 and "certificate" in done.stderr
    assert list(out.iterdir()) == []
    trusted = {"SSL_CERT_FILE": str(tmp_path / "nginx" / "cert.pem")}
    done = run_get(out, f"{url}/small.bin", env=trusted)
    assert done.returncode == 0, done.stderr
    assert (out / "small.bin").read_bytes() == pattern(70_000)


def test_usage_errors_exit_2(out: Path) -> None:
    for args in (["ftp://example.invalid/x"], ["http://127.0.0.1:1/x", "-x", "0"],
                 ["http://127.0.0.1:1/x", "--sha256", "abc"]):  # fmt: skip
        done = run_get(out, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "cannot get:" in done.stderr and "Traceback" not in done.stderr
    assert list(out.iterdir()) == []


def test_a_refused_connection_is_retried_then_exits_3(out: Path) -> None:
    port = _free_port()  # nothing listens there
    done = run_get(out, f"http://127.0.0.1:{port}/x.bin", "--retries", "2")
    assert done.returncode == 3
    assert "3 tries in a row failed" in done.stderr and "refused" in done.stderr
    assert list(out.iterdir()) == []

"""`ferryman sign` URLs against a server with --signing-key: exact, expiring, unforgeable."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ServerProcess, wait_until


def sign(key: Path, url: str, method: str = "GET", expires: str = "1h", *flags: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "sign", url, "--method", method,
         "--expires", expires, "--signing-key", str(key), *flags],
        capture_output=True, text=True, timeout=20, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def send(srv: ServerProcess, method: str, path: str, data: bytes = b""):  # type: ignore[no-untyped-def]
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(data)}\r\n\r\n"
    with srv.connect() as conn:
        return conn.request(head.encode() + data, head_request=method == "HEAD")[0]


@pytest.fixture
def signed_server(ferryman, tmp_path: Path):  # type: ignore[no-untyped-def]
    key = tmp_path / "key"
    key.write_bytes(b"k" * 48)
    root = tmp_path / "root"
    root.mkdir()
    log = tmp_path / "access.log"
    srv = ferryman("--allow-write", "--private", "--signing-key", str(key),
                   "--access-log", str(log), root=root)  # fmt: skip
    return srv, key, root, log


def test_signed_put_then_signed_get(signed_server) -> None:  # type: ignore[no-untyped-def]
    srv, key, root, log = signed_server
    put_url = sign(key, f"{srv.url}/box/f.txt", "PUT")
    assert send(srv, "PUT", target(put_url), b"signed body").status == 201
    assert (root / "box/f.txt").read_bytes() == b"signed body"
    get_url = sign(key, f"{srv.url}/box/f.txt")
    r = send(srv, "GET", target(get_url))
    assert (r.status, r.body) == (200, b"signed body")
    assert send(srv, "HEAD", target(get_url)).status == 200  # GET signature covers HEAD
    assert send(srv, "GET", "/box/f.txt").status == 401  # --private: nothing unsigned
    srv.stop()
    text = log.read_text()
    assert "ferryman-signature=[redacted]" in text and get_url.rsplit("=", 1)[1] not in text


def test_altered_or_misused_signatures_are_403(signed_server) -> None:  # type: ignore[no-untyped-def]
    srv, key, root, _ = signed_server
    (root / "f.txt").write_bytes(b"x")
    good = target(sign(key, f"{srv.url}/f.txt"))
    assert send(srv, "GET", good).status == 200
    assert send(srv, "GET", good.replace("/f.txt", "/g.txt")).status == 403  # other path
    assert send(srv, "PUT", good, b"y").status == 403  # signed for GET only
    expires = good.split("ferryman-expires=")[1].split("&")[0]
    later = good.replace(expires, str(int(expires) + 3600))
    assert send(srv, "GET", later).status == 403  # expiry extended by hand
    flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert send(srv, "GET", flipped).status == 403
    assert (root / "f.txt").read_bytes() == b"x"


def test_expired_signature_is_403(signed_server) -> None:  # type: ignore[no-untyped-def]
    srv, key, root, _ = signed_server
    (root / "f.txt").write_bytes(b"x")
    url = target(sign(key, f"{srv.url}/f.txt", expires="1s"))
    expiry = int(url.split("ferryman-expires=")[1].split("&")[0])
    assert wait_until(lambda: time.time() > expiry + 1, 5)
    assert send(srv, "GET", url).status == 403


def test_sign_needs_a_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "sign", "http://h/x"],
        capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin"},
    )  # fmt: skip
    assert done.returncode == 2 and "--signing-key" in done.stderr


def test_a_url_used_with_another_method_is_told_so(signed_server) -> None:  # type: ignore[no-untyped-def]
    srv, key, root, _ = signed_server
    (root / "f.txt").write_bytes(b"x")
    get_url = target(sign(key, f"{srv.url}/f.txt"))
    put_url = target(sign(key, f"{srv.url}/f.txt", "PUT"))
    for method, url, signed_for in (("PUT", get_url, "GET"), ("DELETE", put_url, "PUT"),
                                    ("GET", put_url, "PUT")):  # fmt: skip
        r = send(srv, method, url, b"y" if method == "PUT" else b"")
        body = json.loads(r.body)
        assert (r.status, body["error"]) == (403, "forbidden")
        assert body["detail"] == f"this URL is signed for {signed_for}, not {method}"
    forged = get_url[:-1] + ("0" if get_url[-1] != "0" else "1")
    assert json.loads(send(srv, "PUT", forged, b"y").body)["detail"] == "invalid signature"
    assert (root / "f.txt").read_bytes() == b"x"
    assert send(srv, "DELETE", put_url.replace("f.txt", "g.txt")).status == 403
    assert "Traceback" not in srv.log_text()


@pytest.mark.parametrize(
    ("url", "method", "named"),
    [
        ("http://h/x", "POST", "--method POST"),
        ("http://h/x", "patch", "--method PATCH"),
        ("http://h/x", "OPTIONS", "--method OPTIONS"),
        ("/x", "GET", "'/x' is not an absolute URL"),
        ("box/f.txt", "PUT", "'box/f.txt' is not an absolute URL"),
        ("h:8000/x", "GET", "not an absolute URL"),
        ("ftp://h/x", "GET", "not an absolute URL"),
        ("http:///x", "GET", "not an absolute URL"),
    ],
)
def test_sign_refuses_what_no_request_could_use(
    tmp_path: Path, url: str, method: str, named: str
) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"k" * 48)
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "sign", url, "--method", method,
         "--signing-key", str(key)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert "cannot sign: " in done.stderr and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert sign(key, "http://h/x", method="head").startswith("http://h/x?ferryman-expires=")


def test_a_single_use_url_writes_once_even_across_a_restart(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "key"
    key.write_bytes(b"k" * 48)
    root = tmp_path / "root"
    root.mkdir()
    args = ("--allow-write", "--signing-key", str(key), "--workers", "2")
    srv = ferryman(*args, root=root)
    once = target(sign(key, f"{srv.url}/drop/a.bin", "PUT", "1h", "--once"))
    assert "ferryman-once=1" in once
    unused_tag = once.replace("ferryman-once=1&", "")
    assert send(srv, "PUT", unused_tag, b"x").status == 403  # the mark is signed too
    first = send(srv, "PUT", once, b"first")
    assert first.status == 201
    again = send(srv, "PUT", once, b"second")
    assert again.status == 403
    assert json.loads(again.body)["detail"] == "this single-use signed URL was used already"
    assert (root / "drop/a.bin").read_bytes() == b"first"
    srv.stop()
    srv = ferryman(*args, root=root)  # the use is in the catalog, not in memory
    assert send(srv, "PUT", once, b"third").status == 403
    # A write that fails gives its URL back: If-None-Match: * on an existing file.
    create = target(sign(key, f"{srv.url}/drop/a.bin", "PUT", "2h", "--once"))  # another URL
    refused = "PUT " + create + " HTTP/1.1\r\nHost: t\r\nIf-None-Match: *\r\n"
    with srv.connect() as conn:
        r = conn.request((refused + "Content-Length: 1\r\n\r\nz").encode())[0]
    assert r.status == 412
    assert send(srv, "PUT", create, b"replaced").status == 204
    assert send(srv, "PUT", create, b"again").status == 403


def test_writers_racing_with_one_single_use_url_get_one_success(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    key = tmp_path / "key"
    key.write_bytes(b"k" * 48)
    root = tmp_path / "root"
    root.mkdir()
    srv = ferryman("--allow-write", "--signing-key", str(key), "--workers", "2", root=root)
    for round_no in range(5):
        once = target(sign(key, f"{srv.url}/r{round_no}.bin", "PUT", "1h", "--once"))
        urls = [once] * 6
        with ThreadPoolExecutor(6) as pool:
            answers = pool.map(lambda u: send(srv, "PUT", u, b"w").status, urls)
            statuses = sorted(answers)
        assert statuses == [201, 403, 403, 403, 403, 403], statuses


def test_sign_refuses_a_single_use_read(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"k" * 48)
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "sign", "http://h/x", "--once",
         "--signing-key", str(key)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 2 and "only a PUT or DELETE URL can be single-use" in done.stderr

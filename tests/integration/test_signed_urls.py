"""`ferryman sign` URLs against a server with --signing-key: exact, expiring, unforgeable."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.serverproc import ServerProcess, wait_until
from tests.writing import Writable, signing_key


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


SignedServer = tuple[ServerProcess, Path, Path, Path]  # the server, its key, SOURCE, access log


@pytest.fixture
def signed_server(writable: Writable, tmp_path: Path) -> SignedServer:
    """--private, writes allowed, signed URLs the only credential."""
    key = signing_key(tmp_path)
    log = tmp_path / "access.log"
    srv = writable("--private", "--access-log", str(log), tokens=None, signing_key=key, state=None)
    return srv, key, tmp_path / "root", log


def test_signed_put_then_signed_get(signed_server: SignedServer) -> None:
    srv, key, root, log = signed_server
    put_url = sign(key, f"{srv.url}/box/f.txt", "PUT")
    assert srv.request("PUT", target(put_url), body=b"signed body").status == 201
    assert (root / "box/f.txt").read_bytes() == b"signed body"
    get_url = sign(key, f"{srv.url}/box/f.txt")
    r = srv.request("GET", target(get_url))
    assert (r.status, r.body) == (200, b"signed body")
    assert srv.request("HEAD", target(get_url)).status == 200  # GET signature covers HEAD
    assert srv.request("GET", "/box/f.txt").status == 401  # --private: nothing unsigned
    srv.stop()
    text = log.read_text()
    assert "ferryman-signature=[redacted]" in text and get_url.rsplit("=", 1)[1] not in text


def test_altered_or_misused_signatures_are_403(signed_server: SignedServer) -> None:
    srv, key, root, _ = signed_server
    (root / "f.txt").write_bytes(b"x")
    good = target(sign(key, f"{srv.url}/f.txt"))
    assert srv.request("GET", good).status == 200
    assert srv.request("GET", good.replace("/f.txt", "/g.txt")).status == 403  # other path
    assert srv.request("PUT", good, body=b"y").status == 403  # signed for GET only
    expires = good.split("ferryman-expires=")[1].split("&")[0]
    later = good.replace(expires, str(int(expires) + 3600))
    assert srv.request("GET", later).status == 403  # expiry extended by hand
    flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert srv.request("GET", flipped).status == 403
    assert (root / "f.txt").read_bytes() == b"x"


def test_expired_signature_is_403(signed_server: SignedServer) -> None:
    srv, key, root, _ = signed_server
    (root / "f.txt").write_bytes(b"x")
    url = target(sign(key, f"{srv.url}/f.txt", expires="1s"))
    expiry = int(url.split("ferryman-expires=")[1].split("&")[0])
    assert wait_until(lambda: time.time() > expiry + 1, 5)
    assert srv.request("GET", url).status == 403


def test_sign_needs_a_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "sign", "http://h/x"],
        capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin"},
    )  # fmt: skip
    assert done.returncode == 2 and "--signing-key" in done.stderr


def test_a_url_used_with_another_method_is_told_so(signed_server: SignedServer) -> None:
    srv, key, root, _ = signed_server
    (root / "f.txt").write_bytes(b"x")
    get_url = target(sign(key, f"{srv.url}/f.txt"))
    put_url = target(sign(key, f"{srv.url}/f.txt", "PUT"))
    for method, url, signed_for in (("PUT", get_url, "GET"), ("DELETE", put_url, "PUT"),
                                    ("GET", put_url, "PUT")):  # fmt: skip
        r = srv.request(method, url, body=b"y" if method == "PUT" else b"")
        body = json.loads(r.body)
        assert (r.status, body["error"]) == (403, "forbidden")
        assert body["detail"] == f"this URL is signed for {signed_for}, not {method}"
    forged = get_url[:-1] + ("0" if get_url[-1] != "0" else "1")
    assert json.loads(srv.request("PUT", forged, body=b"y").body)["detail"] == "invalid signature"
    assert (root / "f.txt").read_bytes() == b"x"
    assert srv.request("DELETE", put_url.replace("f.txt", "g.txt")).status == 403
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
    key = signing_key(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "sign", url, "--method", method,
         "--signing-key", str(key)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert "cannot sign: " in done.stderr and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert sign(key, "http://h/x", method="head").startswith("http://h/x?ferryman-expires=")


def test_a_single_use_url_writes_once_even_across_a_restart(
    writable: Writable, tmp_path: Path
) -> None:
    key = signing_key(tmp_path)
    root = tmp_path / "root"
    srv = writable("--workers", "2", tokens=None, signing_key=key, state=None)
    once = target(sign(key, f"{srv.url}/drop/a.bin", "PUT", "1h", "--once"))
    assert "ferryman-once=1" in once
    unused_tag = once.replace("ferryman-once=1&", "")
    assert srv.request("PUT", unused_tag, body=b"x").status == 403  # the mark is signed too
    first = srv.request("PUT", once, body=b"first")
    assert first.status == 201
    again = srv.request("PUT", once, body=b"second")
    assert again.status == 403
    assert json.loads(again.body)["detail"] == "this single-use signed URL was used already"
    assert (root / "drop/a.bin").read_bytes() == b"first"
    srv.stop()
    # The use is in the catalog, not in memory.
    srv = writable("--workers", "2", tokens=None, signing_key=key, state=None)
    assert srv.request("PUT", once, body=b"third").status == 403
    # A write that fails gives its URL back: If-None-Match: * on an existing file.
    create = target(sign(key, f"{srv.url}/drop/a.bin", "PUT", "2h", "--once"))  # another URL
    assert srv.request("PUT", create, {"If-None-Match": "*"}, b"z").status == 412
    assert srv.request("PUT", create, body=b"replaced").status == 204
    assert srv.request("PUT", create, body=b"again").status == 403


def test_writers_racing_with_one_single_use_url_get_one_success(
    writable: Writable, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    key = signing_key(tmp_path)
    srv = writable("--workers", "2", tokens=None, signing_key=key, state=None)
    for round_no in range(5):
        once = target(sign(key, f"{srv.url}/r{round_no}.bin", "PUT", "1h", "--once"))
        urls = [once] * 6
        with ThreadPoolExecutor(6) as pool:
            answers = pool.map(lambda u: srv.request("PUT", u, body=b"w").status, urls)
            statuses = sorted(answers)
        assert statuses == [201, 403, 403, 403, 403, 403], statuses


def test_sign_refuses_a_single_use_read(tmp_path: Path) -> None:
    key = signing_key(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "sign", "http://h/x", "--once",
         "--signing-key", str(key)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 2 and "only a PUT or DELETE URL can be single-use" in done.stderr

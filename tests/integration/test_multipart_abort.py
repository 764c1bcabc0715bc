"""A process killed mid multipart upload: its upload is aborted by another, the old
version stays.

Real parts: ferryman servers, moto's S3 server (whose ListMultipartUploads
shows the uploads in progress) and PostgreSQL. The killed process reaches
the bucket through a FaultProxy that holds every part upload, so it dies
with its upload begun, recorded, and not completed; the survivors reach
the bucket directly. Three deaths: a server of two on PostgreSQL (the other
aborts), a worker of two on SQLite (its server aborts), and a lone server
(it aborts its own when it starts again).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

from ferryman.catalog.api import Catalog
from ferryman.catalog.db import SqliteCatalog
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.multipart import MultipartUpload
from ferryman.catalog.open import open_catalog
from tests.faultproxy import FaultProxy, Rule
from tests.integration.test_fleet_writes import kill_server
from tests.s3server import MotoServer
from tests.serverproc import ServerProcess, pattern, wait_until
from tests.writing import Writable, bearer, put, repr_digest

KEY = "big/movie.bin"
PARTS = ("--s3-multipart-threshold", "5MiB", "--s3-part-size", "5MiB")
BIG = 20 * 1024 * 1024 + 12345  # five parts
SWEPT_WITHIN = 30.0  # seconds: the promise (a sweep every 10 s, plus a start)


def in_progress(moto: MotoServer, bucket: str) -> list[tuple[str, str]]:
    """(key, upload id) of every multipart upload S3 holds in `bucket` (ListMultipartUploads)."""
    status, body = moto.request("GET", f"/{bucket}?uploads")
    assert status == 200, body[:300]
    uploads = []
    for element in ET.fromstring(body).iter():
        if element.tag.endswith("}Upload") or element.tag == "Upload":
            fields = {child.tag.rpartition("}")[2]: child.text or "" for child in element}
            uploads.append((fields["Key"], fields["UploadId"]))
    return uploads


def recorded(catalog_at: str | Path) -> list[MultipartUpload]:
    with _open(catalog_at) as catalog:
        return catalog.uploads()


def _open(catalog_at: str | Path) -> Catalog:
    if isinstance(catalog_at, Path):
        return SqliteCatalog(catalog_at)
    return open_catalog(parse_catalog_url(catalog_at))


def send_slowly(srv: ServerProcess, body: bytes) -> threading.Thread:
    """PUT `body` a piece at a time in a thread; the answer is never read (the server dies)."""

    def send() -> None:
        head = (f"PUT /{KEY} HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer()['Authorization']}"
                f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        try:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
                sock.sendall(head)
                for start in range(0, len(body), 1024 * 1024):
                    sock.sendall(body[start : start + 1024 * 1024])
                sock.recv(1)  # until the server goes
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def check_old_version(srv: ServerProcess, catalog_at: str | Path, old: bytes) -> None:
    got = srv.get(f"/{KEY}")
    assert got.status == 200 and got.body == old
    assert got.header("repr-digest") == repr_digest(old)
    with _open(catalog_at) as catalog:
        entry = catalog.get(KEY)
    assert entry is not None and not entry.deleted
    assert (entry.size, entry.sha256) == (len(old), hashlib.sha256(old).hexdigest())
    assert got.header("etag") == entry.etag


def test_a_server_killed_mid_upload_has_its_upload_aborted_by_another_server(
    writable: Writable, moto_server: MotoServer, s3_bucket: str, pg_url: str,
) -> None:  # fmt: skip
    source = f"s3://{s3_bucket}"
    with FaultProxy(moto_server.url) as proxy:
        one = writable("--catalog", pg_url, *PARTS, root=source, s3_endpoint=proxy.url,
                       state=Path("state-one"))  # fmt: skip
        two = writable("--catalog", pg_url, *PARTS, root=source, s3_endpoint=moto_server.url,
                       state=Path("state-two"))  # fmt: skip
        old = pattern(100_000, 3)
        assert put(two, f"/{KEY}", old).status == 201
        proxy.add(Rule(method="PUT", path=r"partNumber=", latency=300, times=None))
        sender = send_slowly(one, pattern(BIG, 11))
        assert wait_until(lambda: len(recorded(pg_url)) == 1, timeout=60), "never recorded"
        ((_, upload_id),) = in_progress(moto_server, s3_bucket)
        (record,) = recorded(pg_url)
        assert (record.key, record.upload_id, record.store) == (KEY, upload_id, source)
        assert record.pid in one.child_pids()
        kill_server(one)
        proxy.stop()  # the held parts are never forwarded
    sender.join(10)
    assert wait_until(lambda: in_progress(moto_server, s3_bucket) == [], timeout=SWEPT_WITHIN), (
        "the dead server's upload was not aborted"
    )
    assert wait_until(lambda: recorded(pg_url) == [], timeout=5)
    assert "aborted the multipart upload of big/movie.bin" in two.log_text()
    check_old_version(two, pg_url, old)
    # The key is free: a new write of it lands, and S3 holds no upload afterwards.
    new = pattern(6 * 1024 * 1024, 5)
    assert put(two, f"/{KEY}", new).status == 204
    assert two.get(f"/{KEY}").body == new
    assert in_progress(moto_server, s3_bucket) == [] and recorded(pg_url) == []
    assert "Traceback" not in two.log_text()


def test_a_worker_killed_mid_upload_has_its_upload_aborted_by_its_server(
    writable: Writable, moto_server: MotoServer, s3_bucket: str, tmp_path: Path,
) -> None:  # fmt: skip
    source = f"s3://{s3_bucket}"
    with FaultProxy(moto_server.url) as proxy:
        srv = writable("--workers", "2", *PARTS, root=source, s3_endpoint=proxy.url)
        catalog_at = tmp_path / "state" / "catalog.db"
        old = pattern(200_000, 9)
        assert put(srv, f"/{KEY}", old).status == 201
        rule = Rule(method="PUT", path=r"partNumber=", latency=300, times=None)
        proxy.add(rule)
        sender = send_slowly(srv, pattern(BIG, 13))
        assert wait_until(lambda: len(recorded(catalog_at)) == 1, timeout=60), "never recorded"
        ((_, upload_id),) = in_progress(moto_server, s3_bucket)
        (record,) = recorded(catalog_at)
        assert record.upload_id == upload_id
        workers = srv.child_pids()
        assert record.pid in workers
        os.kill(record.pid, signal.SIGKILL)
        sender.join(10)
        rule.times = rule.used  # no more held parts: the server writes on
        aborted = wait_until(lambda: in_progress(moto_server, s3_bucket) == [],
                             timeout=SWEPT_WITHIN)  # fmt: skip
        assert aborted, "the dead worker's upload was not aborted"
        assert wait_until(lambda: recorded(catalog_at) == [], timeout=5)
        assert "aborted the multipart upload of big/movie.bin" in srv.log_text()
        check_old_version(srv, catalog_at, old)
        assert "Traceback" not in srv.log_text()


def test_a_server_killed_mid_upload_aborts_it_when_it_starts_again(
    writable: Writable, moto_server: MotoServer, s3_bucket: str, tmp_path: Path,
) -> None:  # fmt: skip
    source = f"s3://{s3_bucket}"
    catalog_at = tmp_path / "state" / "catalog.db"
    with FaultProxy(moto_server.url) as proxy:
        srv = writable(*PARTS, root=source, s3_endpoint=proxy.url)
        old = pattern(150_000, 1)
        assert put(srv, f"/{KEY}", old).status == 201
        proxy.add(Rule(method="PUT", path=r"partNumber=", latency=300, times=None))
        sender = send_slowly(srv, pattern(BIG, 17))
        assert wait_until(lambda: len(recorded(catalog_at)) == 1, timeout=60), "never recorded"
        kill_server(srv)
        proxy.stop()
    sender.join(10)
    assert len(in_progress(moto_server, s3_bucket)) == 1  # nobody else is there to abort it
    again = writable(*PARTS, root=source, s3_endpoint=moto_server.url)  # the same state
    assert wait_until(lambda: in_progress(moto_server, s3_bucket) == [], timeout=SWEPT_WITHIN)
    assert wait_until(lambda: recorded(catalog_at) == [], timeout=5)
    check_old_version(again, catalog_at, old)
    assert "Traceback" not in again.log_text()

"""stores/s3listing.py against moto's S3 server, and against a store that misbehaves
on purpose (a small HTTP server answering what each test scripts)."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from ferryman.stores import s3listing
from ferryman.stores.base import AccessDenied, NotFound, StoreError, Throttled, Unavailable
from ferryman.stores.s3listing import BucketListing, bucket_address, credential_source
from ferryman.stores.s3source import credentials_from_env
from tests.s3server import ACCESS_KEY, SECRET_KEY, MotoServer, s3_env

KEYS = ["p/a", "p/a b", "p/a+b", "p/a%41", "p/a-b", "p/a/b/c", "p/é", "p/Z", "p/z/0", "p/m",
        "p/<&>", "p/tab\there"]  # fmt: skip


def listing(endpoint: str, bucket: str, prefix: str = "", page_size: int = 1000) -> BucketListing:
    address = bucket_address(bucket, prefix, endpoint, "us-east-1")
    source = credential_source((ACCESS_KEY, SECRET_KEY, None))
    return BucketListing(address, source, page_size=page_size, sleep=lambda _: None)


def everything(lister: BucketListing) -> list[tuple[str, int, str]]:
    return [entry for page in lister.pages() for entry in page]


def fetchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ferryman-bucket-listing"]


def test_every_key_at_any_depth_in_key_order(moto_server: MotoServer, s3_bucket: str) -> None:
    for n, key in enumerate(KEYS):
        moto_server.put_object(s3_bucket, key, b"x" * n)
    moto_server.put_object(s3_bucket, "p/marker/", b"")  # a "directory marker": not a key
    moto_server.put_object(s3_bucket, "pq/outside", b"not under the prefix")
    for page_size in (1000, 2):
        listed = everything(listing(moto_server.url, s3_bucket, "p", page_size))
        assert [key for key, _, _ in listed] == sorted(k[2:] for k in KEYS)
        for key, size, etag in listed:
            assert size == KEYS.index("p/" + key)
            assert etag == moto_server.head_object(s3_bucket, "p/" + key)[1]["etag"]
    whole = everything(listing(moto_server.url, s3_bucket, "", 3))
    assert [key for key, _, _ in whole] == sorted([*KEYS, "pq/outside"])
    assert fetchers() == []


def test_a_listing_can_start_after_a_key(moto_server: MotoServer, s3_bucket: str) -> None:
    """What a resumed audit asks for: only the keys after the last one it checked."""
    for key in KEYS:
        moto_server.put_object(s3_bucket, key, b"x")
    lister = listing(moto_server.url, s3_bucket, "p", page_size=2)
    after = [key for page in lister.pages(start_after="a-b") for key, _, _ in page]
    assert after == [k for k in sorted(k[2:] for k in KEYS) if k > "a-b"]


def test_a_caller_that_stops_early_leaves_no_thread_or_connection(
    moto_server: MotoServer, s3_bucket: str
) -> None:
    for n in range(9):
        moto_server.put_object(s3_bucket, f"k{n}", b"x")
    lister = listing(moto_server.url, s3_bucket, page_size=2)
    pages = lister.pages()
    assert isinstance(pages, Generator)  # to be closed before its end
    assert [key for key, _, _ in next(pages)] == ["k0", "k1"]
    assert len(fetchers()) == 1  # asking for the next page already
    pages.close()
    assert fetchers() == []
    assert lister._connection is None


def test_no_such_bucket_is_not_found(moto_server: MotoServer) -> None:
    with pytest.raises(NotFound, match="NoSuchBucket"):
        everything(listing(moto_server.url, "no-such-bucket-here"))
    assert fetchers() == []


def test_refused_credentials_are_access_denied_and_not_tried_again() -> None:
    with MotoServer(auth=True) as refusing:
        lister = listing(refusing.url, "some-bucket")
        with pytest.raises(AccessDenied, match="InvalidAccessKeyId"):
            everything(lister)


def test_an_endpoint_nobody_listens_on_is_unavailable_after_every_attempt() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    slept: list[float] = []
    lister = listing(f"http://127.0.0.1:{port}", "b")
    lister.sleep = slept.append
    with pytest.raises(Unavailable, match="unreachable"):
        everything(lister)
    assert len(slept) == s3listing.ATTEMPTS - 1


HANG: tuple[int, dict[str, str], bytes] = (0, {}, b"")  # in a script: the request is never answered


class Scripted:
    """An HTTP server answering each GET with the next (status, headers, body) of its
    script; `asked` holds the paths it was asked for."""

    def __init__(self, script: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.script = list(script)
        self.asked: list[str] = []
        self.released = threading.Event()
        self.hang_ended = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.asked.append(self.path)
                if outer.script[0] == HANG:
                    outer.released.wait(30)  # a store that never answers (until the test ends)
                    outer.hang_ended.set()
                    return
                status, headers, body = outer.script.pop(0)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[type[Scripted]]:
    made: list[Scripted] = []

    def make(script: list[tuple[int, dict[str, str], bytes]]) -> Scripted:
        made.append(Scripted(script))
        return made[-1]

    yield make  # type: ignore[misc]
    for server in made:
        server.close()


def page(keys: list[str], token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    items = "".join(f"<Contents><Key>{k}</Key><ETag>&quot;e&quot;</ETag><Size>1</Size></Contents>"
                    for k in keys)  # fmt: skip
    more = (f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>"
            if token else "<IsTruncated>false</IsTruncated>")  # fmt: skip
    return 200, {}, f"<ListBucketResult>{more}{items}</ListBucketResult>".encode()


def error(
    status: int, code: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return status, headers or {}, f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()


def test_a_failing_or_throttling_store_is_asked_again(scripted: type[Scripted]) -> None:
    store = scripted([page(["a"], "T1"), error(500, "InternalError"),
                      error(503, "SlowDown", {"Retry-After": "2"}), page(["b"], "T2"),
                      error(503, "SlowDown", {"Retry-After": "3600"}), page(["c"])])  # fmt: skip
    slept: list[float] = []
    lister = listing(store.url, "b")
    lister.sleep = slept.append
    assert [key for key, _, _ in everything(lister)] == ["a", "b", "c"]
    # Retry-After when longer than the backoff, and never more than MAX_WAIT
    assert slept == [s3listing.BACKOFF, 2.0, s3listing.MAX_WAIT]
    assert all("continuation-token=T1" in path for path in store.asked[1:4])


def test_a_page_over_the_limit_is_refused(
    scripted: type[Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3listing, "MAX_PAGE_BYTES", 200)
    store = scripted([page(["k" * 100, "l" * 100])] * s3listing.ATTEMPTS)
    with pytest.raises(Unavailable, match="a page over 200 bytes"):
        everything(listing(store.url, "b"))


def test_a_store_silent_past_the_read_timeout_is_unavailable(
    scripted: type[Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3listing, "READ_TIMEOUT", 0.3)
    store = scripted([HANG])
    with pytest.raises(Unavailable, match="unreachable"):
        everything(listing(store.url, "b"))
    assert len(store.asked) == s3listing.ATTEMPTS  # each try timed out, none hung


def test_without_keys_in_the_environment_botocore_s_chain_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    files = tmp_path / "credentials"
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(files))
    assert credentials_from_env() is None
    with pytest.raises(AccessDenied, match="no usable credentials"):
        credential_source(None)()
    files.write_text("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s3cr3t\n")
    found = credential_source(None)()
    assert (found.key_id, found.secret, found.token) == ("AKIDFILE", "s3cr3t", None)


@pytest.mark.parametrize(
    ("answers", "kind", "said"),
    [
        ([error(500, "InternalError")] * 3, Unavailable, "500 InternalError"),
        ([error(503, "SlowDown")] * 3, Throttled, "503 SlowDown"),
        ([error(403, "AccessDenied")], AccessDenied, "403 AccessDenied"),
        ([error(404, "NoSuchBucket")], NotFound, "404 NoSuchBucket"),
        ([(502, {}, b"<html>bad gateway</html>")] * 3, Unavailable, "502 502"),
        ([(200, {}, b"<html>a portal page</html>")] * 3, Unavailable, "not a listing"),
    ],
)
def test_a_failure_is_a_store_error_of_its_kind(
    scripted: type[Scripted],
    answers: list[tuple[int, dict[str, str], bytes]],
    kind: type[StoreError],
    said: str,
) -> None:
    store = scripted(answers)
    with pytest.raises(kind, match=said):
        everything(listing(store.url, "b"))
    assert len(store.asked) == len(answers)  # a refusal is final; the rest tried ATTEMPTS times
    assert fetchers() == []


def test_stopping_early_does_not_wait_for_a_store_that_does_not_answer(
    scripted: type[Scripted],
) -> None:
    store = scripted([page(["a"], "T1"), HANG])
    pages = listing(store.url, "b").pages()
    assert isinstance(pages, Generator)
    assert [key for key, _, _ in next(pages)] == ["a"]
    while len(store.asked) < 2:  # the next page is asked for, and never answered
        threading.Event().wait(0.01)
    pages.close()
    assert fetchers() == []
    assert not store.hang_ended.is_set()  # closed while the store still held the request


def test_a_bucket_audit_lists_without_botocore_or_an_event_loop(
    moto_server: MotoServer, s3_bucket: str, tmp_path: object
) -> None:
    """The point of the listing: an audit that reads no copy imports none of the S3
    client's libraries (their import alone costs about 0.3 s)."""
    moto_server.put_object(s3_bucket, "a.txt", b"hello")
    inventory = os.path.join(str(tmp_path), "inventory.csv")
    with open(inventory, "w", encoding="utf-8") as out:
        out.write(
            "key,size,sha256\na.txt,5,2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n"
        )
    code = (
        "import sys\n"
        "from ferryman.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "names = ('botocore', 'aiobotocore', 'aiohttp', 'asyncio')\n"
        "loaded = sorted(m for m in names if m in sys.modules)\n"
        "print('LOADED', loaded)\n"
        "sys.exit(status)\n"
    )
    state = os.path.join(str(tmp_path), "state")
    done = subprocess.run(
        [sys.executable, "-c", code, "audit", f"s3://{s3_bucket}", "--inventory", inventory,
         "--state-dir", state],
        capture_output=True, text=True, env={**os.environ, **s3_env(moto_server.url)}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout

"""A whole bucket (prefix) listed without botocore: ListObjectsV2 over http.client.

An audit lists every key of a bucket and reads none of them unless asked
to. botocore is a poor fit for that one request: importing it with
aiobotocore and aiohttp and parsing its S3 model takes about 0.35 s of CPU
before the first page is asked for, and parsing a page of 1,000 keys into
its dicts about 25 ms. Here a page costs a few milliseconds (the C XML
parser), and the first request leaves the process about as soon as the
command has read its arguments. Why this and not botocore everywhere is
docs/decisions/0042-bucket-listing-without-botocore.md.

What it does, and nothing more:

- GET `?list-type=2&encoding-type=url`, signed with SigV4 (stores/sigv4.py),
  page after page; keys come back in S3 key order. A key the store
  URL-encoded is decoded as botocore decodes it (`+` is a space).
- Addressing as the S3 store's client does it: path style on an
  --s3-endpoint (`http://host:port/bucket`), otherwise AWS's virtual host
  (`bucket.s3.REGION.amazonaws.com`), or path style for a bucket whose name
  holds a dot (a virtual host would not match the certificate). A bucket in
  another region than AWS_REGION is followed once, by the region the
  answer names.
- Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
  (AWS_SESSION_TOKEN); without them, botocore's chain (config files,
  container and instance roles) is asked, once, and its credentials are
  refreshed as botocore refreshes them.
- One page is fetched ahead, in a thread, while the caller works on the
  last. A failed request is tried again (ATTEMPTS in all) when the store
  was unreachable, failing or asked to slow down; a refusal (no such
  bucket, denied) is final. Every failure is a StoreError kind, judged by
  stores/s3codes.py as the S3 store judges its own.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import queue
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus, urlsplit
from xml.etree import ElementTree

from ferryman import __version__
from ferryman.stores.base import AccessDenied, StoreError, Throttled, Unavailable
from ferryman.stores.s3codes import answer_error
from ferryman.stores.s3source import (
    CONNECT_TIMEOUT,
    LIST_PAGE,
    READ_TIMEOUT,
    credentials_from_env,
    parse_source,
    region_from_env,
)
from ferryman.stores.sigv4 import Credentials, canonical_query, encode, signed_headers

ATTEMPTS = 3  # tries of one page, when the store is unreachable, failing or throttling
BACKOFF = 0.5  # seconds before the second try; doubled before each further one
MAX_WAIT = 10.0  # the longest pause a Retry-After can ask for between tries
MAX_PAGE_BYTES = 16 * 1024 * 1024  # 1,000 keys of 1 KiB, URL-encoded, fit many times over
USER_AGENT = f"ferryman/{__version__}"

Entry = tuple[str, int, str]  # key (relative to the prefix), size, ETag
CredentialSource = Callable[[], Credentials]

log = logging.getLogger("ferryman.store")


@dataclass(frozen=True)
class BucketAddress:
    """Where a bucket's listing is asked for, and how it is signed."""

    scheme: str  # "http" or "https"
    host: str  # host[:port], as the Host header says it
    path: str  # the request path, encoded: "/bucket" (path style) or "/" (virtual host)
    bucket: str
    prefix: str  # without slashes at either end
    region: str
    aws: bool  # AWS's own endpoint (no --s3-endpoint): its region may be followed

    @property
    def shown(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def bucket_address(bucket: str, prefix: str, endpoint: str | None, region: str) -> BucketAddress:
    """How the S3 store's client would address this bucket: path style on an endpoint,
    a virtual host on AWS (path style for a name with a dot)."""
    if endpoint is not None:
        parts = urlsplit(endpoint)
        base = parts.path.rstrip("/")
        return BucketAddress(parts.scheme, parts.netloc, encode(f"{base}/{bucket}", slash=True),
                             bucket, prefix, region, aws=False)  # fmt: skip
    if "." in bucket:
        return BucketAddress("https", f"s3.{region}.amazonaws.com", f"/{bucket}",
                             bucket, prefix, region, aws=True)  # fmt: skip
    return BucketAddress("https", f"{bucket}.s3.{region}.amazonaws.com", "/",
                         bucket, prefix, region, aws=True)  # fmt: skip


def redirected(address: BucketAddress, headers: Mapping[str, str]) -> BucketAddress | None:
    """Where to ask again when AWS answers that the bucket is in another region (its
    `x-amz-bucket-region` header, on a 301 or a 400); None on an --s3-endpoint, which
    is asked as configured."""
    region = headers.get("x-amz-bucket-region")
    if not address.aws or not region or region == address.region:
        return None
    return bucket_address(address.bucket, address.prefix, None, region)


def credential_source(static: tuple[str, str, str | None] | None) -> CredentialSource:
    """Credentials for each request: `static` ones, or botocore's chain (asked on the
    first call, so that its failure is the listing's to report)."""
    if static is not None:
        fixed = Credentials(*static)
        return lambda: fixed
    found: list[Any] = []

    def from_chain() -> Credentials:
        if not found:
            import botocore.session  # type: ignore[import-untyped]

            found.append(botocore.session.get_session().get_credentials())
        if found[0] is None:
            raise AccessDenied("no usable credentials (none in AWS_* or botocore's chain)")
        frozen = found[0].get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    return from_chain


@dataclass
class Page:
    entries: list[Entry]
    token: str | None  # the next page's continuation token; None after the last page


def parse_page(body: bytes, full_prefix: str) -> Page:
    """One ListObjectsV2 answer: its objects (keys made relative to `full_prefix`,
    "directory markers" ending in "/" left out) and the next page's token."""
    root = _xml(body)
    if root is None:
        raise Unavailable("listing: the answer is not XML, or declares a DTD")
    tag = root.tag
    ns = tag[: tag.index("}") + 1] if tag.startswith("{") else ""
    if tag != ns + "ListBucketResult":
        raise Unavailable(f"listing: the answer is not a listing ({tag[len(ns) :]!r})")
    contents, key_tag, size_tag, etag_tag = (ns + n for n in ("Contents", "Key", "Size", "ETag"))
    encoded = root.findtext(ns + "EncodingType") == "url"
    cut = len(full_prefix)
    entries: list[Entry] = []
    for item in root.iter(contents):
        key = size = etag = None
        for field in item:
            if field.tag == key_tag:
                key = field.text or ""
            elif field.tag == size_tag:
                size = field.text
            elif field.tag == etag_tag:
                etag = field.text or ""
        if key is None or size is None or etag is None or not size.isdigit():
            raise Unavailable("listing: an object without its key, size or ETag")
        if encoded:
            key = unquote_plus(key)
        if not key.startswith(full_prefix):
            raise Unavailable(f"listing: key {key[:100]!r} is not under the prefix asked for")
        key = key[cut:]
        if key and not key.endswith("/"):
            entries.append((key, int(size), etag))
    truncated = root.findtext(ns + "IsTruncated") == "true"
    token = root.findtext(ns + "NextContinuationToken") if truncated else None
    if truncated and not token:
        raise Unavailable("listing: a truncated page without a continuation token")
    return Page(entries, token)


def error_code(body: bytes) -> str:
    """The S3 code of an error answer's body ("" when it has none)."""
    root = _xml(body)
    return "" if root is None else (root.findtext("Code") or "").strip()


def _xml(body: bytes) -> ElementTree.Element | None:
    """The parsed answer, or None. S3 never sends a DTD, so one is refused unread: no
    entity of the store's making is ever expanded (the parser fetches none anyway)."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return None
    try:
        return ElementTree.fromstring(body)  # noqa: S314 (no DTD, as checked above)
    except ElementTree.ParseError:
        return None


class BucketListing:
    """Every object of one bucket (prefix), in S3 key order, in pages."""

    def __init__(
        self,
        address: BucketAddress,
        credentials: CredentialSource,
        *,
        page_size: int = LIST_PAGE,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.address = address
        self.credentials = credentials
        self.page_size = page_size
        self._stop = threading.Event()  # set when the caller stops taking pages
        self.sleep = sleep or self._stop.wait  # a pause between tries ends with the listing
        self._connection: http.client.HTTPConnection | None = None
        self._context: ssl.SSLContext | None = None

    # -- the pages, one fetched ahead -----------------------------------------------

    def pages(self, start_after: str | None = None) -> Iterator[list[Entry]]:
        """Each page's entries, as they come (after the key `start_after` only, relative
        to the prefix, when given); the next page is asked for in a thread while the
        caller uses this one. A StoreError ends the pages. A caller that stops early
        cuts the request in flight: closing never waits on the store."""
        handoff: queue.Queue[list[Entry] | StoreError | None] = queue.Queue(maxsize=1)
        self._stop.clear()
        fetcher = threading.Thread(target=self._fetch_all, args=(handoff, start_after), daemon=True,
                                   name="ferryman-bucket-listing")  # fmt: skip
        fetcher.start()
        try:
            while True:
                item = handoff.get()
                if item is None:
                    return
                if isinstance(item, StoreError):
                    raise item
                yield item
        finally:
            self._stop.set()
            self._cut()
            while fetcher.is_alive():  # a fetcher waiting to hand over a page: take it
                try:
                    handoff.get(timeout=0.05)
                except queue.Empty:
                    continue
            fetcher.join()
            self.close()

    def _fetch_all(
        self, handoff: queue.Queue[list[Entry] | StoreError | None], start_after: str | None
    ) -> None:
        token: str | None = None
        try:
            while not self._stop.is_set():
                page = self.page(token, start_after if token is None else None)
                handoff.put(page.entries)
                if page.token is None:
                    break
                token = page.token
        except StoreError as exc:
            handoff.put(exc)
            return
        except Exception as exc:  # a defect: logged whole, and the caller told
            log.exception("%s: listing failed", self.address.shown)
            handoff.put(Unavailable(f"listing failed ({type(exc).__name__})"))
            return
        handoff.put(None)

    def _cut(self) -> None:
        """Wake a request blocked on the store (from the caller's thread)."""
        connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- one page ------------------------------------------------------------------

    def page(self, token: str | None, start_after: str | None = None) -> Page:
        """The page after `token` (None: the first, after the key `start_after` when
        given), tried again while it is worth it."""
        full = f"{self.address.prefix}/" if self.address.prefix else ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return parse_page(self._get(full, token, start_after), full)
            except (Unavailable, Throttled) as exc:
                if attempt == ATTEMPTS or self._stop.is_set():
                    raise
                wait = BACKOFF * 2 ** (attempt - 1)
                if isinstance(exc, Throttled):
                    wait = max(wait, min(float(exc.retry_after), MAX_WAIT))
                log.info("%s: listing page failed (%s); trying again in %.1f s",
                         self.address.shown, exc.detail, wait)  # fmt: skip
                self.sleep(wait)
        raise AssertionError("unreachable")

    def _get(self, full: str, token: str | None, start_after: str | None) -> bytes:
        params = {"list-type": "2", "encoding-type": "url", "max-keys": str(self.page_size),
                  "prefix": full}  # fmt: skip
        if token is not None:
            params["continuation-token"] = token
        elif start_after is not None:
            params["start-after"] = full + start_after
        query = canonical_query(params)
        status, headers, body = self._request(query)
        if status == 200:
            return body
        elsewhere = redirected(self.address, headers)
        if elsewhere is not None:  # asked there, once; the address is kept for what follows
            self.address = elsewhere
            self.close()
            status, headers, body = self._request(query)
            if status == 200:
                return body
        code = error_code(body) or str(status)
        raise answer_error(status, code, f"listing of {self.address.shown}",
                           headers.get("retry-after", ""))  # fmt: skip

    def _request(self, query: str) -> tuple[int, dict[str, str], bytes]:
        """GET the listing once: (status, lower-cased headers, body)."""
        address = self.address
        signed = signed_headers(address.host, address.path, query, self.credentials(),
                                address.region, datetime.now(UTC))  # fmt: skip
        signed["user-agent"] = USER_AGENT
        try:
            connection = self._connected()
            connection.request("GET", f"{address.path}?{query}", headers=signed)
            answer = connection.getresponse()
            body = answer.read(MAX_PAGE_BYTES + 1)
            headers = {name.lower(): value for name, value in answer.getheaders()}
            if answer.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            log.warning("%s: listing request failed: %s: %s",
                        address.shown, type(exc).__name__, exc)  # fmt: skip
            raise Unavailable(
                f"listing of {address.shown}: the store is unreachable ({type(exc).__name__})"
            ) from None
        if len(body) > MAX_PAGE_BYTES:
            self.close()
            raise Unavailable(f"listing of {address.shown}: a page over {MAX_PAGE_BYTES} bytes")
        return answer.status, headers, body

    def _connected(self) -> http.client.HTTPConnection:
        """The open connection, or a new one (connected within CONNECT_TIMEOUT; then
        READ_TIMEOUT of silence on it counts as lost)."""
        if self._connection is not None:
            return self._connection
        address = self.address
        connection: http.client.HTTPConnection
        if address.scheme == "https":
            if self._context is None:
                self._context = ssl.create_default_context(
                    cafile=os.environ.get("AWS_CA_BUNDLE") or None
                )
            connection = http.client.HTTPSConnection(
                address.host, timeout=CONNECT_TIMEOUT, context=self._context
            )
        else:
            connection = http.client.HTTPConnection(address.host, timeout=CONNECT_TIMEOUT)
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(READ_TIMEOUT)
        self._connection = connection
        return connection

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()


def listing_for(url: str, endpoint: str | None) -> BucketListing:
    """The listing of `url` (s3://bucket[/prefix]) with the environment's region and
    credentials, as S3Store.from_url would reach it."""
    bucket, prefix = parse_source(url)
    address = bucket_address(bucket, prefix, endpoint, region_from_env())
    return BucketListing(address, credential_source(credentials_from_env()))

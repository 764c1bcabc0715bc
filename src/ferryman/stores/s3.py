"""The Store protocol over S3 and S3-compatible endpoints (aiobotocore).

`S3Store.from_config` serves `s3://bucket[/prefix]`: every key ferryman asks
for is relative to the prefix. Why aiobotocore and not obstore is
docs/decisions/0011-s3-client-library.md: any S3 key, S3's own error codes
and Retry-After, ferryman's own SHA-256 sent as the checksum, a body that
can be closed.

This module holds the client, stat, ranged reads, listing and delete, and
decides how an upload is sent; the sending itself (single PUT or multipart)
is stores/s3upload.py, and what a failure means is stores/s3errors.py.

Who owns what:
- The aiobotocore client (and its aiohttp connection pool) belongs to the
  store: made on first use on the running loop, closed by `close()`.
- A `read()` owns its HTTP response: the iterator's `finally` closes it, so
  `aclose()` (or a cancelled consumer) drops the connection at once instead
  of draining the rest of the body.
- `upload()` hands its multipart upload to s3upload.put_in_parts, which
  aborts it on any failure, cancellation included.
- The caller owns `fd`; it is only read, in threads.

Retries: none in the library (total_max_attempts=1). The cache decides when
a read is worth another try and the upload path retries whole uploads
(--upload-attempts); only a multipart part is retried (PART_ATTEMPTS),
because failing a 16 GiB upload for one lost part would waste the rest.

Every request and body read is wrapped here: its failure becomes a
StoreError kind through s3errors.store_error, so nothing from botocore or
aiohttp leaves this module. The library's own text names the endpoint and
stays in the log: the first failure of a run of them is logged with it (one
line, not one per request, however long the store stays away), and the
first answer after them says the store answers again.

`check()` is the start-time check (ferryman/boot.py): is the bucket there,
are the credentials accepted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from functools import partial
from typing import Any

from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import AioSession, get_session  # type: ignore[import-untyped]
from botocore.utils import parse_timestamp  # type: ignore[import-untyped]

from ferryman.config import Config
from ferryman.http.spans import Span, parse_content_range
from ferryman.stores.base import (
    ListEntry,
    NotFound,
    ObjectInfo,
    StoreError,
    Truncated,
    Unavailable,
)
from ferryman.stores.calls import CALLS
from ferryman.stores.s3errors import LIBRARY_ERRORS, library_text, store_error
from ferryman.stores.s3source import (
    CONNECT_TIMEOUT,
    LIST_PAGE,
    READ_TIMEOUT,
    check_endpoint,
    credentials_from_env,
    parse_source,
    region_from_env,
)
from ferryman.stores.s3upload import FileWindow as FileWindow  # re-exported: s3.FileWindow
from ferryman.stores.s3upload import UploadRecords, put_in_parts, put_whole

READ_CHUNK = 1024 * 1024  # the most one read() yield carries; aiohttp gives what has arrived
UPLOAD_CONCURRENCY = 4  # parts in flight per upload (streamed from the file, not buffered)
PART_ATTEMPTS = 3  # tries of one multipart part
MAX_PARTS = 10_000  # S3 takes 10,000 parts at most: larger files get larger parts
POOL_CONNECTIONS = 32

SHA256_HEX = re.compile(r"[0-9a-f]{64}")

log = logging.getLogger("ferryman.store")


class S3Store:
    """One bucket (and prefix) on one endpoint."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        credentials: tuple[str, str, str | None] | None = None,
        multipart_threshold: int = 64 * 1024**2,
        part_size: int = 16 * 1024**2,
        list_page: int = LIST_PAGE,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.list_page = list_page
        where = endpoint or f"AWS S3 ({region})"
        self.description = f"s3://{bucket}{'/' + prefix if prefix else ''} at {where}"
        self._credentials = credentials
        self._session = _shared_session()
        self._client_context: Any = None
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._failing = False  # the last request found the store unreachable or failing
        # Where multipart uploads are recorded while in progress (app/uploadrecords.py).
        self.records: UploadRecords | None = None

    @classmethod
    def from_config(cls, config: Config) -> S3Store:
        """The store for SOURCE; credentials and region from the AWS_* environment.

        Without AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, botocore's usual
        chain is used (shared config files, container and instance roles).
        """
        return cls.from_url(config.source, config)

    @classmethod
    def from_url(cls, url: str, config: Config) -> S3Store:
        """The store at `url` (s3://bucket[/prefix]), with SOURCE's endpoint and settings:
        a replica, or a store an audit reads."""
        bucket, prefix = parse_source(url)
        endpoint = check_endpoint(config.s3_endpoint)
        return cls(
            bucket,
            prefix,
            endpoint=endpoint,
            region=region_from_env(),
            credentials=credentials_from_env(),
            multipart_threshold=config.s3_multipart_threshold,
            part_size=config.s3_part_size,
        )

    # -- the client ------------------------------------------------------------

    async def _s3(self) -> Any:
        """The client, made on first use (it binds to the running loop)."""
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._client is None:
                # botocore parses its JSON models on first use: do that in a thread.
                await asyncio.to_thread(_load_models, self._session)
                config = AioConfig(
                    s3={
                        "addressing_style": "path" if self.endpoint else "auto",
                        # The body carries x-amz-checksum-sha256; hashing it again
                        # for the signature would only cost CPU on the loop.
                        "payload_signing_enabled": False,
                    },
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    max_pool_connections=POOL_CONNECTIONS,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                key_id, secret, token = self._credentials or (None, None, None)
                self._client_context = self._session.create_client(
                    "s3",
                    endpoint_url=self.endpoint,
                    # Plain HTTP has no certificate to check; the default would load
                    # the system's CA store anyway, about 25 ms of CPU per client.
                    verify=False if _plain_http(self.endpoint) else None,
                    region_name=self.region,
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret,
                    aws_session_token=token,
                    config=config,
                )
                self._client = await self._client_context.__aenter__()
        return self._client

    async def prepare(self) -> None:
        await self._s3()

    async def close(self) -> None:
        if self._client_context is not None:
            context, self._client_context, self._client = self._client_context, None, None
            await context.__aexit__(None, None, None)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _call(self, key: str, operation: str, **params: Any) -> Any:
        """One S3 request; its failure as a StoreError."""
        s3 = await self._s3()
        try:
            answer = await getattr(s3, operation)(Bucket=self.bucket, **params)
        except LIBRARY_ERRORS as exc:
            error = self._failed(exc, key)
            CALLS.count(operation, error)
            raise error from exc
        CALLS.count(operation, None)
        if self._failing:
            self._failing = False
            log.info("%s answers again", self.description)
        return answer

    def _failed(self, exc: BaseException, key: str) -> StoreError:
        """The StoreError for a failed request; the first of a run of outages is logged,
        with the library's text (which the client never sees)."""
        error = store_error(exc, key)
        if isinstance(error, Unavailable) and not self._failing:
            self._failing = True
            log.warning("%s fails: %s (requests answer 502 until it answers again)",
                        self.description, library_text(exc))  # fmt: skip
        return error

    async def check(self) -> None:
        """At start: the bucket exists and the credentials are accepted.

        One ListObjectsV2 of the prefix for at most one key: the permission
        that listings and every 404 (is it a "directory"?) need anyway. Raises
        NotFound (no such bucket), AccessDenied (credentials refused),
        Throttled, or Unavailable (unreachable, a server error; the caller
        bounds the time with asyncio.timeout). Their detail is the store's
        own status, code and message, or the library's text: for the log
        (it may name the endpoint).
        """
        s3 = await self._s3()
        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            await s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except LIBRARY_ERRORS as exc:
            error = store_error(exc, self.bucket)
            CALLS.count("list_objects_v2", error)
            raise type(error)(library_text(exc)) from exc
        CALLS.count("list_objects_v2", None)

    # -- reading -----------------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo:
        head = await self._call(key, "head_object", Key=self._key(key))
        sha256 = head.get("Metadata", {}).get("sha256", "").lower()
        return ObjectInfo(
            key=key,
            size=head["ContentLength"],
            etag=head["ETag"],
            last_modified=int(head["LastModified"].timestamp()),
            sha256=sha256 if SHA256_HEX.fullmatch(sha256) else None,
            content_type=head.get("ContentType"),
        )

    async def read(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        if start == end:
            return
        span = Span(start, end)
        params: dict[str, Any] = {"Key": self._key(key), "Range": span.range_header()}
        if if_match is not None:
            params["IfMatch"] = if_match
        answer = await self._call(key, "get_object", **params)
        body = answer["Body"]
        try:
            _check_range(key, answer, span)
            missing = end - start
            while missing > 0:
                try:
                    chunk = await body.read(min(READ_CHUNK, missing))
                except LIBRARY_ERRORS as exc:
                    raise self._failed(exc, key) from exc
                if not chunk:
                    raise Truncated(f"{key}: body ended {missing} bytes short of {end - start}")
                missing -= len(chunk)
                yield chunk
        finally:
            body.close()  # unread bytes are not drained: the connection is dropped

    async def list(self, prefix: str) -> AsyncIterator[ListEntry]:
        """Entries in S3 key order; a directory sorts as its name plus "/"."""
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Prefix": full, "Delimiter": "/", "MaxKeys": self.list_page}
            if token:
                params["ContinuationToken"] = token
            page = await self._call(prefix, "list_objects_v2", **params)
            for _, entry in sorted(_page_entries(page, full), key=lambda pair: pair[0]):
                yield entry
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    # -- writing -----------------------------------------------------------------

    async def upload(
        self, key: str, fd: int, size: int, sha256: bytes, content_type: str | None = None
    ) -> None:
        # The SHA-256 travels as metadata too: stat() reads it back for verification.
        extra: dict[str, Any] = {"Metadata": {"sha256": sha256.hex()}}
        if content_type:
            extra["ContentType"] = content_type
        if (await asyncio.to_thread(os.fstat, fd)).st_size < size:
            raise Truncated(f"{key}: the file to upload is shorter than {size} bytes")
        call = partial(self._call, key, Key=self._key(key))
        if size <= self.multipart_threshold:
            await put_whole(call, fd, size, sha256, extra)
        else:
            await put_in_parts(
                call,
                fd,
                size,
                extra,
                part_size=self.part_size,
                max_parts=MAX_PARTS,
                concurrency=UPLOAD_CONCURRENCY,
                attempts=PART_ATTEMPTS,
                records=self.records,
                key=key,
            )

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort the multipart upload `upload_id` of `key` (one S3 no longer knows, completed
        or aborted already, counts as done); a StoreError when the store cannot."""
        try:
            await self._call(key, "abort_multipart_upload", Key=self._key(key), UploadId=upload_id)
        except NotFound:
            pass

    async def delete(self, key: str) -> None:
        await self._call(key, "delete_object", Key=self._key(key))


# -- helpers ---------------------------------------------------------------------


def parse_s3_timestamp(value: Any) -> datetime:
    """A timestamp in an S3 answer, as botocore's own parser gives it (aware, UTC).

    A listing carries one per object in ISO 8601 with a "Z"; botocore reads
    every timestamp with dateutil, which took three quarters of the CPU of
    listing a bucket. That form is read with datetime.fromisoformat; anything
    else (the HTTP dates of headers) still goes to botocore's parser.
    """
    if isinstance(value, str) and value.endswith("Z"):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    parsed: datetime = parse_timestamp(value)
    return parsed


_SESSION: AioSession | None = None
_MODELS_LOCK = threading.Lock()


def _shared_session() -> AioSession:
    """One botocore session for every store of the process: the models it parses (about
    0.1 s of CPU) are parsed once, not once per replica or audited bucket. Each store
    still makes its own client, on its own loop."""
    global _SESSION
    if _SESSION is None:
        _SESSION = get_session()
        factory = _SESSION.get_component("response_parser_factory")
        factory.set_parser_defaults(timestamp_parser=parse_s3_timestamp)
    return _SESSION


def _load_models(session: AioSession) -> None:
    """Parse what a client of S3 needs, once per session (in threads: the lock keeps two
    stores from parsing the same files at once)."""
    with _MODELS_LOCK:
        _load_models_now(session)


def _load_models_now(session: AioSession) -> None:
    loader = session.get_component("data_loader")
    loader.load_service_model("s3", "service-2")
    loader.load_service_model("s3", "endpoint-rule-set-1")
    for name in ("endpoints", "partitions", "sdk-default-configuration", "_retry"):
        loader.load_data(name)


def _check_range(key: str, answer: dict[str, Any], asked: Span) -> None:
    """The store must answer with exactly the range asked for, before any byte is passed on."""
    content_range = answer.get("ContentRange")
    if content_range is None:
        # A 200 with the whole object: right only when the object is exactly the span asked.
        if asked.start == 0 and answer.get("ContentLength") == asked.end:
            return
        raise Unavailable(f"{key}: the store ignored the Range request")
    parsed = parse_content_range(content_range)
    if parsed is None or parsed[0].start != asked.start:
        raise Unavailable(f"{key}: asked for {asked.range_header()}, got {content_range!r}")
    if parsed[0] != asked:
        has = f"the object has {content_range!r}"
        raise Truncated(f"{key}: asked for {asked.range_header()}, {has}")


def _page_entries(page: dict[str, Any], full: str) -> list[tuple[str, ListEntry]]:
    """(sort key, entry) for each common prefix and object of one ListObjectsV2 page."""
    entries = []
    for common in page.get("CommonPrefixes", []):
        name = common["Prefix"][len(full) :].removesuffix("/")
        if name:  # "a//" yields an empty name: nothing a client could ask for
            entries.append((common["Prefix"], ListEntry(name=name, is_dir=True)))
    for item in page.get("Contents", []):
        name = item["Key"][len(full) :]
        if name:  # the "directory marker" object named like the prefix itself
            modified = int(item["LastModified"].timestamp())
            entry = ListEntry(name=name, is_dir=False, size=item["Size"], last_modified=modified)
            entries.append((item["Key"], entry))
    return entries


def _plain_http(endpoint: str | None) -> bool:
    return endpoint is not None and endpoint.lower().startswith("http://")

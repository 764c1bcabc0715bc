"""The Store protocol over S3 and S3-compatible endpoints (aiobotocore).

`S3Store.from_config` serves `s3://bucket[/prefix]`: every key ferryman asks
for is relative to the prefix. Why aiobotocore and not obstore is
docs/decisions/0011-s3-client-library.md: any S3 key, S3's own error codes
and Retry-After, ferryman's own SHA-256 sent as the checksum, a body that
can be closed.

Who owns what:
- The aiobotocore client (and its aiohttp connection pool) belongs to the
  store: made on first use on the running loop, closed by `close()`.
- A `read()` owns its HTTP response: the iterator's `finally` closes it, so
  `aclose()` (or a cancelled consumer) drops the connection at once instead
  of draining the rest of the body.
- `upload()` owns its multipart upload: any failure, cancellation included,
  aborts it, so no invisible parts are left behind to be billed.
- The caller owns `fd`; it is only read here, with os.pread in a thread.

Retries: none in the library (total_max_attempts=1). The cache decides when
a read is worth another try and the upload path retries whole uploads
(--upload-attempts); only a multipart part is retried here (PART_ATTEMPTS),
because failing a 16 GiB upload for one lost part would waste the rest.

Every failure becomes a StoreError kind in `store_error`, the one place
that knows the library's exceptions; nothing from botocore or aiohttp
leaves this module.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import botocore.exceptions as boto_errors  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.response import AioReadTimeoutError  # type: ignore[import-untyped]
from aiobotocore.session import AioSession, get_session  # type: ignore[import-untyped]

from ferryman.config import Config
from ferryman.stores.base import (
    AccessDenied,
    ListEntry,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    StoreError,
    Throttled,
    Truncated,
    Unavailable,
)
from ferryman.stores.s3source import check_endpoint, parse_source

T = TypeVar("T")

READ_CHUNK = 1024 * 1024  # the most one read() yield carries; aiohttp gives what has arrived
UPLOAD_CONCURRENCY = 4  # parts in flight per upload (streamed from the file, not buffered)
PART_ATTEMPTS = 3
MAX_PARTS = 10_000
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # silence on an open connection before it counts as lost
POOL_CONNECTIONS = 32
LIST_PAGE = 1000  # S3's own maximum

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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
        self._session: AioSession = get_session()
        self._client_context: Any = None
        self._client: Any = None
        self._client_lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: Config) -> S3Store:
        """The store for SOURCE; credentials and region from the AWS_* environment.

        Without AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, botocore's usual
        chain is used (shared config files, container and instance roles).
        """
        bucket, prefix = parse_source(config.source)
        endpoint = check_endpoint(config.s3_endpoint)
        key_id = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        credentials = (
            (key_id, secret, os.environ.get("AWS_SESSION_TOKEN")) if key_id and secret else None
        )
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(
            bucket,
            prefix,
            endpoint=endpoint,
            region=region,
            credentials=credentials,
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
                    region_name=self.region,
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret,
                    aws_session_token=token,
                    config=config,
                )
                self._client = await self._client_context.__aenter__()
        return self._client

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
            return await getattr(s3, operation)(Bucket=self.bucket, **params)
        except LIBRARY_ERRORS as exc:
            raise store_error(exc, key) from exc

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
        params: dict[str, Any] = {"Key": self._key(key), "Range": f"bytes={start}-{end - 1}"}
        if if_match is not None:
            params["IfMatch"] = if_match
        answer = await self._call(key, "get_object", **params)
        body = answer["Body"]
        try:
            _check_range(key, answer, start, end)
            missing = end - start
            while missing > 0:
                try:
                    chunk = await body.read(min(READ_CHUNK, missing))
                except LIBRARY_ERRORS as exc:
                    raise store_error(exc, key) from exc
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
        extra: dict[str, Any] = {"Metadata": {"sha256": sha256.hex()}}
        if content_type:
            extra["ContentType"] = content_type
        if (await asyncio.to_thread(os.fstat, fd)).st_size < size:
            raise Truncated(f"{key}: the file to upload is shorter than {size} bytes")
        if size <= self.multipart_threshold:
            await self._call(
                key,
                "put_object",
                Key=self._key(key),
                Body=FileWindow(fd, 0, size),
                ContentLength=size,
                ChecksumSHA256=_b64(sha256),
                **extra,
            )
        else:
            await self._upload_parts(key, fd, size, extra)

    async def _upload_parts(self, key: str, fd: int, size: int, extra: dict[str, Any]) -> None:
        created = await self._call(
            key, "create_multipart_upload", Key=self._key(key), ChecksumAlgorithm="SHA256", **extra
        )
        upload_id = created["UploadId"]
        slots = asyncio.Semaphore(UPLOAD_CONCURRENCY)
        part_size = max(self.part_size, -(-size // MAX_PARTS))  # S3 takes 10,000 parts at most

        async def part(number: int) -> dict[str, Any]:
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            async with slots:
                digest = await asyncio.to_thread(_sha256_of, fd, offset, length)
                answer = await _with_retries(
                    lambda: self._call(
                        key,
                        "upload_part",
                        Key=self._key(key),
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=FileWindow(fd, offset, length),
                        ContentLength=length,
                        ChecksumSHA256=_b64(digest),
                    )
                )
            return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": _b64(digest)}

        count = -(-size // part_size)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(part(n)) for n in range(1, count + 1)]
            await self._call(
                key,
                "complete_multipart_upload",
                Key=self._key(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": [task.result() for task in tasks]},
            )
        except BaseException as exc:
            # Shielded: a cancelled upload must still abort, or its parts linger.
            await asyncio.shield(self._abort(key, upload_id))
            if isinstance(exc, BaseExceptionGroup):
                raise _first_store_error(exc) from exc
            raise

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._call(key, "abort_multipart_upload", Key=self._key(key), UploadId=upload_id)
        except StoreError:
            pass  # best effort; the original failure is what the caller needs to see

    async def delete(self, key: str) -> None:
        # S3 answers 204 whether or not the key existed; the protocol promises NotFound.
        await self._call(key, "head_object", Key=self._key(key))
        await self._call(key, "delete_object", Key=self._key(key))


# -- helpers ---------------------------------------------------------------------


def _load_models(session: AioSession) -> None:
    loader = session.get_component("data_loader")
    loader.load_service_model("s3", "service-2")
    loader.load_service_model("s3", "endpoint-rule-set-1")
    for name in ("endpoints", "partitions", "sdk-default-configuration", "_retry"):
        loader.load_data(name)


def _check_range(key: str, answer: dict[str, Any], start: int, end: int) -> None:
    """The store must answer with exactly the range asked for, before any byte is passed on."""
    content_range = answer.get("ContentRange")
    if content_range is None:
        # A 200 with the whole object: right only when the object is exactly [0, end).
        if start == 0 and answer.get("ContentLength") == end:
            return
        raise Unavailable(f"{key}: the store ignored the Range request")
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range)
    if not match or int(match[1]) != start:
        raise Unavailable(f"{key}: asked for bytes {start}-{end - 1}, got {content_range!r}")
    if int(match[2]) != end - 1:
        raise Truncated(
            f"{key}: asked for bytes {start}-{end - 1}, the object has {content_range!r}"
        )


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


class FileWindow(io.RawIOBase):
    """Bytes [offset, offset + length) of a descriptor, as a request body.

    aiohttp streams a file-like body 64 KiB at a time, each read in its
    executor: no part of the upload is held in memory and no file read runs
    on the event loop. (A bytes body would be wrapped by botocore in a
    BytesIO that aiohttp copies whole, on the loop: 30 ms for 64 MiB.)
    The descriptor stays the caller's: closing the window does not close it.
    """

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__()
        self._fd, self._offset, self._length = fd, offset, length
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._length}[whence]
        self._position = min(max(base + position, 0), self._length)
        return self._position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._length - self._position)
        if wanted <= 0:
            return 0
        with memoryview(buffer) as view:
            count = os.preadv(self._fd, [view[:wanted]], self._offset + self._position)
        if count == 0:  # the file shrank under the upload: never send a short body quietly
            raise OSError(f"upload source ended at {self._offset + self._position}")
        self._position += count
        return count


def _sha256_of(fd: int, offset: int, length: int) -> bytes:
    """SHA-256 of a region of a file (a multipart part's own checksum)."""
    digest = hashlib.sha256()
    done = 0
    while done < length:
        chunk = os.pread(fd, min(length - done, 1024 * 1024), offset + done)
        if not chunk:
            raise Truncated(f"the file to upload ended at {offset + done}")
        digest.update(chunk)
        done += len(chunk)
    return digest.digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


async def _with_retries(attempt: Callable[[], Awaitable[T]]) -> T:
    """A part upload, tried PART_ATTEMPTS times while the failure is worth retrying."""
    for number in range(1, PART_ATTEMPTS + 1):
        try:
            return await attempt()
        except (Unavailable, Truncated, Throttled) as exc:
            if number == PART_ATTEMPTS:
                raise
            delay = exc.retry_after if isinstance(exc, Throttled) else 0.2 * 2**number
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _first_store_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The failure of a TaskGroup of parts, as one exception (the first StoreError)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_store_error(exc)
        if isinstance(exc, StoreError):
            return exc
    return group.exceptions[0]


# -- failures --------------------------------------------------------------------

LIBRARY_ERRORS = (
    boto_errors.BotoCoreError,
    boto_errors.ClientError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
)
NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchUpload", "404"}
DENIED_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidToken",
    "ExpiredToken",
    "403",
}
THROTTLED_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
# The bytes the store received were not the bytes sent: a cut request body.
SHORT_BODY_CODES = {"IncompleteBody", "BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"}
BODY_CUT = (
    AioReadTimeoutError,
    boto_errors.ResponseStreamingError,
    boto_errors.IncompleteReadError,
    aiohttp.ClientPayloadError,
)


def store_error(exc: BaseException, key: str) -> StoreError:
    """What a library or HTTP failure means to ferryman: the one translation."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, boto_errors.ClientError):
        return _answer_error(exc, key)
    if isinstance(exc, BODY_CUT):
        return Truncated(f"{key}: the body was cut: {exc}")
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return AccessDenied(f"{key}: no usable credentials: {exc}")
    return Unavailable(f"{key}: the store is unreachable: {type(exc).__name__}: {exc}")


def _answer_error(exc: Any, key: str) -> StoreError:
    """An error answer from the store: by its S3 code first, then by its status."""
    response = exc.response
    meta = response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    code = str(response.get("Error", {}).get("Code") or status)
    detail = f"{key}: {status} {code}"
    if code in NOT_FOUND_CODES or status == 404:
        return NotFound(detail)
    if code in DENIED_CODES or status == 403:
        return AccessDenied(detail)
    if code == "PreconditionFailed" or status == 412:
        return PreconditionFailed(detail)
    if code in THROTTLED_CODES or status in (429, 503):
        return Throttled(detail, _retry_after(meta.get("HTTPHeaders", {})))
    if code in SHORT_BODY_CODES or status == 416:
        return Truncated(detail)
    return Unavailable(detail)


def _retry_after(headers: dict[str, str]) -> int:
    value = headers.get("retry-after", "")
    return max(1, min(int(value), 3600)) if value.isdigit() else 1

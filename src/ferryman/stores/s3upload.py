"""Sending a file's bytes to S3: one PUT, or a multipart upload streamed from the file.

S3Store.upload (s3.py) decides which, and what metadata goes with the
object; this module only moves the bytes and carries ferryman's own SHA-256
with them (`x-amz-checksum-sha256`, the whole object's or each part's).

Who owns what:
- The caller owns `fd`; it is only read here: by aiohttp through a
  `FileWindow` in its executor, and with os.pread in a thread for a part's
  digest. Nothing of the file is held in memory beyond one read.
- `put_in_parts` owns its multipart upload: any failure, cancellation
  included, aborts it, so no invisible parts are left behind to be billed.
  A process killed with SIGKILL aborts nothing: with `records`, the upload
  is recorded before its first part and forgotten once completed or
  aborted, so that another process can abort it (app/uploadrecords.py).
- Every request goes through the caller's `ObjectCall`, which translates
  failures (stores/s3errors.py): only StoreErrors are seen here.

Retries: a part is tried `attempts` times while its failure is worth another
try, because failing a 16 GiB upload for one lost part would waste the rest.
Whole uploads are retried by the caller (--upload-attempts), never here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from ferryman.stores.base import NotFound, StoreError, Throttled, Truncated, Unavailable

T = TypeVar("T")

DIGEST_READ = 1024 * 1024  # bytes per pread while hashing a part


class ObjectCall(Protocol):
    """One S3 operation on the object being uploaded, bucket and key filled in.

    Its failures arrive as StoreErrors.
    """

    def __call__(self, operation: str, /, **params: Any) -> Awaitable[Any]: ...


class UploadRecords(Protocol):
    """Where the multipart uploads of one store are recorded while in progress."""

    async def opened(self, key: str, upload_id: str) -> None:
        """Record the upload (its failure fails the upload, which is then aborted)."""
        ...

    async def closed(self, key: str, upload_id: str, gone: bool) -> None:
        """The upload ended: forget it if it is `gone` (completed or aborted), else keep
        its record for a later abort (never raises)."""
        ...


async def put_whole(
    call: ObjectCall, fd: int, size: int, sha256: bytes, extra: dict[str, Any]
) -> None:
    """Bytes [0, size) of `fd` as one PUT, with the object's SHA-256 as its checksum."""
    await call(
        "put_object",
        Body=FileWindow(fd, 0, size),
        ContentLength=size,
        ChecksumSHA256=_b64(sha256),
        **extra,
    )


async def put_in_parts(
    call: ObjectCall,
    fd: int,
    size: int,
    extra: dict[str, Any],
    *,
    part_size: int,
    max_parts: int,
    concurrency: int,
    attempts: int,
    records: UploadRecords | None = None,
    key: str = "",
) -> None:
    """Bytes [0, size) of `fd` as a multipart upload of `key`, `concurrency` parts in
    flight, recorded in `records` while in progress."""
    created = await call("create_multipart_upload", ChecksumAlgorithm="SHA256", **extra)
    upload_id = created["UploadId"]
    # Killed before the record lands, the upload is left to the bucket's lifecycle rule
    # (AbortIncompleteMultipartUpload): the window is one catalog write.
    slots = asyncio.Semaphore(concurrency)
    part_size, count = part_plan(size, part_size, max_parts)

    async def part(number: int) -> dict[str, Any]:
        offset = (number - 1) * part_size
        length = min(part_size, size - offset)
        async with slots:
            digest = await asyncio.to_thread(_sha256_of, fd, offset, length)
            answer = await _with_retries(
                attempts,
                lambda: call(
                    "upload_part",
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=FileWindow(fd, offset, length),
                    ContentLength=length,
                    ChecksumSHA256=_b64(digest),
                ),
            )
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": _b64(digest)}

    ended = False  # completed, or aborted: the record may go
    try:
        if records is not None:
            await records.opened(key, upload_id)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(part(n)) for n in range(1, count + 1)]
        await call(
            "complete_multipart_upload",
            UploadId=upload_id,
            MultipartUpload={"Parts": [task.result() for task in tasks]},
        )
        ended = True
    except BaseException as exc:
        # Shielded: a cancelled upload must still abort, or its parts linger.
        ended = await asyncio.shield(_abort(call, upload_id))
        if isinstance(exc, BaseExceptionGroup):
            raise _first_store_error(exc) from exc
        raise
    finally:
        # An upload whose abort failed keeps its record: its owner's sweep tries again.
        if records is not None:
            await asyncio.shield(records.closed(key, upload_id, ended))


def part_plan(size: int, part_size: int, max_parts: int) -> tuple[int, int]:
    """(part size, number of parts) for `size` bytes: parts grow to stay within max_parts."""
    part_size = max(part_size, -(-size // max_parts))
    return part_size, -(-size // part_size)


async def _abort(call: ObjectCall, upload_id: str) -> bool:
    """Abort the upload; whether it is gone (an upload S3 no longer knows counts)."""
    try:
        await call("abort_multipart_upload", UploadId=upload_id)
    except NotFound:
        return True
    except StoreError:
        return False  # best effort; the original failure is what the caller needs to see
    return True


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
        chunk = os.pread(fd, min(length - done, DIGEST_READ), offset + done)
        if not chunk:
            raise Truncated(f"the file to upload ended at {offset + done}")
        digest.update(chunk)
        done += len(chunk)
    return digest.digest()


def _b64(digest: bytes) -> str:
    """A digest as S3 checksum headers carry it."""
    return base64.b64encode(digest).decode("ascii")


async def _with_retries(attempts: int, attempt: Callable[[], Awaitable[T]]) -> T:
    """A part upload, tried `attempts` times while the failure is worth retrying."""
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except (Unavailable, Truncated, Throttled) as exc:
            if number == attempts:
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

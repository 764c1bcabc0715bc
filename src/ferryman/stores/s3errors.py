"""What S3 and its client libraries' failures mean to ferryman: the one translation.

`store_error` turns any botocore, aiohttp, timeout or OS failure met while
talking to S3 into a StoreError kind (stores/base.py). s3.py catches
`LIBRARY_ERRORS` around every request and every body read and raises what
this returns; nothing from botocore or aiohttp leaves the S3 store.

An error answer is judged by its S3 code first and its HTTP status second,
because S3-compatible endpoints agree on the codes more than on statuses.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import botocore.exceptions as boto_errors  # type: ignore[import-untyped]
from aiobotocore.response import AioReadTimeoutError  # type: ignore[import-untyped]

from ferryman.stores.base import (
    AccessDenied,
    NotFound,
    PreconditionFailed,
    StoreError,
    Throttled,
    Truncated,
    Unavailable,
)

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

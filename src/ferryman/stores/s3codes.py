"""What an S3 error answer means to ferryman, from its status and S3 code alone.

Shared by both ways ferryman talks to S3: s3errors.py (aiobotocore's
ClientError) and s3listing.py (its own requests). Kept free of any client
library so the listing imports none. An answer is judged by its S3 code
first and its HTTP status second, because S3-compatible endpoints agree on
the codes more than on statuses.
"""

from __future__ import annotations

from ferryman.stores.base import (
    AccessDenied,
    NotFound,
    PreconditionFailed,
    StoreError,
    Throttled,
    Truncated,
    Unavailable,
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


def answer_error(status: int, code: str, key: str, retry_after: str = "") -> StoreError:
    """The StoreError kind of an error answer; its detail names `key`, the status and
    the code, never the endpoint."""
    detail = f"{key}: {status} {code}"
    if code in NOT_FOUND_CODES or status == 404:
        return NotFound(detail)
    if code in DENIED_CODES or status == 403:
        return AccessDenied(detail)
    if code == "PreconditionFailed" or status == 412:
        return PreconditionFailed(detail)
    if code in THROTTLED_CODES or status in (429, 503):
        return Throttled(detail, retry_after_seconds(retry_after))
    if code in SHORT_BODY_CODES or status == 416:
        return Truncated(detail)
    return Unavailable(detail)


def retry_after_seconds(value: str) -> int:
    """A Retry-After header in whole seconds, 1 to 3600 (1 when absent or unreadable)."""
    return max(1, min(int(value), 3600)) if value.isdigit() else 1

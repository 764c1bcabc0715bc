"""What S3 and its client libraries' failures mean to ferryman: the one translation.

`store_error` turns any botocore, aiohttp, timeout or OS failure met while
talking to S3 into a StoreError kind (stores/base.py). s3.py catches
`LIBRARY_ERRORS` around every request and every body read and raises what
this returns; nothing from botocore or aiohttp leaves the S3 store.

An error answer is judged by stores/s3codes.py, which the bucket listing
(stores/s3listing.py) shares.

A StoreError's detail can reach a client (the detail of a 502, through
stores/base.http_error, and the filler's replies to workers), so it names the
key and the kind of failure only: never the library's own text, which names
the endpoint's URL (botocore: 'Could not connect to the endpoint URL:
"http://10.0.0.5:9000/bucket/key"'; aiohttp: 'Cannot connect to host
10.0.0.5:9000'). That text is for the log: `library_text` gives it, and the
S3 store logs it when the store stops answering (stores/s3.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import botocore.exceptions as boto_errors  # type: ignore[import-untyped]
from aiobotocore.response import AioReadTimeoutError  # type: ignore[import-untyped]

from ferryman.stores.base import AccessDenied, StoreError, Truncated, Unavailable
from ferryman.stores.s3codes import answer_error

LIBRARY_ERRORS = (
    boto_errors.BotoCoreError,
    boto_errors.ClientError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
)
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
    # Below, only the exception's type goes into the detail: its text names the endpoint.
    if isinstance(exc, BODY_CUT):
        return Truncated(f"{key}: the body was cut ({type(exc).__name__})")
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return AccessDenied(f"{key}: no usable credentials ({type(exc).__name__})")
    return Unavailable(f"{key}: the store is unreachable ({type(exc).__name__})")


def library_text(exc: BaseException) -> str:
    """What the library said, for the log only (it may name the endpoint, never a secret).

    An error answer as `STATUS CODE: message`; anything else as `Type: text`.
    """
    if isinstance(exc, boto_errors.ClientError):
        response = exc.response
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "?"
        error = response.get("Error", {})
        code = str(error.get("Code") or status)
        said = f"{status} {code}" if code != str(status) else str(status)
        message = error.get("Message") or ""
        return f"{said}: {message}" if message else said
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _answer_error(exc: Any, key: str) -> StoreError:
    """An error answer from the store: by its S3 code first, then by its status."""
    response = exc.response
    meta = response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode") or 0)
    code = str(response.get("Error", {}).get("Code") or status)
    return answer_error(status, code, key, meta.get("HTTPHeaders", {}).get("retry-after", ""))

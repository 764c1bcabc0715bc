"""What an s3:// SOURCE and an --s3-endpoint may be, checked without the S3 client,
the region and credentials the AWS_* environment gives, and the timeouts both
of ferryman's S3 clients (s3.py, s3listing.py) use.

Kept apart from s3.py so the arbiter can refuse a bad URL at start (exit
status 2) without importing aiobotocore, which costs ~0.3 s and ~50 MiB in a
process that never talks to the store.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from ferryman.errors import ConfigError

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # silence on an open connection before it counts as lost
LIST_PAGE = 1000  # keys per listing page: S3's own maximum

# DNS-compatible bucket names (S3's rules for new buckets, as moto enforces them).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")


def parse_source(url: str) -> tuple[str, str]:
    """`s3://bucket[/prefix]` -> (bucket, prefix without slashes at either end)."""
    if not url.startswith("s3://"):
        raise ConfigError(f"not an S3 URL: {url!r} (expected s3://bucket[/prefix])")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not BUCKET_NAME.fullmatch(bucket) or ".." in bucket or IP_ADDRESS.fullmatch(bucket):
        raise ConfigError(
            f"bad bucket name {bucket!r}: 3-63 characters, lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit"
        )
    prefix = prefix.strip("/")
    if "//" in prefix:
        raise ConfigError(f"bad prefix {prefix!r}: empty path segment")
    return bucket, prefix


def check_endpoint(endpoint: str | None) -> str | None:
    """--s3-endpoint as given, if it is an http(s) URL with a host; else ConfigError."""
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"bad --s3-endpoint {endpoint!r}: expected http(s)://host[:port]")
    return endpoint


def region_from_env() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def credentials_from_env() -> tuple[str, str, str | None] | None:
    """(key id, secret, session token) from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY;
    None without both (botocore's usual chain then finds them: shared config files,
    container and instance roles)."""
    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        return key_id, secret, os.environ.get("AWS_SESSION_TOKEN")
    return None

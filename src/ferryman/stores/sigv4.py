"""AWS Signature Version 4 for a body-less S3 request, with the standard library only.

The bucket listing (stores/s3listing.py) signs its own GETs so that an audit
of a bucket needs neither botocore nor an event loop. `signed_headers`
returns the headers to send: Host, X-Amz-Date, X-Amz-Content-SHA256 (the
digest of the empty body), X-Amz-Security-Token with temporary
credentials, and Authorization.

S3 differs from the other services in one place: the path is encoded once,
not twice. A test holds this module to botocore's own S3 signer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
_UNRESERVED = "-_.~"  # with letters and digits: what SigV4 leaves unencoded


@dataclass(frozen=True)
class Credentials:
    key_id: str
    secret: str
    token: str | None = None


def encode(text: str, *, slash: bool = False) -> str:
    """RFC 3986 percent-encoding as SigV4 wants it (UTF-8; `/` kept only in a path)."""
    return quote(text, safe=_UNRESERVED + ("/" if slash else ""))


def canonical_query(params: Mapping[str, str]) -> str:
    """`params` as the query string both sent and signed: encoded, sorted by name."""
    pairs = sorted((encode(name), encode(value)) for name, value in params.items())
    return "&".join(f"{name}={value}" for name, value in pairs)


def signed_headers(
    host: str,
    path: str,
    query: str,
    credentials: Credentials,
    region: str,
    now: datetime,
) -> dict[str, str]:
    """The headers of `GET path?query` to `host`, signed. `path` is already encoded
    (as sent), `query` is canonical_query's, `now` is in UTC."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": stamp}
    if credentials.token:
        headers["x-amz-security-token"] = credentials.token
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "GET",
            path,
            query,
            "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in sorted(headers)),
            names,
            EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    )
    key = _signing_key(credentials.secret, day, region)
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"{ALGORITHM} Credential={credentials.key_id}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return headers


def _signing_key(secret: str, day: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (day, region, SERVICE, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key

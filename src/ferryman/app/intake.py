"""What every write checks before it stores anything, whatever the store.

The request path must name a file (not a directory) in UTF-8, without
control characters; If-Match, If-None-Match and If-Unmodified-Since must
hold against the current version; and the body must match every digest the
client sent (Content-MD5, Content-Digest, Repr-Digest, Digest), hashed as it
arrives; a digest ferryman cannot compute is refused unless another one is
checked. SHA-256 is always computed: it is what ferryman records and what a
store is asked to keep. Every write (app/writes.py), whatever its target,
follows these rules.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
from dataclasses import dataclass, field

from ferryman.app.paths import RequestPath, resolve
from ferryman.errors import HttpError
from ferryman.http.body import BodyReader
from ferryman.http.conditional import Outcome, Validators, evaluate_preconditions
from ferryman.http.digest import Claim, body_claims
from ferryman.http.parser import Request

BATCH = 1024 * 1024  # bytes of request body written (and hashed) per thread hop
FULL_SPACE = (errno.ENOSPC, errno.EDQUOT)


def require_length(request: Request) -> None:
    """411 unless the body's end is known: a Content-Length or chunked framing."""
    if "content-length" not in request.headers and request.body_kind != "chunked":
        raise HttpError(411, "length_required", "send Content-Length or a chunked body")


def storage_error(exc: OSError, what: str) -> HttpError:
    """A failure of ferryman's own disk while it could `what`: 507 when full, else 500."""
    if exc.errno in FULL_SPACE:
        return HttpError(507, "insufficient_storage", f"no space left to {what}; nothing stored")
    return HttpError(500, "internal_error", f"cannot {what} ({exc.strerror}); nothing stored")


@dataclass
class BodyChecks:
    """What the client asked us to verify, and the hashers that will tell.

    Every digest field is checked or refused (http/digest.py has the policy);
    SHA-256 is computed whatever the client sent.
    """

    claims: list[Claim] = field(default_factory=list)
    hashers: dict[str, hashlib._Hash] = field(default_factory=dict)

    @classmethod
    def from_request(cls, request: Request) -> BodyChecks:
        claims = body_claims(request.headers)  # a full PUT: every field describes the body
        hashers = {"sha-256": hashlib.sha256()}
        for claim in claims:
            if claim.algorithm not in hashers:
                hashers[claim.algorithm] = cls._hasher(claim.algorithm)
        return cls(claims, hashers)

    def update(self, data: bytes | bytearray) -> None:
        for hasher in self.hashers.values():
            hasher.update(data)

    def verify(self) -> None:
        for claim in self.claims:
            if self.hashers[claim.algorithm].digest() != claim.digest:
                detail = f"{claim.field} {claim.algorithm} does not match the body"
                raise HttpError(400, "digest_mismatch", detail)

    @property
    def sha256(self) -> bytes:
        return self.hashers["sha-256"].digest()

    @staticmethod
    def _hasher(algorithm: str) -> hashlib._Hash:
        if algorithm == "md5":
            return hashlib.md5(usedforsecurity=False)  # an integrity check, not a security one
        return hashlib.new(algorithm.replace("-", ""))  # "sha-512" -> "sha512"


# Control characters (C0, DEL and C1): a name that holds one breaks logs, listings,
# shells and terminals. Refused in names to write; files that already bear one are
# still served and listed.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def write_path(request: Request) -> RequestPath:
    """The path a PUT or DELETE names: a file, in UTF-8, no control characters; else 400
    or 405. (Length limits and the rest are resolve()'s, for reads and writes alike.)"""
    path = resolve(request.path)
    try:
        path.relative.encode("utf-8")  # the catalog, stores and most clients need UTF-8 names
    except UnicodeEncodeError:
        raise HttpError(400, "bad_path", "file names must be UTF-8") from None
    if _CONTROL.search(path.relative) is not None:
        raise HttpError(400, "bad_path", "file names cannot contain control characters")
    if not path.segments or path.trailing_slash:
        raise HttpError(405, "method_not_allowed", "a directory cannot be written or deleted",
                        (("Allow", "GET, HEAD, OPTIONS"),))  # fmt: skip
    return path


def check_write_preconditions(request: Request, current: Validators | None) -> bool:
    """412 unless If-Match / If-None-Match / If-Unmodified-Since allow the write.

    `current` is the version there now (None: nothing). True for a create-only
    write (`If-None-Match: *`).
    """
    headers = request.headers
    outcome = evaluate_preconditions(
        request.method,
        if_match=headers.get("if-match"),
        if_none_match=headers.get("if-none-match"),
        if_modified_since=None,
        if_unmodified_since=headers.get("if-unmodified-since"),
        validators=current or Validators(etag=None, last_modified=None),
        exists=current is not None,
    )
    if outcome is not Outcome.PROCEED:
        raise HttpError(
            412, "precondition_failed", "the file is not in the state the client expects"
        )
    return headers.get("if-none-match", "").strip() == "*"


async def receive_body(body: BodyReader | None, fd: int, checks: BodyChecks) -> int:
    """Append the whole request body to `fd`, hashing it; disk work in 1 MiB batches in threads."""
    size = 0
    batch = bytearray()
    if body is not None:
        async for chunk in body:
            batch += chunk
            if len(batch) >= BATCH:
                size += await asyncio.to_thread(write_and_hash, fd, batch, checks)
                batch = bytearray()
    if batch:
        size += await asyncio.to_thread(write_and_hash, fd, batch, checks)
    return size


def write_and_hash(fd: int, data: bytes | bytearray, checks: BodyChecks) -> int:
    """Append `data` to `fd` and feed it to the hashers (blocking: run it in a thread)."""
    checks.update(data)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)

"""What every write checks before it stores anything, whatever the store.

The request path must name a file (not a directory) in UTF-8; If-Match,
If-None-Match and If-Unmodified-Since must hold against the current
version; and the body must match every digest the client sent
(Content-MD5, Content-Digest, Repr-Digest), hashed as it arrives. SHA-256 is
always computed: it is what ferryman records and what a store is asked to
keep. Every write (app/writes.py), whatever its target, follows these rules.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from dataclasses import dataclass, field

from ferryman.app.paths import RequestPath, resolve
from ferryman.errors import HttpError
from ferryman.http.body import BodyReader
from ferryman.http.conditional import Outcome, Validators, evaluate_preconditions
from ferryman.http.digest import parse_content_md5, parse_digest_field
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
    """What the client asked us to verify, and the hashers that will tell."""

    md5: bytes | None = None
    digests: dict[str, bytes] = field(default_factory=dict)
    hashers: dict[str, hashlib._Hash] = field(default_factory=dict)

    @classmethod
    def from_request(cls, request: Request) -> BodyChecks:
        checks = cls(hashers={"sha-256": hashlib.sha256()})
        headers = request.headers
        if "content-md5" in headers:
            checks.md5 = parse_content_md5(headers["content-md5"])
            checks.hashers["md5"] = hashlib.md5(usedforsecurity=False)
        for name in ("content-digest", "repr-digest"):  # a full PUT: both describe the body
            if name in headers:
                for algorithm, raw in parse_digest_field(headers[name], name).items():
                    if checks.digests.get(algorithm, raw) != raw:
                        raise HttpError(400, "digest_mismatch", f"{name} contradicts itself")
                    checks.digests[algorithm] = raw
        if "sha-512" in checks.digests:
            checks.hashers["sha-512"] = hashlib.sha512()
        return checks

    def update(self, data: bytes | bytearray) -> None:
        for hasher in self.hashers.values():
            hasher.update(data)

    def verify(self) -> None:
        if self.md5 is not None and self.hashers["md5"].digest() != self.md5:
            raise HttpError(400, "digest_mismatch", "Content-MD5 does not match the body")
        for algorithm, expected in self.digests.items():
            if self.hashers[algorithm].digest() != expected:
                raise HttpError(400, "digest_mismatch", f"{algorithm} does not match the body")

    @property
    def sha256(self) -> bytes:
        return self.hashers["sha-256"].digest()


def write_path(request: Request) -> RequestPath:
    """The path a PUT or DELETE names: a file, in UTF-8; else 400 or 405."""
    path = resolve(request.path)
    try:
        path.relative.encode("utf-8")  # the catalog, stores and most clients need UTF-8 names
    except UnicodeEncodeError:
        raise HttpError(400, "bad_path", "file names must be UTF-8") from None
    if not path.segments or path.trailing_slash:
        raise HttpError(405, "method_not_allowed", "a directory cannot be written or deleted",
                        (("Allow", "GET, HEAD"),))  # fmt: skip
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

"""What a finished download is checked against, and what the file hashes to.

Three sources, each checked when present: `Repr-Digest` (RFC 9530: the
digest of the whole representation, the same in every response about one
version, whatever range it carries), `Content-Digest` of a whole 200 (its
content is the representation), and `--sha256 HEX` from the user. The
fields are parsed by ferryman's own parser (http/digest.py); algorithms it
cannot compute are passed over, and a field that cannot be read is
reported and passed over too: a server that sends nothing readable gives
an unverified download, said so, not a failed one.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from ferryman.errors import ConfigError, HttpError
from ferryman.http.digest import parse_digest_field

HASHES: dict[str, Callable[[], hashlib._Hash]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}
READ_CHUNK = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Expected:
    source: str  # "Repr-Digest", "Content-Digest" or "--sha256"
    algorithm: str  # a key of HASHES
    digest: bytes


class UnreadableDigest(ValueError):
    """The server's digest field could not be parsed; the message says how."""


def server_digests(field: str, value: str) -> list[Expected]:
    """The digests a Repr-Digest or Content-Digest value gives that can be checked here."""
    try:
        parsed = parse_digest_field(value, field)
    except HttpError as exc:
        raise UnreadableDigest(exc.detail) from None
    return [Expected(field, alg, digest) for alg, digest in parsed.items() if alg in HASHES]


def sha256_option(text: str) -> Expected:
    """--sha256 HEX: 64 hex digits (as sha256sum prints them)."""
    if not _HEX64.fullmatch(text.strip()):
        raise ConfigError(f"--sha256 {text!r}: 64 hexadecimal digits are needed")
    return Expected("--sha256", "sha-256", bytes.fromhex(text.strip()))


def file_digests(fd: int, algorithms: set[str], advance: Callable[[int], None]) -> dict[str, bytes]:
    """Each algorithm's digest of the file's bytes, read back from the start."""
    hashers = {alg: HASHES[alg]() for alg in algorithms}
    offset = 0
    while True:
        chunk = os.pread(fd, READ_CHUNK, offset)
        if not chunk:
            break
        for hasher in hashers.values():
            hasher.update(chunk)
        offset += len(chunk)
        advance(len(chunk))
    return {alg: hasher.digest() for alg, hasher in hashers.items()}


def mismatches(expected: list[Expected], actual: dict[str, bytes]) -> list[Expected]:
    """The expected digests the file does not have."""
    return [e for e in expected if actual[e.algorithm] != e.digest]

"""What an audit works with: the expected set, what a store holds, findings, a run's result.

Pure values, no I/O. The expected set comes from the catalog or an
inventory file (inventory.py); what a store holds comes from listing it
(and, with --deep, from reading it); compare.py turns the two into findings;
report.py shows them. An audit makes several values per key and store, so
the per-key ones are plain slotted dataclasses, not frozen ones (a frozen
dataclass takes three times as long to make); nothing changes them once made.

A key is a store-relative path: "/"-separated, no leading slash, no empty,
"." or ".." segment (as the catalog keeps them). A store is named exactly as
the user gave it on the command line (a directory or an s3:// URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The finding kinds, exactly these strings (reports and scripts key on them).
MISSING = "missing"  # expected, not stored
ZERO_BYTE = "zero_byte"  # expected size > 0, stored size 0
SIZE_MISMATCH = "size_mismatch"
DIGEST_MISMATCH = "digest_mismatch"
UNEXPECTED = "unexpected"  # stored, not expected (or expected deleted)
UNREADABLE = "unreadable"  # listed, but could not be read (or stat'ed) to check it
KINDS = (MISSING, ZERO_BYTE, SIZE_MISMATCH, DIGEST_MISMATCH, UNEXPECTED, UNREADABLE)
# Kinds that another store's good copy can mend.
REPAIRABLE = (MISSING, ZERO_BYTE, SIZE_MISMATCH, DIGEST_MISMATCH)


@dataclass(slots=True)
class Expected:
    """One key that should be stored: its size and digests where known (hex, lower-case)."""

    key: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


@dataclass(slots=True)
class Stored:
    """One key as a store lists it.

    Digests are those known without reading the bytes: a checksum the store
    keeps, ferryman's own metadata, or (local files) a verification whose
    file identity still matches. `ident` is the store's own identifier of
    the version (an ETag; for a local file "inode:mtime_ns:ctime_ns").
    """

    key: str
    size: int
    sha256: str | None = None
    md5: str | None = None
    ident: str = ""


@dataclass(slots=True)
class Finding:
    key: str
    store: str
    kind: str
    expected_size: int | None = None
    actual_size: int | None = None
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    detail: str = ""  # why, for `unreadable` (an error message); not in the JSON schema


@dataclass(slots=True)
class StoreTally:
    """How one store fared: "ok" and each kind, counted; and whether it was read whole."""

    store: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("ok", *KINDS), 0))
    complete: bool = True
    error: str | None = None  # why the store could not be read (then complete is False)

    def add(self, kind: str) -> None:
        self.counts[kind] += 1


@dataclass(slots=True)
class AuditResult:
    """One run, as the reports show it (report.py renders JSON, CSV, HTML and text)."""

    run_id: str
    started: str  # ISO 8601, UTC
    finished: str | None
    deep: bool
    stores: list[str]
    expected: int
    tallies: dict[str, StoreTally]
    findings: list[Finding]
    resumed: bool = False  # continued a run that was interrupted

    @property
    def complete(self) -> bool:
        return self.finished is not None and all(t.complete for t in self.tallies.values())

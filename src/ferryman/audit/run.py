"""One audit: every store compared with what should be there, recorded, resumable.

For each store, at once (a thread each): the expected set (the catalog's live
entries, or an inventory) and the store's listing are walked together
(compare.join). A copy whose identifier still matches its last verification
in the catalog is known by that verification's digest; with --deep (or
--stale-after, for copies not hashed within that age) the copy is read and
hashed. Keys are checked in code-point order; in batches, one transaction
records how far the run got in the store (its last key, and how many copies
were fine), the findings, and what the catalog learned of the copies (a
copy's verification is noted when it was read, or when the listing shows it
other than the catalog knows it). A run killed with SIGKILL and started
again with the same options skips every key up to its last recorded one,
and reads nothing twice.

Each store is audited in a thread of its own, so that a bucket's listing
waits on the network while a directory is walked, and two disks are read
at once; the catalog, the progress line and the rate limit are shared
under locks. Local copies are read with plain system calls, a bucket
through audit/bucket.py's Portal. --max-rate caps the bytes read per
second, across stores. If one store's audit fails, or the run is
interrupted, the others stop at their next key, with what they checked
recorded.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ferryman.audit.compare import Computed, Pair, join, judge, judge_read, needs_md5, should_read
from ferryman.audit.model import (
    MISSING,
    UNREADABLE,
    AuditResult,
    Expected,
    Finding,
    Stored,
    StoreTally,
)
from ferryman.audit.stores import AuditStore, StoreUnavailable, Unreadable
from ferryman.catalog.api import Catalog
from ferryman.catalog.copies import (
    KNOWN_IDENT,
    KNOWN_RESULT,
    KNOWN_SHA256,
    KNOWN_SIZE,
    KNOWN_STATE,
    KNOWN_VERIFIED_NS,
    Copies,
    CopyEvent,
    KnownCopy,
)
from ferryman.catalog.runs import Check, Run, Runs, StoreProgress
from ferryman.catalog.schema import check_path

log = logging.getLogger("ferryman.audit")

BATCH = 10_000  # keys checked per recorded batch ...
BATCH_SECONDS = 2.0  # ... or, when copies are read, at least this often (what a SIGKILL
# can make a run read again; a listing is cheap to repeat, and is not timed per key)
PROGRESS_EVERY = 256  # keys between progress updates (each update is a clock read)


class Progress(Protocol):
    """What the run reports as it goes (audit/progress.py draws it)."""

    def set_totals(self, objects: int | None = None, nbytes: int | None = None) -> None: ...
    def advance(self, objects: int = 0, nbytes: int = 0) -> None: ...
    def close(self) -> None: ...


class _Silent:
    def set_totals(self, objects: int | None = None, nbytes: int | None = None) -> None:
        pass

    def advance(self, objects: int = 0, nbytes: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class ExpectedSet:
    """What should be stored: live keys in order, keys known deleted, and how many."""

    live: Callable[[], Iterator[Expected]]
    deleted: Callable[[], Iterator[str]]
    count: int
    source: str  # "catalog" or the inventory file


def from_catalog(catalog: Catalog) -> ExpectedSet:
    def live() -> Iterator[Expected]:
        for entry in catalog.entries():
            yield Expected(entry.path, entry.size, entry.sha256)

    def deleted() -> Iterator[str]:
        for entry in catalog.entries(include_deleted=True):
            if entry.deleted:
                yield entry.path

    return ExpectedSet(live, deleted, catalog.count(), "catalog")


def from_inventory(entries: Sequence[Expected], name: str) -> ExpectedSet:
    return ExpectedSet(lambda: iter(entries), lambda: iter(()), len(entries), name)


@dataclass
class AuditOptions:
    deep: bool = False
    stale_after: float | None = None  # seconds: hash copies not hashed for this long
    max_rate: int | None = None  # bytes read per second, at most

    @property
    def reads(self) -> bool:
        return self.deep or self.stale_after is not None


class RateLimit:
    """At most `rate` bytes a second, on average over the run (None: no limit)."""

    def __init__(self, rate: int | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self._start = clock()
        self._spent = 0
        self._lock = threading.Lock()  # the stores are read at once, in threads

    def spend(self, count: int) -> None:
        if not self.rate:
            return
        with self._lock:
            self._spent += count
            ahead = self._spent / self.rate - (self.clock() - self._start)
        if ahead > 0:
            self.sleep(ahead)


class _Batch:
    """What a store's check has found since it last recorded: the findings, the copies'
    verifications that tell the catalog something new, and how far it got."""

    def __init__(self, progress: StoreProgress) -> None:
        self.through = progress.through
        self.ok = progress.ok
        self.checked = 0  # keys since the last record
        self.findings: list[Check] = []
        self.notes: list[CopyEvent] = []
        self.since = time.monotonic()

    def due(self, reads: bool) -> bool:
        if self.checked >= BATCH:
            return True
        return reads and time.monotonic() - self.since > BATCH_SECONDS

    @property
    def progress(self) -> StoreProgress:
        return StoreProgress(self.through, self.ok)


class AuditStopped(Exception):
    """A store's audit stopped because the run is stopping (another store failed, or the
    user interrupted it); what it checked is recorded."""


class Audit:
    """One audit run over `stores` (the first is SOURCE), recorded in `catalog`."""

    def __init__(
        self,
        catalog: Catalog,
        stores: Sequence[AuditStore],
        expected: ExpectedSet,
        options: AuditOptions,
        progress: Progress | None = None,
        *,
        kind: str = "audit",
    ) -> None:
        self.kind = kind  # "repair": the audit a repair plans from (a run of its own)
        self.catalog = catalog
        self.stores = list(stores)
        self.expected = expected
        self.options = options
        self.progress = progress or _Silent()
        self.runs = Runs(catalog)
        self.copies = Copies(catalog)
        self.limit = RateLimit(options.max_rate)
        self._progress_lock = threading.Lock()
        self._stopping = threading.Event()  # set when the run stops early: stores stop too

    def run_options(self) -> dict[str, object]:
        """What names this run: the same options continue an unfinished run."""
        return {
            "stores": [s.id for s in self.stores],
            "expected": self.expected.source,
            "deep": self.options.deep,
            "stale_after": self.options.stale_after,
        }

    def run(self) -> AuditResult:
        run = self.runs.start(self.kind, self.run_options())
        if run.resumed:
            log.info("continuing %s %s, started %s", self.kind, run.id, _iso(run.started_ns))
        self.progress.set_totals(objects=self.expected.count * len(self.stores))
        tallies = {s.id: StoreTally(s.name) for s in self.stores}
        # Each store in a thread of its own: a bucket's listing waits on the network
        # while a directory is walked, and two disks are read at once.
        with ThreadPoolExecutor(len(self.stores), thread_name_prefix="ferryman-audit") as pool:
            started = [(s, pool.submit(self._audit_store, run, s)) for s in self.stores]
            try:
                for store, future in started:
                    try:
                        future.result()
                    except StoreUnavailable as exc:
                        tallies[store.id].complete = False
                        tallies[store.id].error = str(exc)
                        log.error("%s", exc)
            except BaseException:
                self._stopping.set()  # the others stop at their next key, recorded
                raise
        complete = all(t.complete for t in tallies.values())
        finished = self.runs.finish(run) if complete else None
        self.progress.close()
        return self._result(run, tallies, finished)

    # -- one store -------------------------------------------------------------------

    def _audit_store(self, run: Run, store: AuditStore) -> None:
        batch = _Batch(self.runs.progress(run, store.id))
        resume_after = batch.through
        known = self.copies.known(store.id)
        listed = store.listing(resume_after)  # a resumed run: after what it checked
        unreported = 0  # keys done since the progress bar last heard
        try:
            listing = _trusted(listed, known)
            for pair in join(self.expected.live(), listing, deleted=self.expected.deleted()):
                unreported += 1
                if unreported == PROGRESS_EVERY:
                    self._advance(objects=unreported)
                    unreported = 0
                    if self._stopping.is_set():
                        raise AuditStopped(store.name)
                if resume_after is not None and pair.key <= resume_after:
                    continue  # checked before the run was stopped
                finding, note = self._check(store, pair, known.get(pair.key))
                if finding is None:
                    batch.ok += 1
                else:
                    batch.findings.append(finding)
                if note is not None:
                    batch.notes.append(note)
                batch.through = pair.key
                batch.checked += 1
                if batch.due(self.options.reads):
                    batch = self._flush(run, store, batch)
        finally:
            self._flush(run, store, batch)
            self._advance(objects=unreported)
            listed.close()  # a listing stopped early lets go of its directories or requests

    def _check(
        self, store: AuditStore, pair: Pair, known: KnownCopy | None
    ) -> tuple[Check | None, CopyEvent | None]:
        """The key's finding in this store (None: fine), and what the catalog should note
        of its copy (None: nothing it does not know)."""
        finding = judge(pair, store.name)
        computed = None
        if self.options.reads and should_read(pair, finding) and self._due(known, pair.stored):
            assert pair.expected is not None and pair.stored is not None
            try:
                computed = self._hash(store, pair.key, needs_md5(pair.expected))
            except Unreadable as exc:
                finding = _unreadable(pair, store.name, str(exc))
            else:
                finding = judge_read(pair.expected, computed, store.name)
        result = finding.kind if finding is not None else "ok"
        check = _check(store.id, pair, finding) if finding is not None else None
        if computed is None and _known_as(known, pair.stored, result):
            return check, None
        return check, self._note(store, pair, result, computed)

    def _advance(self, objects: int = 0, nbytes: int = 0) -> None:
        with self._progress_lock:
            self.progress.advance(objects=objects, nbytes=nbytes)

    def _due(self, known: KnownCopy | None, stored: Stored | None) -> bool:
        """Whether a copy must be hashed now: --deep always; --stale-after when its last
        hashing is older than that, or it changed since, or it was never hashed."""
        if self.options.deep or self.options.stale_after is None:
            return self.options.deep
        if known is None or stored is None:
            return True
        verified_ns = known[KNOWN_VERIFIED_NS]
        if verified_ns is None or known[KNOWN_IDENT] != stored.ident:
            return True
        return time.time_ns() - verified_ns > self.options.stale_after * 1e9

    def _hash(self, store: AuditStore, key: str, md5_too: bool) -> Computed:
        sha256 = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False) if md5_too else None
        size = 0
        for chunk in store.read(key):
            sha256.update(chunk)
            if md5 is not None:
                md5.update(chunk)
            size += len(chunk)
            self._advance(nbytes=len(chunk))
            self.limit.spend(len(chunk))
            if self._stopping.is_set():
                raise AuditStopped(store.name)
        return Computed(size, sha256.hexdigest(), md5.hexdigest() if md5 is not None else None)

    def _note(self, store: AuditStore, pair: Pair, result: str,
              computed: Computed | None) -> CopyEvent | None:  # fmt: skip
        """The copy's verification for the catalog (None for a name it cannot hold)."""
        try:
            check_path(pair.key)
        except (ValueError, TypeError):
            return None
        stored = pair.stored
        if stored is None:
            return CopyEvent(pair.key, store.id, "verified", result=MISSING, detail="listing")
        if computed is not None:
            return CopyEvent(pair.key, store.id, "verified", computed.size, computed.sha256,
                             stored.ident, result, "read")  # fmt: skip
        return CopyEvent(pair.key, store.id, "verified", stored.size, stored.sha256,
                         stored.ident, result, "listing")  # fmt: skip

    def _flush(self, run: Run, store: AuditStore, batch: _Batch) -> _Batch:
        if batch.checked and batch.through is not None:
            self.runs.record(run, store.id, batch.progress, batch.findings, batch.notes)
            return _Batch(batch.progress)
        return batch

    # -- the result --------------------------------------------------------------------

    def _result(self, run: Run, tallies: dict[str, StoreTally],
                finished: int | None) -> AuditResult:  # fmt: skip
        names = {s.id: s.name for s in self.stores}
        for store_id, tally in tallies.items():
            tally.counts["ok"] = self.runs.progress(run, store_id).ok
        findings = []
        for check in self.runs.findings(run):
            if check.store not in tallies:
                continue
            tallies[check.store].add(check.result)
            findings.append(Finding(check.path, names[check.store], check.result,
                                    check.expected_size, check.actual_size,
                                    check.expected_sha256, check.actual_sha256,
                                    check.detail or ""))  # fmt: skip
        return AuditResult(
            run_id=run.id,
            started=_iso(run.started_ns),
            finished=_iso(finished) if finished is not None else None,
            deep=self.options.reads,
            stores=[s.name for s in self.stores],
            expected=self.expected.count,
            tallies={names[k]: v for k, v in tallies.items()},
            findings=findings,
            resumed=run.resumed,
        )


def _trusted(listed: Iterable[Stored], known: dict[str, KnownCopy]) -> Iterator[Stored]:
    """Each listed copy, given the digest of its last verification while it is that version
    (a listing that knows no digest of its own)."""
    for item in listed:
        row = known.get(item.key)
        if (
            row is not None and item.sha256 is None and row[KNOWN_RESULT] == "ok"
            and row[KNOWN_SHA256] is not None and row[KNOWN_IDENT] == item.ident
        ):  # fmt: skip
            item.sha256 = row[KNOWN_SHA256]
        yield item


def _unreadable(pair: Pair, store: str, why: str) -> Finding:
    expected = pair.expected
    return Finding(
        pair.key, store, UNREADABLE,
        expected_size=expected.size if expected else None,
        actual_size=pair.stored.size if pair.stored else None,
        expected_sha256=expected.sha256 if expected else None,
        detail=why,
    )  # fmt: skip


def _check(store_id: str, pair: Pair, finding: Finding) -> Check:
    f = finding
    return Check(store_id, pair.key, f.kind, f.expected_size, f.expected_sha256,
                 f.actual_size, f.actual_sha256, f.detail or None)  # fmt: skip


def _known_as(known: KnownCopy | None, stored: Stored | None, result: str) -> bool:
    """Whether the catalog already holds what a listing saw of a copy: the same version
    (identity and size) with the same result, or the same absence. Such a sighting is
    counted in the run and changes nothing in the catalog, so a repeated audit of an
    unchanged store writes no more than its findings."""
    if known is None or known[KNOWN_RESULT] != result:
        return False
    if stored is None:
        return known[KNOWN_STATE] == "deleted"
    return (
        known[KNOWN_STATE] == "present" and known[KNOWN_IDENT] == stored.ident
        and known[KNOWN_SIZE] == stored.size
    )  # fmt: skip


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")

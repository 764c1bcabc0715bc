"""`ferryman repair`: mend each bad copy from a good one, verifying both.

    ferryman repair SOURCE [--replica TARGET ...] [--inventory FILE] [--deep] [--apply]
                    [--report FILE]

The plan comes from a fresh audit (a run of its own, resumable as an audit
is; --deep reads every copy, else digest mismatches hidden behind a changed
identifier go unseen). Each `missing`, `zero_byte`, `size_mismatch` or
`digest_mismatch` copy is planned from another store whose copy the audit
found fine. Without --apply the plan is printed and nothing changes. With it,
for each planned copy:

1. the source copy is read whole into a spool file and hashed; it must match
   what is expected now (a copy that went bad since the audit is not used;
   the next store that verifies is tried);
2. under the key's write lock (the server's too: a running server's writes
   and a repair never interleave), the target copy is looked at again, and a
   copy that is good now is never written over;
3. the copy is written as any write is (local: temporary, fsync, read back,
   rename, fsync the directory; a bucket: upload with its checksum, HEAD,
   read back) and its repair recorded in the catalog.

A key with no good copy anywhere is unrepairable; `unexpected` copies are
reported, never deleted. Killed midway, a repair is simply run again: its
audit continues where it stopped, or, if that had finished, a new one finds
what is still bad, and nothing good is written twice.

Exit status: 0 nothing left to repair; 1 something could not be repaired
(or, without --apply, something is left to repair); 2 a usage error; 3 a
store could not be read or written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ferryman.app.paths import resolve
from ferryman.app.places import Place
from ferryman.app.spool import Spool
from ferryman.app.writelock import LockBusy, WriteLocks
from ferryman.app.writetarget import copy_ident
from ferryman.audit.bucket import Portal
from ferryman.audit.model import REPAIRABLE, AuditResult, Expected, Finding
from ferryman.audit.stores import AuditStore, StoreUnavailable, Unreadable
from ferryman.catalog.api import Catalog, CatalogError
from ferryman.catalog.copies import Copies, CopyEvent
from ferryman.errors import HttpError

log = logging.getLogger("ferryman.repair")

PLANNED, REPAIRED, ALREADY_GOOD, UNREPAIRABLE, FAILED = (
    "planned", "repaired", "already good", "unrepairable", "failed",
)  # fmt: skip


@dataclass
class Repair:
    key: str
    store: str  # the store whose copy is bad (as given)
    kind: str  # what the audit found
    source: str | None  # the store to copy from; None: no good copy anywhere
    outcome: str = PLANNED
    detail: str = ""


def good_copies(result: AuditResult) -> dict[str, list[str]]:
    """For each key with a finding: the stores (in the order given) the audit found fine."""
    bad: dict[str, set[str]] = defaultdict(set)
    for finding in result.findings:
        bad[finding.key].add(finding.store)
    return {key: [s for s in result.stores if s not in wrong] for key, wrong in bad.items()}


def plan(result: AuditResult, expected: dict[str, Expected]) -> list[Repair]:
    """Each repairable finding, planned from the first store the audit found fine."""
    by_key: dict[str, list[Finding]] = defaultdict(list)
    for finding in result.findings:
        by_key[finding.key].append(finding)
    fine = good_copies(result)
    repairs = []
    for key, findings in sorted(by_key.items()):
        good = fine[key]
        for finding in findings:
            if finding.kind not in REPAIRABLE or key not in expected:
                continue
            source = good[0] if good else None
            outcome = PLANNED if source is not None else UNREPAIRABLE
            detail = "" if source else "no store holds a copy that verifies"
            repairs.append(Repair(key, finding.store, finding.kind, source, outcome, detail))
    return repairs


class Repairer:
    """Applies a plan: one copy at a time, each read, checked, written and recorded."""

    def __init__(
        self,
        catalog: Catalog,
        stores: Sequence[AuditStore],
        places: Sequence[Place],
        spool: Spool,
        locks: WriteLocks,
        portal: Portal,
    ) -> None:
        self.catalog = catalog
        self.stores = {s.name: s for s in stores}
        self.places = {p.name: p for p in places}
        self.spool = spool
        self.locks = locks
        self.portal = portal

    def apply(self, repairs: Sequence[Repair], expected: dict[str, Expected],
              good: dict[str, list[str]]) -> None:  # fmt: skip
        """Carry out each planned repair, trying every store that held a good copy."""
        for repair in repairs:
            if repair.outcome != PLANNED:
                continue
            for source in good[repair.key]:
                if source == repair.store:
                    continue
                if self._from(repair, source, expected[repair.key]):
                    break
            else:
                if repair.outcome == PLANNED:
                    repair.outcome = UNREPAIRABLE
                    repair.detail = "no other copy verifies now"

    def _from(self, repair: Repair, source: str, expected: Expected) -> bool:
        """Repair from `source`; False if its copy no longer verifies (try another)."""
        try:
            fd, name, size, sha256 = self._read_verified(self.stores[source], expected)
        except (Unreadable, _NotExpected) as exc:
            log.warning("repair of %s in %s: the copy in %s cannot be used: %s",
                        repair.key, repair.store, source, exc)  # fmt: skip
            return False
        try:
            repair.source = source
            outcome, detail = self.portal.call(self._write(repair, fd, size, sha256, expected))
            repair.outcome, repair.detail = outcome, detail
        finally:
            self.spool.discard(fd, name)
        return True

    def _read_verified(self, store: AuditStore, expected: Expected) -> tuple[int, str, int, bytes]:
        """The copy in `store` spooled and hashed: (fd, name, size, sha256); _NotExpected
        when it is not what should be there."""
        fd, name = self.spool.create()
        sha256 = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            for chunk in store.read(expected.key):
                os.pwrite(fd, chunk, size)
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
            if not _matches(expected, size, sha256.hexdigest(), md5.hexdigest()):
                raise _NotExpected("its bytes differ from what should be stored")
        except BaseException:
            self.spool.discard(fd, name)
            raise
        return fd, name, size, sha256.digest()

    async def _write(self, repair: Repair, fd: int, size: int, sha256: bytes,
                     expected: Expected) -> tuple[str, str]:  # fmt: skip
        place = self.places[repair.store]
        path = resolve(b"/" + repair.key.encode("utf-8"))
        try:
            async with self.locks.hold(repair.key):
                if await _holds_good(self.stores[repair.store], repair.key, expected):
                    return ALREADY_GOOD, "the copy verifies now: left as it is"
                made = await place.target.replicate(path, fd, size, sha256)
        except LockBusy:
            return FAILED, "the key is being written: run the repair again"
        except CatalogError as exc:  # its lock across servers could not be taken
            return FAILED, f"{exc}: run the repair again"
        except HttpError as exc:
            return FAILED, exc.detail or exc.error
        event = CopyEvent(repair.key, place.id, "repaired", made.size, sha256.hex(),
                          copy_ident(made), detail=f"from {repair.source}")  # fmt: skip
        Copies(self.catalog).note([event])
        return REPAIRED, f"copied from {repair.source}, verified"


class _NotExpected(Exception):
    """A copy that is not what should be stored."""


async def _holds_good(store: AuditStore, key: str, expected: Expected) -> bool:
    """Whether `store` holds a copy of `key` that verifies now (read in a thread)."""
    import asyncio

    def check() -> bool:
        sha256 = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            for chunk in store.read(key):
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        except (Unreadable, StoreUnavailable):
            return False
        return _matches(expected, size, sha256.hexdigest(), md5.hexdigest())

    return await asyncio.to_thread(check)


def _matches(expected: Expected, size: int, sha256: str, md5: str) -> bool:
    if expected.size is not None and size != expected.size:
        return False
    if expected.sha256 is not None:
        return sha256 == expected.sha256
    if expected.md5 is not None:
        return md5 == expected.md5
    return False  # nothing to verify it by: never used as a source nor called good


def render_plan(repairs: Sequence[Repair], applied: bool) -> str:
    if not repairs:
        return "nothing to repair"
    lines = [f"{'applied' if applied else 'planned (run with --apply to carry it out)'}:"]
    for r in repairs:
        source = f" from {r.source}" if r.source else ""
        detail = f" ({r.detail})" if r.detail else ""
        lines.append(f"  {r.outcome:<12} {r.key} in {r.store}: {r.kind}{source}{detail}")
    return "\n".join(lines)


def render_json(result: AuditResult, repairs: Sequence[Repair], applied: bool) -> str:
    doc = {"run": {"id": result.run_id, "started": result.started, "applied": applied,
                   "complete": result.complete},
           "repairs": [asdict(r) for r in repairs]}  # fmt: skip
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"

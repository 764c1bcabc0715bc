"""`ferryman catalog import|scan|show|migrate`: the catalog by hand.

    ferryman catalog import SOURCE --inventory FILE [--state-dir DIR]
    ferryman catalog scan SOURCE [--state-dir DIR]
    ferryman catalog show KEY [--source SOURCE] [--state-dir DIR] [--json]
    ferryman catalog migrate [--source SOURCE] [--state-dir DIR]
    ferryman catalog runs [--source SOURCE] [--state-dir DIR] [--limit N] [--json]

`import` adopts an inventory as what should be stored: each entry is
recorded, and SOURCE's copy is read and hashed on the way. A copy that
matches is recorded with its identity (so a server serves its Repr-Digest
and an audit trusts it until it changes); one that does not, or is missing,
is recorded from the inventory alone (never served as a digest) and listed,
and the exit status is 1. An md5-only entry needs a good copy in SOURCE to
learn its SHA-256 from. `scan` records what SOURCE holds now, every file
hashed. `show` prints a key's entry, its copy in each store and their
history (`--json` for scripts). `migrate` brings the catalog's schema up to
date (opening it does that too; this says so and changes nothing else).
`runs` lists the latest audit and repair runs, finished or not, with how
far each got in each store and how many findings it recorded there: with a
PostgreSQL catalog, any server shows the progress of a run started on
another.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any, NamedTuple

from ferryman.audit.command import config_of, open_catalog_for, opened_stores
from ferryman.audit.inventory import InventoryError, read_inventory
from ferryman.audit.localtree import local_ident
from ferryman.audit.model import Expected
from ferryman.audit.stores import AuditStore, Unreadable
from ferryman.catalog.api import Catalog, CatalogError
from ferryman.catalog.copies import Copies, CopyEvent
from ferryman.catalog.db import CLAIM_ETAG
from ferryman.catalog.runs import Runs, RunSummary
from ferryman.config import Config
from ferryman.errors import ConfigError

EMPTY_ETAG = CLAIM_ETAG  # an entry with no file behind it: matches no request, serves no digest


class Found(NamedTuple):
    """A copy read whole: its size and digests, and (a local copy) its identity, kept only
    when it was the same before and after the read: the digest is of that version."""

    size: int
    sha256: str
    md5: str
    st: os.stat_result | None
    changed: bool = False
    etag: str | None = None  # an object's: the version every byte was read from (If-Match)


def catalog_command(args: dict[str, Any]) -> int:
    action = args["action"]
    config = config_of(args)
    if action == "import":
        try:
            entries = read_inventory(args["inventory"])
        except InventoryError as exc:
            raise ConfigError(str(exc)) from None
        return _with_catalog(config, True, lambda c: _import(c, config, entries))
    if action == "scan":
        return _with_catalog(config, True, lambda c: _scan(c, config))
    if action == "show":
        return _with_catalog(config, False, lambda c: _show(c, args["key"], bool(args["json"])))
    if action == "runs":
        if args["limit"] < 1:
            raise ConfigError(f"--limit must be at least 1, not {args['limit']}")
        return _with_catalog(config, False, lambda c: _runs(c, args["limit"], bool(args["json"])))
    return _with_catalog(config, False, lambda c: _migrated(c, config))


def _with_catalog(config: Config, make: bool, use: Any) -> int:
    catalog = open_catalog_for(config, inventory=make)
    try:
        result: int = use(catalog)
        return result
    except CatalogError as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:  # a key the catalog cannot hold
        raise ConfigError(str(exc)) from None
    finally:
        catalog.close()


def _import(catalog: Catalog, config: Config, entries: list[Expected]) -> int:
    bad = 0
    with opened_stores(_source_only(config)) as (source, *_):
        for entry in entries:
            found = _hashed(source, entry.key)
            if found is not None and not found.changed and _matches(entry, found):
                _record(catalog, source, entry.key, found)
                continue
            bad += 1
            why = ("missing in SOURCE" if found is None
                   else "SOURCE's copy changed while it was read" if found.changed
                   else "SOURCE's copy differs")  # fmt: skip
            size = entry.size if entry.size is not None else (found.size if found else None)
            if entry.sha256 is None or size is None:
                print(f"not imported: {entry.key}: {why}, and the inventory alone does not"
                      " give its SHA-256 and size", file=sys.stderr)  # fmt: skip
                continue
            catalog.record(entry.key, size=size, sha256=entry.sha256, mtime_ns=0, etag=EMPTY_ETAG)
            print(f"imported, but {why}: {entry.key}", file=sys.stderr)
    print(f"{len(entries) - bad} of {len(entries)} entries imported with a copy that matches")
    return 1 if bad else 0


def _scan(catalog: Catalog, config: Config) -> int:
    count = 0
    with opened_stores(_source_only(config)) as (source, *_):
        for listed in source.listing():
            found = _hashed(source, listed.key)
            if found is not None and found.changed:
                print(f"not recorded: {listed.key}: it changed while it was read",
                      file=sys.stderr)  # fmt: skip
            elif found is not None:
                _record(catalog, source, listed.key, found)
                count += 1
    print(f"{count} files recorded from {config.source}")
    return 0


def _show(catalog: Catalog, key: str, as_json: bool) -> int:
    entry = catalog.get(key)
    copies = Copies(catalog)
    doc: dict[str, Any] = {
        "key": key,
        "entry": asdict(entry) if entry is not None else None,
        "copies": [asdict(c) for c in copies.of_path(key)],
        "history": [asdict(h) for h in catalog.history(key)],
        "events": [asdict(e) for e in copies.events(key)],
    }
    if as_json:
        print(json.dumps(doc, indent=1, ensure_ascii=False))
    else:
        print(_text(doc))
    return 0 if entry is not None or doc["copies"] else 1


def _runs(catalog: Catalog, limit: int, as_json: bool) -> int:
    summaries = Runs(catalog).recent(limit)
    if as_json:
        print(json.dumps([asdict(s) for s in summaries], indent=1, ensure_ascii=False))
        return 0
    if not summaries:
        print("no audit or repair runs yet")
    for summary in summaries:
        print("\n".join(run_lines(summary)))
    return 0


def run_lines(summary: RunSummary) -> list[str]:
    """A run as `catalog runs` prints it: one line for the run, one per store."""
    run = summary.run
    state = "unfinished"
    if run.finished_ns is not None:
        state = f"finished {_utc(run.finished_ns)} ({_took(run.finished_ns - run.started_ns)})"
    lines = [f"{run.kind} {run.id}  started {_utc(run.started_ns)}  {state}"]
    width = max((len(s.store) for s in summary.stores), default=0)
    for store in summary.stores:
        where = f"through {store.through}" if store.through is not None else "not started"
        found = f"{store.findings:,} finding" + ("" if store.findings == 1 else "s")
        lines.append(f"  {store.store:<{width}}  {where}  ({store.ok:,} fine, {found})")
    return lines


def _utc(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9))


def _took(ns: int) -> str:
    seconds = round(ns / 1e9)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _migrated(catalog: Catalog, config: Config) -> int:
    print(f"catalog {catalog.location}: schema version {catalog.schema_version}")
    return 0


# -- helpers --------------------------------------------------------------------------------


def _source_only(config: Config) -> Config:
    import dataclasses

    return dataclasses.replace(config, replica=())


def _hashed(store: AuditStore, key: str) -> Found | None:
    """The store's copy read and hashed; None when it cannot be read.

    A local copy is stat'ed before and after the read: an identity that
    moved (a write changes the ctime, a replacement the inode) means the
    bytes hashed may be of no version the file ever had, and `changed` says so.
    """
    local = None if store.id.startswith("s3://") else os.path.join(store.id, key)
    before = _identity(local)
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        for chunk in store.read(key):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    except Unreadable:
        return None
    after = _identity(local)
    changed = local is not None and (before is None or _version(before) != _version(after))
    version = getattr(store, "version_read", None)  # a bucket's (audit/bucket.py)
    etag = version[1] if version is not None and version[0] == key else None
    return Found(size, sha256.hexdigest(), md5.hexdigest(), before, changed, etag)


def _identity(path: str | None) -> os.stat_result | None:
    if path is None:
        return None
    try:
        return os.stat(path, follow_symlinks=False)
    except OSError:
        return None


def _version(st: os.stat_result | None) -> tuple[int, int, int, int] | None:
    return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _matches(entry: Expected, found: Found) -> bool:
    size, sha256, md5 = found.size, found.sha256, found.md5
    if entry.size is not None and entry.size != size:
        return False
    if entry.sha256 is not None:
        return entry.sha256 == sha256
    return entry.md5 is not None and entry.md5 == md5


def _record(catalog: Catalog, store: AuditStore, key: str, found: Found) -> None:
    """A copy hashed now, with the identity the file had while it was read (a directory)."""
    size, sha256 = found.size, found.sha256
    if found.changed:
        return  # no version to tie the digest to
    if store.id.startswith("s3://") or found.st is None:
        # An object's ETag names the version read, so a server may serve the digest for it
        # (app/digestindex.py); without one the entry is tied to no version.
        etag = found.etag or EMPTY_ETAG
        copy = CopyEvent(key, store.id, "verified", size, sha256, found.etag, "ok", "read")
        catalog.record(key, size=size, sha256=sha256, mtime_ns=0, etag=etag, copies=[copy])
        return
    from ferryman.app.files import file_etag  # the request path's: loaded only when used

    st = found.st
    copy = CopyEvent(key, store.id, "verified", size, sha256, local_ident(st), "ok", "read")
    catalog.record(key, size=size, sha256=sha256, mtime_ns=st.st_mtime_ns, etag=file_etag(st),
                   ino=st.st_ino, ctime_ns=st.st_ctime_ns, copies=[copy])  # fmt: skip


def _text(doc: dict[str, Any]) -> str:
    lines = [f"key {doc['key']}"]
    entry = doc["entry"]
    if entry is None:
        lines.append("  not catalogued")
    else:
        state = "deleted" if entry["deleted"] else "live"
        lines.append(f"  {state}: {entry['size']} bytes, sha256 {entry['sha256']}")
    for copy in doc["copies"]:
        lines.append(f"  copy in {copy['store']}: {copy['state']}, {copy['size']} bytes,"
                     f" last check {copy['result']}")  # fmt: skip
    for event in doc["events"]:
        lines.append(f"    {event['store']}: {event['event']} {event['result'] or ''}".rstrip())
    return "\n".join(_lines(lines))


def _lines(lines: list[str]) -> Iterator[str]:
    for line in lines:
        yield line.replace("\n", "\\n")

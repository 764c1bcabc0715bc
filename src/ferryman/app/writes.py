"""PUT and DELETE: one verified write flow for every target.

A PUT, whatever it writes to (app/writetarget.py says what a target does):

1. intake (app/intake.py): the path names a file, the length is known, the
   digests the client sent are parsed; preconditions are checked once early,
   so a write that cannot succeed does not send its body for nothing;
2. the body streams into a staged temporary, hashed as it arrives, and every
   digest is verified; the target seals it (local: fsync and read back);
3. under the key's lock, which holds across the server's worker processes
   (app/writelock.py): the version there now is read, the preconditions are
   decided against it (and 201 against 204), the intent is recorded in the
   catalog, the target commits and verifies, and the catalog records the
   version, clearing the intent in the same transaction.

A DELETE takes the lock, decides its preconditions, records its intent,
removes the version and records the deletion.

A single-use signed URL (`ferryman sign --once`) is consumed in the
transaction that records the intent: of two writes with one such URL,
exactly one gets past it, and a change that then fails gives the URL back.

So the catalog's last word on a key is the version in the store, whichever
worker (or server, on a shared PostgreSQL catalog) wrote it. A crash
between the commit and the record leaves an intent: `settle()` runs before
a worker serves, and looks at the store to learn whether the change
happened (then records it) or not (then forgets it). Each intent names the
server that recorded it (serverid.py); a server settles its own, and
another's only once it is older than --settle-after and its lock is free
(that server died mid-write: its lock went with it), never a write another
server is still making. Nothing is reported stored that was not verified,
and a write that fails leaves the store, the catalog and the temporaries
as they were.

A write whose client leaves still runs to its end: the connection never
cancels a running handler (server/connection.py), so no step is cut between
the commit and the record except by the process dying, which is what the
intents are for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial

from ferryman.app.auth import SingleUse
from ferryman.app.intake import (
    BodyChecks,
    check_write_preconditions,
    receive_body,
    require_length,
    storage_error,
    write_path,
)
from ferryman.app.places import Place
from ferryman.app.replication import copy_to_replicas, remove_from_replicas, replica_error
from ferryman.app.writelock import LockBusy, WriteLocks
from ferryman.app.writetarget import Version, copy_ident
from ferryman.catalog.api import Catalog, CatalogError, CatalogUnavailable
from ferryman.catalog.copies import CopyEvent
from ferryman.catalog.db import Intent, UrlUsed
from ferryman.errors import HttpError, not_found
from ferryman.http.body import BodyReader
from ferryman.http.conditional import Validators
from ferryman.http.digest import format_repr_digest
from ferryman.http.parser import Request
from ferryman.http.response import Response

log = logging.getLogger("ferryman.uploads")

RETRY_AFTER = 2  # seconds: a catalog that is down is probed every second


class Writes:
    """PUT and DELETE of one target, recorded in `catalog`, ordered by `locks`."""

    def __init__(
        self,
        source: Place,
        catalog: Catalog,
        locks: WriteLocks,
        replicas: Sequence[Place] = (),
        *,
        server: str | None = None,
        settle_after: float = 600.0,
    ) -> None:
        self.server = server  # recorded with each intent: serverid.py
        self.settle_after = settle_after  # seconds: another server's intent is left that long
        self.source = source
        self.target = source.target
        self.replicas = tuple(replicas)
        self.catalog = catalog
        self.locks = locks

    # -- PUT ------------------------------------------------------------------------------

    async def put(
        self, request: Request, body: BodyReader | None, once: SingleUse | None = None
    ) -> Response:
        path = write_path(request)
        require_length(request)
        checks = BodyChecks.from_request(request)
        self._ready()  # before the body is sent for nothing
        await self._refuse_used(once)
        slot = await self.target.open(path, create=True)
        try:
            check_write_preconditions(request, _validators(await slot.current()))
            staged = await slot.stage()
            try:
                try:
                    size = await receive_body(body, staged.fd, checks)
                except ConnectionError:
                    raise  # the client left mid-body: nothing stored, nobody to answer
                except OSError as exc:
                    raise storage_error(exc, "write the file") from None
                checks.verify()
                sha256 = checks.sha256
                await slot.seal(staged, size, sha256)
                async with self._lock(slot.key):
                    before = await slot.current()
                    create_only = check_write_preconditions(request, _validators(before))
                    intent = Intent(slot.key, "put", staged.ident, size, sha256.hex(), staged.name,
                                    server=self.server)  # fmt: skip
                    await self._begin(intent, once, failed="nothing stored")
                    try:
                        made = await slot.commit(
                            staged, size=size, sha256=sha256, create_only=create_only,
                            content_type=request.headers.get("content-type"),
                        )  # fmt: skip
                    except BaseException:
                        await self._forget_intent(slot.key, once)
                        raise
                    finally:
                        self.target.changed(slot.key)
                    copies, failed = await copy_to_replicas(
                        self.replicas, path, slot.key, staged.fd, size, sha256
                    )
                    await self._record(slot.key, made, sha256.hex(), copies)
            finally:
                await slot.discard(staged)
        finally:
            slot.close()
        if failed:
            raise replica_error(self.source.name, _done(self.replicas, failed), failed, "stored")
        headers = [("ETag", made.etag), ("Repr-Digest", format_repr_digest(sha256))]
        if before is None:
            return Response(201, [*headers, ("Location", path.url())])
        return Response(204, headers)

    # -- DELETE ---------------------------------------------------------------------------

    async def delete(self, request: Request, once: SingleUse | None = None) -> Response:
        path = write_path(request)
        self._ready()
        await self._refuse_used(once)
        slot = await self.target.open(path, create=False)
        try:
            async with self._lock(slot.key):
                before = await slot.current()
                if before is None and not await self._listed_live(slot.key):
                    raise not_found()
                check_write_preconditions(request, _validators(before))
                if before is not None:  # else gone already: only the record is missing
                    intent = Intent(slot.key, "delete", before.ident, server=self.server)
                    await self._begin(intent, once, failed="nothing deleted")
                    try:
                        await slot.remove(before)
                    except BaseException:
                        await self._forget_intent(slot.key, once)
                        raise
                    finally:
                        self.target.changed(slot.key)
                copies, failed = await remove_from_replicas(self.replicas, path, slot.key)
                if before is not None:
                    copies.insert(0, CopyEvent(slot.key, self.source.id, "deleted"))
                deleted = partial(self.catalog.mark_deleted, slot.key, copies=copies)
                await self._catalog(deleted, failed="deleted but not recorded; retry")
        finally:
            slot.close()
        if failed:
            raise replica_error(self.source.name, _done(self.replicas, failed), failed, "deleted")
        return Response(204)

    # -- settling what a crash left -------------------------------------------------------

    async def settle(self) -> int:
        """Settle the intents that no running write holds; returns how many.

        An intent whose key is locked belongs to a write in progress (in
        another worker, or another server) and is left to it; so is another
        server's intent younger than --settle-after, whatever its lock says.
        """
        try:
            intents = await asyncio.to_thread(self.catalog.intents)
        except CatalogError as exc:
            log.error("cannot read the catalog's write intents: %s", exc)
            return 0
        settled = 0
        now = time.time_ns()
        for intent in intents:
            if not self._may_settle(intent, now):
                continue
            try:
                async with self.locks.hold(intent.path, wait=0):
                    await self._settle(intent)
                    settled += 1
            except LockBusy:
                continue
            except (HttpError, CatalogError) as exc:
                log.warning("cannot settle the interrupted %s of %s yet: %s",
                            intent.op, intent.path, getattr(exc, "detail", exc))  # fmt: skip
        return settled

    def _may_settle(self, intent: Intent, now_ns: int) -> bool:
        """This server's intent (or one from before intents named their server); another
        server's once it is older than --settle-after (its clock may differ: the age is
        generous). Either way the key's lock decides next."""
        if intent.server is None or intent.server == self.server:
            return True
        return now_ns - intent.at_ns >= self.settle_after * 1e9

    async def _settle(self, intent: Intent) -> None:
        """Look at the store: record what the interrupted write did, or forget its intent."""
        # Re-read under the lock: a write that finished meanwhile replaced or cleared it.
        current = {i.path: i for i in await asyncio.to_thread(self.catalog.intents)}
        if current.get(intent.path) != intent:
            return
        if intent.op == "put":
            made = await self.target.put_happened(intent)
            if made is not None and intent.sha256 is not None:
                await asyncio.to_thread(self._record_settled, intent.path, made, intent.sha256)
                log.info("settled an interrupted PUT of %s: it is in place, recorded", intent.path)
                return
        elif await self.target.delete_happened(intent):
            gone = [CopyEvent(intent.path, self.source.id, "deleted")]
            await asyncio.to_thread(partial(self.catalog.mark_deleted, intent.path, copies=gone))
            log.info("settled an interrupted DELETE of %s: it is gone, recorded", intent.path)
            return
        await asyncio.to_thread(self.catalog.drop_intent, intent.path)
        log.info("settled an interrupted %s of %s: it did not happen", intent.op.upper(),
                 intent.path)  # fmt: skip

    # -- the steps' shared parts ----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        """The key's write lock; one not free within --lock-timeout is a 503 answer, and so
        is a catalog that cannot take its lock across servers."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(self.locks.hold(key))
            except LockBusy as exc:
                raise HttpError(503, "busy", f"{exc}; retry", (("Retry-After", "1"),)) from None
            except CatalogUnavailable:
                raise _unavailable("nothing changed") from None
            except CatalogError as exc:
                log.error("catalog: %s (the write lock of %s)", exc, key)
                raise HttpError(503, "catalog_busy", "nothing changed; retry",
                                (("Retry-After", "1"),)) from None  # fmt: skip
            yield

    async def _record(
        self, key: str, made: Version, sha256: str, replicas: Sequence[CopyEvent] = ()
    ) -> None:
        """Catalog a verified write and its copies. The bytes are stored but, unrecorded,
        not a success: 503 (the intent stays, so the next start records them; a retried
        PUT does too)."""
        await self._catalog(self._record_settled, key, made, sha256, replicas,
                            failed="stored but not recorded; retry")  # fmt: skip

    def _record_settled(
        self, key: str, made: Version, sha256: str, replicas: Sequence[CopyEvent] = ()
    ) -> None:
        source = CopyEvent(key, self.source.id, "written", made.size, sha256, copy_ident(made))
        self.catalog.record(key, size=made.size, sha256=sha256, mtime_ns=made.mtime_ns,
                            etag=made.etag, ino=made.ino, ctime_ns=made.ctime_ns,
                            copies=[source, *replicas])  # fmt: skip

    async def aclose(self) -> None:
        """Close the replicas' targets (SOURCE's belongs to the Application) and the lock file."""
        for place in self.replicas:
            await place.target.aclose()
        self.locks.close()

    async def _catalog(self, step: Callable[..., object], *args: object, failed: str) -> None:
        """Run a catalog step in a thread; when the catalog cannot, 503 saying `failed`."""
        try:
            await asyncio.to_thread(step, *args)
        except CatalogUnavailable:
            # Logged once when it went down (catalog/outage.py); a change made before it
            # went keeps its intent, which the next start settles.
            raise _unavailable(failed) from None
        except CatalogError as exc:
            log.error("catalog: %s (%s)", exc, failed)
            raise HttpError(503, "catalog_busy", failed, (("Retry-After", "1"),)) from None

    def _ready(self) -> None:
        """503 at once while the catalog's server is known to be down: nothing could be
        recorded, so nothing is stored or removed (and no body is read for nothing)."""
        try:
            self.catalog.ready()
        except CatalogUnavailable:
            raise _unavailable("nothing changed") from None

    async def _begin(self, intent: Intent, once: SingleUse | None, *, failed: str) -> None:
        """Record the intent, and consume the single-use URL the write came with."""
        used = None if once is None else (once.digest, once.expires_at)
        try:
            await self._catalog(partial(self.catalog.begin, intent, once=used), failed=failed)
        except UrlUsed:
            raise _used_error() from None

    async def _refuse_used(self, once: SingleUse | None) -> None:
        if once is None:
            return
        try:
            used = await asyncio.to_thread(self.catalog.url_used, once.digest)
        except CatalogError:
            return  # the intent's transaction decides
        if used:
            raise _used_error()

    async def _forget_intent(self, key: str, once: SingleUse | None = None) -> None:
        """The change failed: drop its intent and give back its single-use URL (if even
        that fails, the next start settles the intent; the URL stays used)."""
        release = None if once is None else once.digest
        try:
            await asyncio.to_thread(partial(self.catalog.drop_intent, key, release=release))
        except CatalogError as exc:
            log.warning("catalog kept the intent of a failed write of %s: %s", key, exc)

    async def _listed_live(self, key: str) -> bool:
        """Whether the catalog still lists `key` as present.

        A DELETE that finds nothing asks this: a live entry means an earlier
        deletion went unrecorded (its answer was 503, "retry") or the file was
        removed behind ferryman's back, and the deletion is recorded now.
        """
        try:
            entry = await asyncio.to_thread(self.catalog.get, key)
        except CatalogError as exc:
            log.error("catalog could not say whether %s is listed: %s", key, exc)
            return False
        return entry is not None and not entry.deleted


def _unavailable(failed: str) -> HttpError:
    """The catalog's server does not answer: try again in a moment (a probe brings
    writes back as soon as it does)."""
    return HttpError(
        503, "catalog_unavailable", f"{failed}: the catalog cannot be reached; retry",
        (("Retry-After", str(RETRY_AFTER)),),
    )  # fmt: skip


def _done(replicas: Sequence[Place], failed: Sequence[tuple[Place, str]]) -> list[str]:
    missed = {place.id for place, _ in failed}
    return [place.name for place in replicas if place.id not in missed]


def _used_error() -> HttpError:
    return HttpError(403, "forbidden", "this single-use signed URL was used already")


def _validators(current: Version | None) -> Validators | None:
    return None if current is None else current.validators

"""Aborting the multipart uploads whose process is gone (recorded by uploadrecords.py).

Each worker that writes to S3 sweeps the stores it writes to once when it
starts (which covers a server restarting after it was killed) and every
--upload-sweep-interval after: for each recorded upload of those stores,

- owned by another process: take that owner's lease (Catalog.lease). Taken
  means the owner is gone (SIGKILL lets go of a record lock and ends a
  PostgreSQL session alike): abort the upload in S3 (one S3 no longer knows
  counts as done), drop its record, release the lease. KeyBusy means the
  owner lives, or another process is sweeping it now: left alone.
- owned by this process and not being sent: one whose abort failed; aborted
  again, without a lease (a lease is re-entrant within its holder, and
  releasing it would let go of the owner's own).

Nothing here runs on the event loop but the S3 calls: every catalog call is
made in a thread. A sweep's failure is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from ferryman.app.uploadrecords import UploadOwner
from ferryman.catalog.api import CatalogError, KeyBusy
from ferryman.catalog.multipart import MultipartUpload, owner_lease
from ferryman.stores.base import StoreError

log = logging.getLogger("ferryman.write")


class Abortable(Protocol):
    """A store that can abort a multipart upload of one of its keys (S3Store)."""

    async def abort_upload(self, key: str, upload_id: str) -> None: ...


class UploadSweep:
    """Sweeps the uploads recorded for `stores` (canonical id -> store)."""

    def __init__(self, owner: UploadOwner, stores: Mapping[str, Abortable]) -> None:
        self.owner = owner
        self.stores = dict(stores)

    async def run(self, every: float) -> None:
        """Sweep now, then every `every` seconds, until cancelled."""
        while True:
            try:
                await self.once()
            except Exception as exc:  # a bug must not end the sweeps for the worker's life
                log.error("the sweep of multipart uploads failed: %s: %s",
                          type(exc).__name__, exc)  # fmt: skip
            await asyncio.sleep(every)

    async def once(self) -> int:
        """One sweep of every store; returns how many uploads it aborted."""
        aborted = 0
        catalog = self.owner.catalog
        for store_id, store in self.stores.items():
            try:
                uploads = await asyncio.to_thread(catalog.uploads, store_id)
            except CatalogError as exc:
                log.warning("cannot read the multipart uploads in progress: %s", exc)
                return aborted
            for upload in uploads:
                if upload.owner == self.owner.name:
                    if self.owner.sending(upload.store, upload.upload_id):
                        continue
                    aborted += await self._abort(store, upload)
                else:
                    aborted += await self._abort_if_gone(store, upload)
        return aborted

    async def _abort_if_gone(self, store: Abortable, upload: MultipartUpload) -> bool:
        lease = self.owner.catalog.lease(owner_lease(upload.owner))
        try:
            await asyncio.to_thread(lease.__enter__)
        except KeyBusy:
            return False  # its owner lives (or another process is sweeping it now)
        except CatalogError as exc:
            log.warning("cannot check the owner of a multipart upload: %s", exc)
            return False
        try:
            return await self._abort(store, upload)
        finally:
            await asyncio.shield(asyncio.to_thread(lease.__exit__, None, None, None))

    async def _abort(self, store: Abortable, upload: MultipartUpload) -> bool:
        try:
            await store.abort_upload(upload.key, upload.upload_id)
        except StoreError as exc:
            log.warning("cannot abort the multipart upload of %s yet: %s", upload.key, exc)
            return False
        try:
            await asyncio.to_thread(self.owner.catalog.drop_upload, upload.store, upload.upload_id)
        except CatalogError as exc:
            log.warning("aborted the multipart upload of %s; cannot forget it yet: %s",
                        upload.key, exc)  # fmt: skip
            return False
        log.info("aborted the multipart upload of %s in %s left by process %d of server %s",
                 upload.key, upload.store, upload.pid, upload.server)  # fmt: skip
        return True

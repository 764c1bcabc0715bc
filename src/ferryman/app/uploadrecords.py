"""This process as the owner of the multipart uploads it sends, recorded in the catalog.

`UploadOwner` is one per worker: it names the process (catalog/multipart.py
`new_owner`) and takes the process's owner lease at its first recorded upload,
keeping it until the process ends (closing the catalog, or dying, lets go of
it). A lease taken before the first record means that any record another
process sees has a holder while its owner lives.

`StoreUploads` records one store's uploads for stores/s3upload.put_in_parts
(S3Store.records). The owner remembers which of its uploads are being sent,
so that its own sweep (uploadsweep.py) can abort one whose abort failed.

Threads: every catalog call runs in a thread; the owner's mutex orders the
lease's first take with the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading

from ferryman.catalog.api import Catalog, CatalogError, CatalogUnavailable, KeyBusy
from ferryman.catalog.multipart import MultipartUpload, new_owner, owner_lease
from ferryman.errors import HttpError

log = logging.getLogger("ferryman.write")


class UploadOwner:
    """The multipart uploads this process sends, and the lease that says it lives."""

    def __init__(self, catalog: Catalog, server: str) -> None:
        self.catalog = catalog
        self.server = server
        self.name = new_owner(server)
        self._mutex = threading.Lock()
        self._lease = contextlib.ExitStack()
        self._holding = False
        self._sending: set[tuple[str, str]] = set()  # (store, upload id)

    def store(self, store: str) -> StoreUploads:
        """The records of the uploads to `store` (its canonical id)."""
        return StoreUploads(self, store)

    def sending(self, store: str, upload_id: str) -> bool:
        """Whether this process is sending that upload now."""
        with self._mutex:
            return (store, upload_id) in self._sending

    def note(self, upload: MultipartUpload) -> None:
        """Record `upload`, taking the owner lease first if it is not held yet."""
        with self._mutex:
            if not self._holding:
                # Never released while the process lives: its death is what lets it go.
                self._lease.enter_context(self.catalog.lease(owner_lease(self.name)))
                self._holding = True
            self._sending.add((upload.store, upload.upload_id))
        try:
            self.catalog.note_upload(upload)
        except BaseException:
            self.finished(upload.store, upload.upload_id)
            raise

    def finished(self, store: str, upload_id: str) -> None:
        with self._mutex:
            self._sending.discard((store, upload_id))


class StoreUploads:
    """s3upload.UploadRecords for one store."""

    def __init__(self, owner: UploadOwner, store: str) -> None:
        self.owner = owner
        self.id = store

    async def opened(self, key: str, upload_id: str) -> None:
        owner = self.owner
        upload = MultipartUpload(self.id, key, upload_id, owner.name, owner.server, os.getpid())
        try:
            await asyncio.to_thread(owner.note, upload)
        except CatalogUnavailable:
            raise HttpError(503, "catalog_unavailable", "the catalog does not answer; nothing"
                            " changed", (("Retry-After", "5"),)) from None  # fmt: skip
        except (CatalogError, KeyBusy) as exc:
            log.error("catalog: %s (recording the multipart upload of %s)", exc, key)
            raise HttpError(503, "catalog_busy", "cannot record the upload; nothing changed",
                            (("Retry-After", "1"),)) from None  # fmt: skip

    async def closed(self, key: str, upload_id: str, gone: bool) -> None:
        if not gone:
            self.owner.finished(self.id, upload_id)
            return
        try:
            await asyncio.to_thread(self.owner.catalog.drop_upload, self.id, upload_id)
        except (CatalogError, ValueError) as exc:
            # The record stays; the next sweep finds the upload gone and drops it then.
            log.warning("cannot forget the multipart upload of %s yet: %s", key, exc)
        finally:
            self.owner.finished(self.id, upload_id)

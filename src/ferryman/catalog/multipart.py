"""The multipart uploads in progress on the stores ferryman writes to (schema v7).

S3 keeps the parts of an upload that was neither completed nor aborted,
invisible to every listing of objects and billed, until someone aborts it.
A process killed with SIGKILL aborts nothing, so each upload is recorded here
right after CreateMultipartUpload answers, before its first part, and dropped
once it is completed or aborted (stores/s3upload.py).

Each record names its owner: the process that sends it, as
"<server id>:<pid>:<random>" (the random part, so that a later process given
the same pid is not taken for the dead one). The owner holds the lease
`owner_lease(owner)` (Catalog.lease) from its first recorded upload until it
dies; whoever can take that lease knows the owner is gone, and aborts and
drops its uploads (app/uploadsweep.py).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass

from ferryman.catalog.api import SINGLE, WRITE, Database

_INSERT = (
    "INSERT INTO multipart_uploads (store, key, upload_id, owner, server, pid, started_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, upload_id) DO NOTHING"
)
_DROP = "DELETE FROM multipart_uploads WHERE store = ? AND upload_id = ?"
_COLUMNS = "SELECT store, key, upload_id, owner, server, pid, started_ns FROM multipart_uploads"
_ALL = _COLUMNS + " ORDER BY started_ns, upload_id"
_OF_STORE = _COLUMNS + " WHERE store = ? ORDER BY started_ns, upload_id"


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    """One upload in progress: `key` in the store `store` names (its canonical id,
    `s3://bucket/prefix`), relative to that prefix."""

    store: str
    key: str
    upload_id: str
    owner: str  # "<server id>:<pid>:<random>": whose lease says it is alive
    server: str
    pid: int
    started_ns: int = 0


def new_owner(server: str) -> str:
    """The owner name of this process, unique to it (a pid alone is reused)."""
    return f"{server}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_lease(owner: str) -> str:
    """The name of the lease `owner` holds while it lives."""
    return f"upload-owner:{owner}"


def note(db: Database, upload: MultipartUpload) -> None:
    """Record `upload` (a second record of the same upload changes nothing)."""
    _check(upload.store, upload.upload_id)
    if not upload.key or not upload.owner:
        raise ValueError("a multipart upload needs a key and an owner")
    started = upload.started_ns or time.time_ns()
    with db.transaction(WRITE) as tx:
        tx.execute(_INSERT, (upload.store, upload.key, upload.upload_id, upload.owner,
                             upload.server, upload.pid, started))  # fmt: skip


def drop(db: Database, store: str, upload_id: str) -> bool:
    """Forget an upload (completed or aborted); whether it was recorded."""
    _check(store, upload_id)
    with db.transaction(WRITE) as tx:
        return tx.execute(_DROP, (store, upload_id)).rowcount == 1


def listed(db: Database, store: str | None = None) -> list[MultipartUpload]:
    """The recorded uploads (of `store` only, when given), oldest first."""
    with db.transaction(SINGLE) as tx:
        if store is None:
            rows = tx.execute(_ALL).fetchall()
        else:
            rows = tx.execute(_OF_STORE, (store,)).fetchall()
    return [MultipartUpload(*row) for row in rows]


def _check(store: str, upload_id: str) -> None:
    if not isinstance(store, str) or not store:
        raise ValueError("a multipart upload needs the id of its store")
    if not isinstance(upload_id, str) or not upload_id:
        raise ValueError("a multipart upload needs its upload id")

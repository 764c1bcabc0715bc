"""A write's copies in the replicas: made one store after another, each verified.

The write flow (writes.py) calls these under the key's lock, once SOURCE
holds the new version (or no longer holds the deleted one). Each replica's
outcome becomes a copy event for the catalog, written or failed; the
failures, if any, are what the answer names (502).
"""

from __future__ import annotations

from collections.abc import Sequence

from ferryman.app.paths import RequestPath
from ferryman.app.places import Place
from ferryman.app.writetarget import copy_ident
from ferryman.catalog.copies import CopyEvent
from ferryman.errors import HttpError


async def copy_to_replicas(
    replicas: Sequence[Place], path: RequestPath, key: str, fd: int, size: int, sha256: bytes
) -> tuple[list[CopyEvent], list[tuple[Place, str]]]:
    """Copy `size` bytes of `fd` to each replica: (copy events, (replica, why) failures)."""
    events: list[CopyEvent] = []
    failed: list[tuple[Place, str]] = []
    for place in replicas:
        try:
            made = await place.target.replicate(path, fd, size, sha256)
        except HttpError as exc:
            failed.append((place, exc.detail or exc.error))
            events.append(CopyEvent(key, place.id, "write_failed", detail=exc.detail))
            continue
        events.append(CopyEvent(key, place.id, "written", made.size, sha256.hex(),
                                copy_ident(made)))  # fmt: skip
    return events, failed


async def remove_from_replicas(
    replicas: Sequence[Place], path: RequestPath, key: str
) -> tuple[list[CopyEvent], list[tuple[Place, str]]]:
    """Delete the key in each replica (absent is fine): (copy events, failures)."""
    events: list[CopyEvent] = []
    failed: list[tuple[Place, str]] = []
    for place in replicas:
        try:
            await place.target.remove_copy(path)
        except HttpError as exc:
            failed.append((place, exc.detail or exc.error))
            events.append(CopyEvent(key, place.id, "write_failed", detail=f"delete: {exc.detail}"))
            continue
        events.append(CopyEvent(key, place.id, "deleted"))
    return events, failed


def replica_error(source: str, done: Sequence[str], failed: Sequence[tuple[Place, str]],
                  verb: str) -> HttpError:  # fmt: skip
    """The 502 for a write that SOURCE took but some replica did not."""
    where = " and ".join([source, *done])
    missed = "; ".join(f"{place.name}: {why}" for place, why in failed)
    return HttpError(502, "replica_failed", f"{verb} in {where}, not in {missed}")

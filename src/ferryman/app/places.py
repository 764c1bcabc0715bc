"""The stores a server writes to: SOURCE and each --replica, as write targets.

A `Place` is one store: its name as the user gave it (error answers and
reports show that), its canonical id (the catalog's name for it: an
absolute directory, or `s3://bucket/prefix`), and the Target that writes
there. SOURCE's target is made by the Application (it shares the Root's
descriptor, or the served store and its cache); replicas are made here.

Each local directory written to has its own staging marks
(STATE/staging for SOURCE, STATE/staging-<8 hex> for a replica), so the
arbiter can sweep a dead worker's temporaries in every one of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ferryman.app.localtarget import LocalTarget
from ferryman.app.spool import Spool
from ferryman.app.staging import replica_staging, source_staging, store_id
from ferryman.app.storetarget import StoreTarget
from ferryman.app.writetarget import Target
from ferryman.config import Config


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    id: str
    target: Target


def source_place(config: Config) -> Place:
    """SOURCE as a write target of its own (for repairs: the server's Application shares
    its Root's descriptor instead)."""
    if config.is_remote:
        from ferryman.stores.s3 import S3Store

        store = S3Store.from_config(config)
        target: Target = StoreTarget(store, Spool.of(config), verify_mode=config.verify_writes,
                                     attempts=config.upload_attempts, owned=True)  # fmt: skip
    else:
        fd = os.open(config.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        target = LocalTarget(fd, config.verify_writes, source_staging(config), owned=True)
    return Place(config.source, store_id(config.source), target)


def replicas(config: Config) -> list[Place]:
    """A Place for each --replica (opened now: a directory's descriptor, a store's client)."""
    places = []
    for location in config.replica:
        if location.startswith("s3://"):
            from ferryman.stores.s3 import S3Store  # imported only when a bucket is written

            store = S3Store.from_url(location, config)
            target: Target = StoreTarget(
                store,
                Spool.of(config),
                verify_mode=config.verify_writes,
                attempts=config.upload_attempts,
                owned=True,
            )
        else:
            fd = os.open(location, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            staging = replica_staging(config, location)
            target = LocalTarget(fd, config.verify_writes, staging, owned=True)
        places.append(Place(location, store_id(location), target))
    return places

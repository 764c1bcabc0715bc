"""One audit or repair at a time per store: a lease in the catalog.

A run checks, records and (a repair) mends each of its stores; two runs over
one store at once would do the whole work twice and, started with the same
options, record their progress into the same run. So a run first takes a
lease on each of its stores (`Catalog.lease`: a record lock on the SQLite
catalog's lease file, an advisory lock on PostgreSQL, so across every
server of a fleet), in the order of their ids, each at once or not at all.
A store leased by another run stops this one before it reads anything:
`StoreBusy`, which the commands answer with exit status 4 and one line.
A run that dies, even killed, lets go of its leases with its process (or
its connection), so nothing is left to clean up.

Where the other run has got to is in the catalog: `ferryman catalog runs`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from ferryman.audit.stores import AuditStore
from ferryman.catalog.api import Catalog, KeyBusy
from ferryman.errors import FerrymanError


class StoreBusy(FerrymanError):
    """Another audit or repair holds the lease of `store`."""

    def __init__(self, store: str) -> None:
        super().__init__(
            f"another audit or repair of {store} is running; `ferryman catalog runs` shows"
            " how far it got"
        )
        self.store = store


def lease_name(store: AuditStore) -> str:
    return f"run:{store.id}"


@contextlib.contextmanager
def stores_leased(catalog: Catalog, stores: Sequence[AuditStore]) -> Iterator[None]:
    """Hold the lease of every store for the block, or StoreBusy naming the first store
    another run holds (letting go of those taken before it)."""
    with contextlib.ExitStack() as held:
        for store in sorted(stores, key=lambda s: s.id):
            try:
                held.enter_context(catalog.lease(lease_name(store)))
            except KeyBusy:
                raise StoreBusy(store.name) from None
        yield

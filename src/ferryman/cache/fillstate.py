"""The filler's state for one entry (one object version) while it is in use.

A `Fill` belongs to the filler's event loop. It holds:

* the open EntryWriter: closed by `retire()` once no write runs (`writes`
  counts write_block and verify/clear calls still running in threads);
* one future per block being fetched (`pending`): its result is None (the
  block is present) or the StoreError that failed it. It is never
  cancelled and never holds an exception, so a waiter that went away
  leaves nothing unretrieved;
* the runs fetching it, the blocks being checked, and where the last reader
  stopped (read-ahead detection).

Who creates, keeps and drops a Fill is filler.py; who fetches into it is
fetcher.py.
"""

from __future__ import annotations

import asyncio

from ferryman.cache.entry import EntryWriter
from ferryman.stores.base import StoreError, Unavailable

Outcome = StoreError | None  # what a block's future resolves to


class Fill:
    """The filler's state for one entry (one object version)."""

    def __init__(self, writer: EntryWriter, checked: float) -> None:
        self.writer = writer
        self.meta = writer.meta
        self.checked = checked  # clock time of the last HEAD that confirmed the version
        self.pending: dict[int, asyncio.Future[Outcome]] = {}
        self.runs: set[asyncio.Task[None]] = set()
        self.checking: dict[int, asyncio.Future[None]] = {}  # blocks being verified
        self.writes = 0  # write_block calls still running in threads
        self.next_block = 0  # the block after the last one wanted (read-ahead detection)
        self.dropped = False

    @property
    def idle(self) -> bool:
        return not (self.pending or self.runs or self.writes or self.checking)

    def settle(self, block: int, outcome: Outcome) -> None:
        future = self.pending.pop(block, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    def fail_blocks(self, blocks: range, error: StoreError) -> None:
        for block in blocks:
            self.settle(block, error)

    def fail_all(self, error: StoreError) -> None:
        for block in list(self.pending):
            self.settle(block, error)

    def end_write(self) -> None:
        """A thread using the writer returned: close it if the entry was retired meanwhile."""
        self.writes -= 1
        if self.dropped and not self.writes:
            self.writer.close()

    def retire(self) -> None:
        """Stop using the entry; its writer closes once no write is running."""
        self.dropped = True
        for task in self.runs:
            task.cancel()
        if not self.writes:
            self.writer.close()


def relay(
    arrivals: asyncio.Queue[tuple[int, Outcome]], block: int, future: asyncio.Future[Outcome]
) -> None:
    """Pass a block's outcome to the queue of a reader waiting for several blocks."""
    outcome = Unavailable("the fetch was stopped") if future.cancelled() else future.result()
    arrivals.put_nowait((block, outcome))

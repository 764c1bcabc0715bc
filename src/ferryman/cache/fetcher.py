"""Fetching runs of blocks from the store and writing each block as its bytes complete.

`Fetcher.fetch` turns the blocks of a range that are neither present nor in
flight into runs (at most `max_run` blocks, one ranged GET each, at most
`max_fetches` GETs at a time). A run writes every block as soon as its bytes
have arrived, settles that block's future, and after a cut or a reset asks
again for what is still missing (RETRY_DELAYS).

Who owns what (everything on the filler's loop):

* A run owns the futures of its blocks until it settles them; however it
  ends (done, failed, cancelled, a bug) every block it did not write is
  settled with an error, so no waiter is left waiting.
* A block is handed to write_block only when all its bytes arrived; the
  write runs in a thread and is shielded from cancellation, and the Fill's
  writer is closed only when its last write has returned (fillstate.py).
  `writes` holds the running ones, for the filler's close.
* A 412 or 404 means the pinned version is gone: the run hands the Fill to
  `version_gone` (the filler's), which drops the entry.
* Room (decisions/0018): before its GET, a run reserves room for its blocks
  (evictionpacing.py); blocks that get none are declined (CacheDeclined, and
  their readers go to the store), the run fetches the rest. Each block's
  charge is committed when its write was attempted; whatever was not written
  is released when the run ends, however it ends.
* A disk error while writing is the cache disk's condition, not the block's:
  it goes to `health` (logged once) and the run's blocks are declined.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from functools import partial

from ferryman.cache import blockmap
from ferryman.cache.entry import EntryMeta
from ferryman.cache.evictionpacing import EvictionPacer
from ferryman.cache.fillstate import Fill
from ferryman.cache.health import no_room
from ferryman.cache.room import block_charge
from ferryman.cache.stats import CacheStats
from ferryman.failures import log_failure
from ferryman.stores.base import (
    NotFound,
    PreconditionFailed,
    Store,
    StoreError,
    Truncated,
    Unavailable,
)

log = logging.getLogger("ferryman.cache")

RETRY_DELAYS = (0.05, 0.25)  # seconds before the 2nd and 3rd try of a run (cut or reset)


class Fetcher:
    def __init__(
        self,
        store: Store,
        stats: CacheStats,
        pacer: EvictionPacer,
        version_gone: Callable[[Fill, StoreError], None],
        *,
        max_fetches: int,
        max_run: int,
    ) -> None:
        self.store = store
        self.stats = stats
        self.max_run = max_run
        self.writes: set[asyncio.Future[None]] = set()  # write_block threads running
        self._pacer = pacer
        self._version_gone = version_gone
        self._slots = asyncio.Semaphore(max_fetches)

    def fetch(self, fill: Fill, blocks: range) -> None:
        """Start runs for the blocks of `blocks` that are neither present nor in flight."""
        runs = blockmap.missing_runs(fill.writer.present, blocks, self.max_run, fill.pending)
        loop = asyncio.get_running_loop()
        for run in runs:
            for block in run:
                fill.pending[block] = loop.create_future()
            task = loop.create_task(self._fetch_run(fill, run))
            fill.runs.add(task)
            task.add_done_callback(fill.runs.discard)

    async def _fetch_run(self, fill: Fill, run: range) -> None:
        """One ranged GET for the blocks of `run`, retried for what a cut left missing."""
        progress = _Progress(run.start)
        charges: dict[int, int] = {}  # room reserved for blocks not yet written
        try:
            async with self._slots:
                run = await self._reserve(fill, run, charges)
                for attempt in range(len(RETRY_DELAYS) + 1):
                    if not progress.rest(run):
                        return
                    try:
                        await self._stream_run(fill, progress, run, charges)
                        return
                    except (Truncated, Unavailable) as exc:
                        if attempt == len(RETRY_DELAYS) or fill.dropped:
                            raise
                        log.info("cache: retrying blocks %d-%d of %r: %s",
                                 progress.block, run.stop - 1, fill.meta.key, exc)  # fmt: skip
                        await asyncio.sleep(RETRY_DELAYS[attempt])
        except (PreconditionFailed, NotFound) as exc:
            self._version_gone(fill, exc)
        except StoreError as exc:
            fill.fail_blocks(progress.rest(run), exc)
        except OSError as exc:
            fill.fail_blocks(progress.rest(run), self._pacer.health.fault(exc))
        except asyncio.CancelledError:
            fill.fail_blocks(progress.rest(run), Unavailable("the fetch was stopped"))
            raise
        except Exception as exc:  # a bug must not leave waiters hanging
            what = f"cache: fetching blocks {run.start}-{run.stop - 1} of {fill.meta.key!r} failed"
            log_failure(log, what, exc)
            fill.fail_blocks(progress.rest(run), Unavailable(f"fetch failed: {exc!r}"))
        finally:
            self._pacer.release(sum(charges.values()))

    async def _reserve(self, fill: Fill, run: range, charges: dict[int, int]) -> range:
        """Reserve room for the blocks of `run`, or for as many leading ones as fit.

        Returns the blocks the run may fetch; the blocks after them are
        declined now (their readers go to the store). CacheDeclined if none fits.
        """
        unit, writer = self._pacer.unit, fill.writer
        wanted = {
            block: block_charge(block, writer.slot, writer.stored_length(block), unit)
            for block in run
        }
        granted = run
        if not await self._pacer.reserve(sum(wanted.values())):
            granted = range(run.start, run.start)
            for block in run:  # one at a time: what still fits
                if not await self._pacer.reserve(wanted[block]):
                    break
                granted = range(run.start, block + 1)
                charges[block] = wanted[block]
        else:
            charges.update(wanted)
        declined = range(granted.stop, run.stop)
        if declined:
            self.stats.declined += len(declined)
            fill.fail_blocks(declined, no_room())
        return granted  # empty when nothing fits: the run ends at once

    async def _stream_run(
        self, fill: Fill, progress: _Progress, run: range, charges: dict[int, int]
    ) -> None:
        """Write each block as its bytes complete; the run's last one once the body ended.

        The store checks that its answer is the range asked (stores/base.py);
        holding the last block until the body ends is the backstop: a body
        longer than asked is refused before its last block is written.
        """
        meta = fill.meta
        span = meta.run_span(progress.rest(run))
        self.stats.upstream_requests += 1
        stream = self.store.read(meta.key, span.start, span.end, if_match=meta.etag)
        buffer = bytearray()
        received = 0
        try:
            async for chunk in stream:
                received += len(chunk)
                self.stats.bytes_fetched += len(chunk)
                if received > span.length:
                    raise Unavailable(f"the store sent more than {span.length} bytes")
                buffer += chunk
                for block, data in _whole_blocks(meta, buffer, progress.block, run.stop - 1):
                    await self._write(fill, block, data, charges)
                    progress.block = block + 1
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        for block, data in _whole_blocks(meta, buffer, progress.block, run.stop):
            await self._write(fill, block, data, charges)
            progress.block = block + 1
        if progress.rest(run):
            raise Truncated(
                f"the store's answer for {meta.key!r} stopped at block {progress.block}"
            )

    async def _write(self, fill: Fill, block: int, data: bytes, charges: dict[int, int]) -> None:
        """Write one whole block durably (its room is reserved), and tell its waiters."""
        if fill.dropped:
            raise asyncio.CancelledError
        fill.writes += 1
        write = asyncio.ensure_future(asyncio.to_thread(fill.writer.write_block, block, data))
        write.add_done_callback(partial(_write_done, fill))
        self.writes.add(write)
        write.add_done_callback(self.writes.discard)
        # Held once the write ends, written or not (whatever it allocated counts), and
        # reserved until then: committed at its start, an eviction's scan that began
        # after the commit and measured the file before the bytes landed counted them
        # nowhere, and the cache passed its bound by up to a block.
        size = charges.pop(block, 0)
        write.add_done_callback(lambda _: self._pacer.commit(size))
        await asyncio.shield(write)  # a cancelled run still lets the thread finish
        self.stats.fills += 1
        fill.settle(block, None)


class _Progress:
    """The first block of a run not yet written (survives the run's retries)."""

    __slots__ = ("block",)

    def __init__(self, block: int) -> None:
        self.block = block

    def rest(self, run: range) -> range:
        """The blocks of `run` not yet written."""
        return range(self.block, run.stop)


def _whole_blocks(
    meta: EntryMeta, buffer: bytearray, block: int, stop: int
) -> Iterator[tuple[int, bytes]]:
    """Cut every complete block before `stop` off the front of `buffer`, starting with `block`."""
    while block < stop:
        length = meta.block_span(block).length
        if len(buffer) < length:
            return
        data = bytes(buffer[:length])
        del buffer[:length]
        yield block, data
        block += 1


def _write_done(fill: Fill, write: asyncio.Future[None]) -> None:
    if not write.cancelled():
        write.exception()  # the awaiting run reports it; this only marks it seen
    fill.end_write()

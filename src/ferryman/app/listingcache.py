"""Listing pages kept for a moment: a flood of requests for one directory's page
builds that page about once a second, not once per request.

A listing is the most expensive GET a client can ask for (a stat per entry
and a page to render: milliseconds for a thousand entries), so it is also
the cheapest way to make a server busy. A page is kept under everything it
is made of:

- the directory as it is now: its device and inode, and its mtime and ctime
  in nanoseconds, which change when an entry is added, removed or renamed,
  so such a change shows at once;
- what the request asks: the path it named, its query (the view and page),
  JSON or HTML, and the Host the page names.

What the directory's times do not show (a listed file growing, or touched)
shows once the page is `max_age` seconds old (--listing-cache-age, 1 s).
A page whose links are signed is never kept: its links are credentials
with an expiry. The pages kept take at most `max_bytes` (--listing-cache);
the least recently used goes first. One cache per worker process.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

# The key of a page: (directory identity and times, what the request asked)
PageKey = tuple[Hashable, ...]


def directory_version(st: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when the directory's entries do (an fstat of the open directory)."""
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


class ListingCache:
    def __init__(
        self, max_bytes: int, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self.size = 0  # bytes of the pages kept
        self._pages: OrderedDict[PageKey, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pages)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.max_age > 0

    def get(self, key: PageKey) -> bytes | None:
        """The page kept under `key` if it is younger than max_age, else None."""
        kept = self._pages.get(key)
        if kept is None:
            return None
        made, payload = kept
        if self.clock() - made >= self.max_age:
            self._drop(key)
            return None
        self._pages.move_to_end(key)
        return payload

    def put(self, key: PageKey, payload: bytes) -> None:
        """Keep `payload` (made now) under `key`; a page larger than the whole cache is not kept."""
        if key in self._pages:
            self._drop(key)  # whether or not the new page is kept, the old one is stale
        if not self.enabled or len(payload) > self.max_bytes:
            return
        self._pages[key] = (self.clock(), payload)
        self.size += len(payload)
        while self.size > self.max_bytes:
            self._drop(next(iter(self._pages)))

    def _drop(self, key: PageKey) -> None:
        _, payload = self._pages.pop(key)
        self.size -= len(payload)

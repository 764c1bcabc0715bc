"""An audit run's stores, each in a thread of its own, over a real catalog."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator

import pytest

from ferryman.audit.model import Expected, Stored
from ferryman.audit.run import Audit, AuditOptions, from_inventory
from ferryman.catalog import Catalog
from ferryman.catalog.runs import Runs

KEYS = [f"k{i:05d}" for i in range(3000)]
EXPECTED = [Expected(key, 1) for key in KEYS]


class Listing:
    """A store whose listing is a list, with hooks to hold it or break it midway."""

    def __init__(self, name: str, *, wait_for: threading.Event | None = None,
                 fail_after: int | None = None, pause: float = 0.0) -> None:  # fmt: skip
        self.name = self.id = name
        self.started = threading.Event()
        self.wait_for = wait_for
        self.fail_after = fail_after
        self.pause = pause  # seconds per key: a slow store
        self.listed = 0
        self.closed = False
        self.after: list[str | None] = []  # what each listing was asked to start after

    def listing(self, after: str | None = None) -> Generator[Stored, None, None]:
        self.after.append(after)
        self.started.set()
        if self.wait_for is not None and not self.wait_for.wait(10):
            raise AssertionError(f"{self.name} was listed alone: stores are not audited at once")
        try:
            for key in KEYS:
                if self.fail_after is not None and self.listed == self.fail_after:
                    raise ValueError(f"{self.name} broke")
                self.listed += 1
                time.sleep(self.pause)
                yield Stored(key, 1, ident="i")
        finally:
            self.closed = True

    def read(self, key: str) -> Iterator[bytes]:
        yield b"x"

    def close(self) -> None:
        pass


def test_the_stores_are_listed_at_once(catalog: Catalog) -> None:
    second = Listing("B")
    first = Listing("A", wait_for=second.started)  # A goes on only once B has begun
    result = Audit(catalog, [first, second], from_inventory(EXPECTED, "inv"), AuditOptions()).run()
    assert result.complete
    assert {name: t.counts["ok"] for name, t in result.tallies.items()} == {"A": 3000, "B": 3000}


def test_a_store_that_breaks_stops_the_others_with_their_progress_recorded(
    catalog: Catalog,
) -> None:
    broken = Listing("A", fail_after=500, wait_for=threading.Event())
    other = Listing("B", pause=0.001)  # three seconds for all of it
    broken.wait_for = other.started
    audit = Audit(catalog, [broken, other], from_inventory(EXPECTED, "inv"), AuditOptions())
    with pytest.raises(ValueError, match="A broke"):
        audit.run()
    assert 0 < other.listed < len(KEYS)  # B stopped when A broke ...
    assert other.closed  # ... and its listing was given up, not left open
    run = Runs(catalog).start("audit", audit.run_options())
    assert run.resumed  # unfinished: run again, it continues
    recorded = Runs(catalog).progress(run, "B")
    assert recorded.through is not None and recorded.ok == KEYS.index(recorded.through) + 1


def test_a_resumed_run_asks_each_store_to_list_after_what_it_checked(catalog: Catalog) -> None:
    broken = Listing("A", fail_after=500)
    other = Listing("B")
    audit = Audit(catalog, [broken, other], from_inventory(EXPECTED, "inv"), AuditOptions())
    with pytest.raises(ValueError, match="A broke"):
        audit.run()
    run = Runs(catalog).start("audit", audit.run_options())
    through = {name: Runs(catalog).progress(run, name).through for name in ("A", "B")}
    again = [Listing("A"), Listing("B")]
    result = Audit(catalog, again, from_inventory(EXPECTED, "inv"), AuditOptions()).run()
    assert [store.after for store in again] == [[through["A"]], [through["B"]]]
    assert [broken.after, other.after] == [[None], [None]]  # the first run: from the start
    assert result.complete
    assert {name: t.counts["ok"] for name, t in result.tallies.items()} == {"A": 3000, "B": 3000}

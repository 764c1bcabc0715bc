"""What a change's notification costs a PostgreSQL catalog's record (decisions/0036).

    python bench/notify_bench.py [--batches 12] [--size 200]

One catalog on a throwaway, durable PostgreSQL (tests/postgres.py), one
listening connection reading every notification in a thread (as a fleet's
fillers do), and `record()` of new paths with a store's copy, in batches
that take turns: with the notification ferryman sends, and without it (the
same backend with `announce` doing nothing). Prints the median rate of each
and how many notifications the listener heard.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.postgres: the throwaway PostgreSQL

from tests.postgres import PostgresServer  # noqa: E402

from ferryman.catalog.api import Transaction  # noqa: E402
from ferryman.catalog.changes import CHANNEL  # noqa: E402
from ferryman.catalog.copies import CopyEvent  # noqa: E402
from ferryman.catalog.db import SqlCatalog  # noqa: E402
from ferryman.catalog.postgres import PostgresDatabase, PostgresSettings  # noqa: E402


class Silent(PostgresDatabase):
    """The backend without its notifications."""

    def announce(self, tx: Transaction, path: str, stores: Sequence[str]) -> None:
        pass


class Listener(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.heard = 0
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.ready.set()
            while not self.stop.is_set():
                self.heard += sum(1 for _ in conn.notifies(timeout=0.2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args()
    server = PostgresServer(durable=True)
    try:
        url = server.url(server.new_schema())
        listener = Listener(url)
        listener.start()
        listener.ready.wait(30)
        settings = PostgresSettings(origin="bench")
        catalogs = {"notify": SqlCatalog(PostgresDatabase(url, settings)),
                    "silent": SqlCatalog(Silent(url, settings))}  # fmt: skip
        rates: dict[str, list[float]] = {name: [] for name in catalogs}
        count = 0
        for batch in range(args.batches):
            order = list(catalogs) if batch % 2 else list(catalogs)[::-1]
            for name in order:
                start = time.perf_counter()
                for _ in range(args.size):
                    count += 1
                    path = f"d/{count}.bin"
                    copy = CopyEvent(path, "s3://b", "written")
                    catalogs[name].record(
                        path, size=1, sha256="ab" * 32, mtime_ns=1, etag='"e"', copies=[copy]
                    )
                rates[name].append(args.size / (time.perf_counter() - start))
        time.sleep(1.0)
        listener.stop.set()
        listener.join(5)
        for name, measured in rates.items():
            print(f"{name:7s} {statistics.median(measured):7,.0f} record/s (median of"
                  f" {args.batches} batches of {args.size}; {min(measured):,.0f} to"
                  f" {max(measured):,.0f})")  # fmt: skip
        print(f"notifications heard: {listener.heard}")
        for catalog in catalogs.values():
            catalog.close()
    finally:
        server.close()


if __name__ == "__main__":
    main()

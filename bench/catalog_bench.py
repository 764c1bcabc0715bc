"""The catalog benchmark: record, lookup and history operations per second, per backend.

    make bench-catalog [QUICK=1]
    python bench/catalog_bench.py [--quick] [--rounds N] [--backends sqlite,postgresql]

One thread, one catalog, the calls the server makes:

- record: `record()` of a new path (one durable commit each: SQLite
  synchronous=FULL fsyncs its WAL; PostgreSQL runs with fsync on and
  synchronous_commit on, as a server would);
- lookup: `get()` of a recorded path (what the GET path asks for Repr-Digest);
- history: `history()` of a path with three versions.

SQLite is a file in a temporary directory (on the same filesystem as /tmp);
PostgreSQL is a throwaway cluster started by tests/postgres.py on
127.0.0.1 (TCP, password authentication), durable. Each figure is the median
of --rounds rounds. Prints a table and writes
bench/results/catalog-latest.json. With an older ferryman on PYTHONPATH
(which has only the SQLite catalog, as `Catalog`), the SQLite rows measure
that one: how docs/performance.md compares before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.postgres: the throwaway PostgreSQL


def _sqlite_catalog(path: Path) -> Any:
    try:
        from ferryman.catalog import SqliteCatalog
    except ImportError:  # a ferryman from before the PostgreSQL backend
        from ferryman.catalog import Catalog as SqliteCatalog  # type: ignore[attr-defined]
    return SqliteCatalog(path)


def _sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def _rate(count: int, call: Callable[[int], object]) -> float:
    start = time.perf_counter()
    for n in range(count):
        call(n)
    return count / (time.perf_counter() - start)


def one_round(catalog: Any, counts: dict[str, int], tag: str) -> dict[str, float]:
    def record(n: int) -> None:
        catalog.record(f"{tag}/r/{n:08d}", size=n, sha256=_sha(n), mtime_ns=n, etag=f'"{n}"')

    for v in range(3):  # the paths history() reads: three versions each
        for n in range(100):
            catalog.record(f"{tag}/h/{n}", size=v, sha256=_sha(v), mtime_ns=v, etag=f'"{v}"')
    rates = {"record": _rate(counts["record"], record)}
    rates["lookup"] = _rate(counts["lookup"], lambda n: catalog.get(f"{tag}/r/{n % 100:08d}"))
    rates["history"] = _rate(counts["history"], lambda n: catalog.history(f"{tag}/h/{n % 100}"))
    return rates


def measure(backend: str, rounds: int, counts: dict[str, int]) -> dict[str, float]:
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ferryman-catbench-") as tmp:
        server = None
        if backend == "sqlite":
            catalog = _sqlite_catalog(Path(tmp) / "catalog.db")
        else:
            from tests.postgres import PostgresServer

            from ferryman.catalog.location import parse_catalog_url
            from ferryman.catalog.open import open_catalog

            server = PostgresServer(durable=True)
            catalog = open_catalog(parse_catalog_url(server.url(server.new_schema())))
        try:
            for r in range(rounds):
                results.append(one_round(catalog, counts, f"round{r}"))
        finally:
            catalog.close()
            if server is not None:
                server.close()
    return {op: statistics.median(rates[op] for rates in results) for op in results[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations and rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--output", default=str(REPO / "bench/results/catalog-latest.json"))
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    scale = 1 if args.quick else 4
    counts = {"record": 500 * scale, "lookup": 5000 * scale, "history": 5000 * scale}
    table: dict[str, dict[str, float]] = {}
    for backend in args.backends.split(","):
        table[backend] = measure(backend, rounds, counts)
    print(f"{'backend':<12}{'record/s':>12}{'lookup/s':>12}{'history/s':>12}")
    for backend, rates in table.items():
        print(f"{backend:<12}" + "".join(f"{rates[op]:>12,.0f}" for op in rates))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": rounds, "counts": counts, "rates": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

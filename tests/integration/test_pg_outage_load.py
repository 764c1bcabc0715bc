"""PostgreSQL stopped and started again while a server is under load.

Readers and writers hammer a server of two workers on a PostgreSQL catalog;
the database goes away for a few seconds and comes back. Reads never fail
and are byte-exact throughout; writes answer 503 `catalog_unavailable` with
Retry-After while it is away (never 500, never a hang), and 201/204 again
once it is back, without a restart; afterwards what is stored, what the
catalog records and the Repr-Digest served agree for every key written.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from pathlib import Path

from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.open import open_catalog
from tests.postgres import PASSWORD, PostgresServer
from tests.serverproc import pattern, wait_until
from tests.writing import Writable, put, repr_digest

READ_KEYS = [f"/r/{i}.bin" for i in range(4)]
WRITE_KEYS = [f"/w/{i}.bin" for i in range(3)]
OUTAGE = 3.0  # seconds PostgreSQL stays away


def test_postgresql_away_and_back_under_load_loses_no_read_and_no_write(
    writable: Writable, tmp_path: Path
) -> None:
    pg = PostgresServer()
    try:
        url = pg.url(pg.new_schema())
        srv = writable("--catalog", url, "--workers", "2")
        originals = {key: pattern(50_000 + i, i) for i, key in enumerate(READ_KEYS)}
        for key, data in originals.items():
            assert put(srv, key, data).status == 201
        stop = threading.Event()
        reads: Counter[str] = Counter()
        writes: Counter[int] = Counter()
        problems: list[str] = []
        written: dict[str, bytes] = {}  # the last body each key was answered 201/204 for
        lock = threading.Lock()

        def read_all_the_time(n: int) -> None:
            while not stop.is_set():
                key = READ_KEYS[n % len(READ_KEYS)]
                got = srv.request("GET", key, timeout=10)
                if got.status != 200 or got.body != originals[key]:
                    problems.append(f"GET {key}: {got.status}, {len(got.body)} bytes")
                reads["ok"] += 1
                n += 1

        def write_all_the_time(n: int) -> None:
            key = WRITE_KEYS[n]
            version = 0
            while not stop.is_set():
                version += 1
                body = f"{key} version {version}".encode() * 100
                start = time.monotonic()
                # One writer per key: what was answered last is what must be stored.
                answer = put(srv, key, body)
                took = time.monotonic() - start
                writes[answer.status] += 1
                if answer.status in (201, 204):
                    with lock:
                        written[key] = body
                elif answer.status == 503:
                    error = json.loads(answer.body)["error"]
                    if error != "catalog_unavailable" or not answer.header("retry-after"):
                        problems.append(f"PUT {key}: 503 {error}")
                else:
                    problems.append(f"PUT {key}: {answer.status} {answer.body[:200]!r}")
                if took > 8:
                    problems.append(f"PUT {key} took {took:.1f} s")
                time.sleep(0.02)

        threads = [threading.Thread(target=read_all_the_time, args=(i,)) for i in range(4)]
        threads += [threading.Thread(target=write_all_the_time, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        try:
            assert wait_until(lambda: writes[201] + writes[204] >= 6, timeout=30)
            pg.stop()
            time.sleep(OUTAGE)
            assert wait_until(lambda: writes[503] >= 3, timeout=10), writes
            refused_while_away = writes[503]
            pg.start()
            back = writes[201] + writes[204]
            assert wait_until(lambda: writes[201] + writes[204] >= back + 6, timeout=30), writes
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert problems == [], problems[:10]
        assert refused_while_away >= 3 and reads["ok"] > 0
        assert set(writes) <= {201, 204, 503}, writes
        # Stored, catalogued and served agree for every key written.
        with open_catalog(parse_catalog_url(url)) as catalog:
            for key, body in written.items():
                got = srv.get(key)
                assert got.status == 200 and got.body == body, key
                assert got.header("repr-digest") == repr_digest(body), key
                entry = catalog.get(key.lstrip("/"))
                assert entry is not None and entry.sha256 == hashlib.sha256(body).hexdigest()
        log = srv.log_text()
        assert "Traceback" not in log and PASSWORD not in log
    finally:
        pg.close()

"""The race harness across servers: two ferryman processes on one bucket and one PostgreSQL catalog.

Each round, several clients per server send a request for the same key at
one agreed instant (the last byte of every request held back until then):
plain PUTs of different bodies, PUTs with If-Match on the current ETag,
create-only PUTs (If-None-Match: *), or PUTs against DELETEs. After every round the bucket's
object, the catalog's record and what BOTH servers serve (body, ETag,
Repr-Digest) describe one version, no intent is left, and the answers were
right: one 201 for an absent key then 204s, exactly one winner of a
conditional race, never a 500.

Then the servers' deaths: a server killed (SIGKILL) while it uploads a
large body, holding the key's lock, leaves the old object and its entry as
they were, and the other server writes the key within a bounded time (the
lock went with the dead server's connection). And the settle rule: a
server starting settles its own and old abandoned intents, never another
server's young one nor one whose lock is held.

CI runs a short version; FERRYMAN_SLOW=1 a long one.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psycopg
import pytest

from ferryman.catalog.api import Catalog
from ferryman.catalog.db import Intent, lock_number
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.open import open_catalog
from tests.faultproxy import FaultProxy, Rule
from tests.integration.test_write_races import KEY, body_for, send_at
from tests.s3server import MotoServer
from tests.serverproc import CI, ServerProcess, pattern, wait_until
from tests.writing import Writable, bearer, put, repr_digest

SLOW = os.environ.get("FERRYMAN_SLOW") == "1"
ROUNDS = 200 if SLOW else (10 if CI else 40)
PER_SERVER = 3  # clients per server each round
Answer = tuple[int, str | None]


@pytest.fixture(scope="module")
def clients() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(2 * PER_SERVER) as pool:
        yield pool


class Fleet:
    """Two servers on one bucket and one catalog, and what the harness reads of each."""

    def __init__(self, writable: Writable, moto: MotoServer, bucket: str, pg_url: str,
                 *flags: str, endpoint: str | None = None) -> None:  # fmt: skip
        self.moto, self.bucket, self.pg_url = moto, bucket, pg_url
        common = ("--catalog", pg_url, *flags)
        source = f"s3://{bucket}"
        self.one = writable(*common, root=source, s3_endpoint=endpoint or moto.url,
                            state=Path("state-one"))  # fmt: skip
        self.two = writable(*common, root=source, s3_endpoint=moto.url, state=Path("state-two"))
        self.servers: tuple[ServerProcess, ...] = (self.one, self.two)

    def stored(self, key: str = KEY) -> bytes | None:
        status, body = self.moto.get_object(self.bucket, key)
        return body if status == 200 else None

    def catalog(self) -> Catalog:
        return open_catalog(parse_catalog_url(self.pg_url))

    def check_agreement(self, key: str = KEY) -> bytes | None:
        """The bucket, the catalog and both servers (two connections each) agree."""
        stored = self.stored(key)
        with self.catalog() as catalog:
            entry = catalog.get(key)
            assert catalog.intents() == [], "a write left its intent behind"
        if stored is None:
            assert entry is None or entry.deleted, f"catalog says live for a missing key: {entry}"
            return None
        assert entry is not None and not entry.deleted, "stored but not catalogued"
        assert (entry.size, entry.sha256) == (len(stored), hashlib.sha256(stored).hexdigest())
        for srv in self.servers:
            for _ in range(2):
                got = srv.get(f"/{key}")
                assert got.status == 200 and got.body == stored
                assert got.header("etag") == entry.etag, "served another version's ETag"
                assert got.header("repr-digest") == repr_digest(stored)
        return stored


def race(pool: ProcessPoolExecutor, fleet: Fleet, sends: list[tuple[dict[str, str], bytes]],
         methods: tuple[str, ...] = ("PUT",)) -> list[Answer]:  # fmt: skip
    """Send each (headers, body), alternating between the servers (and between `methods`),
    all at one instant."""
    at = time.monotonic() + 0.4
    futures = [
        pool.submit(send_at, fleet.servers[n % 2].port, methods[n // 2 % len(methods)],
                    headers, body, at)
        for n, (headers, body) in enumerate(sends)
    ]  # fmt: skip
    return [f.result(timeout=120) for f in futures]


def test_one_key_written_from_two_servers_stays_consistent(
    writable: Writable, moto_server: MotoServer, s3_bucket: str, pg_url: str,
    clients: ProcessPoolExecutor,
) -> None:  # fmt: skip
    fleet = Fleet(writable, moto_server, s3_bucket, pg_url)
    n = 2 * PER_SERVER
    for round_no in range(ROUNDS):
        kind = round_no % 4
        before = fleet.stored()
        bodies = [body_for(round_no, c) for c in range(n)]
        if kind == 0:  # plain PUTs: all succeed, one 201 if the key was absent
            results = race(clients, fleet, [({}, b) for b in bodies])
            statuses = sorted(s for s, _ in results)
            assert set(statuses) <= {201, 204}, statuses
            assert statuses.count(201) == (1 if before is None else 0), statuses
        elif kind == 1:  # If-Match on the version there: one winner across both servers
            assert before is not None
            etag = fleet.one.get(f"/{KEY}").header("etag")
            assert etag is not None
            results = race(clients, fleet, [({"If-Match": etag}, b) for b in bodies])
            assert sorted(s for s, _ in results) == [204] + [412] * (n - 1), results
        elif kind == 3:  # PUTs against DELETEs, each server sending both
            results = race(clients, fleet, [({}, b) for b in bodies], methods=("PUT", "DELETE"))
            assert all(s in (201, 204, 404) for s, _ in results), results
            fleet.check_agreement()
            continue
        else:  # create-only on an absent key: one creator across both servers
            gone = fleet.two.request("DELETE", f"/{KEY}", bearer())
            assert gone.status == 204, gone.status
            results = race(clients, fleet, [({"If-None-Match": "*"}, b) for b in bodies])
            assert sorted(s for s, _ in results) == [201] + [412] * (n - 1), results
        winners = [b for b, (s, _) in zip(bodies, results, strict=True) if s in (201, 204)]
        stored = fleet.check_agreement()
        assert stored in winners, "the stored body is none of the winners'"
    with fleet.catalog() as catalog:
        history = catalog.history(KEY)
    # Every successful write left one history row: none was lost between two servers.
    assert len(history) >= ROUNDS
    for srv in fleet.servers:
        assert "Traceback" not in srv.log_text()


def advisory_locks(pg_url: str) -> int:
    """How many advisory locks are held in the database now (by anyone)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    return int(row[0]) if row else 0


def kill_server(srv: ServerProcess) -> None:
    """SIGKILL, the arbiter first (so that nothing restarts the workers), then its workers."""
    workers = srv.child_pids()
    srv.signal(signal.SIGKILL)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    srv.wait(10)


def test_a_server_killed_mid_upload_leaves_the_old_version_and_frees_the_key(
    writable: Writable, moto_server: MotoServer, s3_bucket: str, pg_url: str,
) -> None:  # fmt: skip
    with FaultProxy(moto_server.url) as proxy:
        # Server one reaches the bucket through the proxy, which holds its upload of the
        # key: it dies with the body received, its intent recorded and the key locked.
        fleet = Fleet(writable, moto_server, s3_bucket, pg_url, endpoint=proxy.url)
        old = pattern(100_000, 3)
        assert put(fleet.two, f"/{KEY}", old).status == 201
        assert advisory_locks(pg_url) == 0
        proxy.add(Rule(method="PUT", path=KEY, latency=300, times=None))
        big = pattern(3 * 1024 * 1024, 11)
        raw = (f"PUT /{KEY} HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer()['Authorization']}"
               f"\r\nContent-Length: {len(big)}\r\n\r\n").encode()  # fmt: skip
        with socket.create_connection(("127.0.0.1", fleet.one.port), timeout=30) as sock:
            sock.sendall(raw)
            for start in range(0, len(big), 256 * 1024):  # slowly: a piece at a time
                sock.sendall(big[start : start + 256 * 1024])
                time.sleep(0.05)
            assert wait_until(lambda: advisory_locks(pg_url) == 1, timeout=30), (
                "server one never took the key's lock"
            )
            kill_server(fleet.one)
        proxy.stop()  # the held upload is never forwarded
    fleet.servers = (fleet.two,)
    # The dead server's connection went, and PostgreSQL released its lock with it.
    assert wait_until(lambda: advisory_locks(pg_url) == 0, timeout=20)
    assert fleet.stored() == old
    with fleet.catalog() as catalog:
        entry = catalog.get(KEY)
        assert entry is not None and entry.sha256 == hashlib.sha256(old).hexdigest()
        (left,) = catalog.intents()  # server one's, until a write of the key settles it
        assert left.path == KEY and left.size == len(big)
    new = pattern(50_000, 7)
    answer = put(fleet.two, f"/{KEY}", new)  # a lock still held would be 503 after 30 s
    assert answer.status == 204, answer.body
    assert fleet.check_agreement() == new


def test_a_server_settles_its_own_and_abandoned_intents_but_no_write_in_progress(
    writable: Writable, moto_server: MotoServer, s3_bucket: str, pg_url: str,
) -> None:  # fmt: skip
    """Intents of keys whose writes never reached the bucket: settling one drops it."""
    scope = f"s3://{s3_bucket}"
    hour_ago = time.time_ns() - 3600 * 10**9
    with open_catalog(parse_catalog_url(pg_url)) as catalog:
        for key, server in [("young", "another"), ("old", "another"), ("locked", "another"),
                            ("legacy", None)]:  # fmt: skip
            catalog.begin(Intent(key, "put", '"etag"', 5, "0" * 64, None, server=server))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE intents SET at_ns = %s WHERE path <> 'young'", (hour_ago,))
        # A write of "locked" in progress on a server that is alive: its lock is held.
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_number(scope, "locked"),))
        srv = writable("--catalog", pg_url, root=scope, s3_endpoint=moto_server.url)

        def paths() -> list[str]:
            with open_catalog(parse_catalog_url(pg_url)) as catalog:
                return [i.path for i in catalog.intents()]

        assert wait_until(lambda: paths() == ["locked", "young"], timeout=20), paths()
        log = srv.log_text()
        assert "interrupted PUT of old" in log and "interrupted PUT of legacy" in log
        # The key "locked" is being written elsewhere: this server's own write waits, then
        # answers 503 with Retry-After, never 500.
        busy = writable("--catalog", pg_url, "--lock-timeout", "0.5", root=scope,
                        s3_endpoint=moto_server.url, state=Path("state-b"))  # fmt: skip
        answer = put(busy, "/locked", b"bytes")
        assert answer.status == 503 and answer.header("retry-after") == "1", answer.status
        conn.execute("SELECT pg_advisory_unlock(%s)", (lock_number(scope, "locked"),))
    assert put(busy, "/locked", b"bytes").status == 201
    assert paths() == ["young"]

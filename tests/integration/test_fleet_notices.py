"""Two ferryman servers on one bucket and one PostgreSQL catalog learn of each other's writes.

Each server has its own block cache and `--cache-revalidate 1h`: only a
notification (or, after a lost listener, the trust floor) can make one serve
what the other wrote. A change made in the bucket behind ferryman's back sends
no notification; the tests use one as a control that the cache really serves
its copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.postgres import PostgresServer
from tests.rawhttp import RawResponse
from tests.s3server import MotoServer
from tests.serverproc import ServerProcess, pattern, wait_until
from tests.writing import Writable, delete, put

LISTENING = "fleet changes: listening on"
LOST = "fleet changes: not listening on"
BACK = "fleet changes: listening again on"
FRESH_WITHIN = 1.0  # seconds after the writer's answer


class Fleet:
    """Servers `a` and `b` on one bucket and one catalog, each with a cache of its own."""

    def __init__(self, writable: Writable, moto: MotoServer, pg_url: str, workers: int) -> None:
        self.moto = moto
        self.bucket = moto.create_bucket()
        self.workers = workers
        self.a = self._start(writable, pg_url, "a")
        self.b = self._start(writable, pg_url, "b")
        for srv in (self.a, self.b):
            assert said(srv, LISTENING), srv.log_text()

    def _start(self, writable: Writable, pg_url: str, name: str) -> ServerProcess:
        cache = writable.tmp_path / f"cache-{name}"
        return writable(
            "--catalog", pg_url, "--cache-dir", str(cache), "--cache-revalidate", "1h",
            "--workers", str(self.workers), root=f"s3://{self.bucket}", s3_endpoint=self.moto.url,
            state=Path(f"state-{name}"),
        )  # fmt: skip

    def behind_the_back(self, key: str, data: bytes) -> None:
        """A new version in the bucket that no server hears of. (The tests start each
        object so too: a notification of its first write could reach `b` after `b`
        cached it, and rightly drop that copy, which `cached_by_b` would take for a
        cache that does not serve.)"""
        self.moto.put_object(self.bucket, key, data)


def said(srv: ServerProcess, line: str) -> bool:
    """Whether `srv` logs `line` within 15 s (the filler's listener has no readiness line)."""
    return wait_until(lambda: line in srv.log_text(), 15)


@pytest.fixture
def fleet(writable: Writable, moto_server: MotoServer, pg_url: str) -> Fleet:
    """Two workers each: a drop by the filler must reach every worker of the server."""
    return Fleet(writable, moto_server, pg_url, workers=2)


def served_within(srv: ServerProcess, target: str, check: Callable[[RawResponse], bool],
                  seconds: float = FRESH_WITHIN) -> RawResponse:  # fmt: skip
    """Poll `srv` for up to `seconds`; the first answer `check` accepts, else the last one."""
    deadline = time.monotonic() + seconds
    while True:
        got = srv.get(target)
        if check(got) or time.monotonic() >= deadline:
            return got
        time.sleep(0.02)


def body_is(data: bytes) -> Callable[[RawResponse], bool]:
    return lambda r: r.status == 200 and r.body == data


def serves(srv: ServerProcess, target: str, data: bytes) -> None:
    got = srv.get(target)
    assert got.status == 200
    assert got.body == data


def cached_by_b(fleet: Fleet, key: str, first: bytes, target: str | None = None) -> None:
    """`b` holds `first` in its cache: a newer version made behind its back is not served."""
    target = target or "/" + key
    serves(fleet.b, target, first)
    fleet.behind_the_back(key, first[::-1])
    serves(fleet.b, target, first)  # the cached copy (revalidation is an hour away)
    serves(fleet.b, target, first)  # the warm path too


def test_a_put_through_one_server_is_served_by_the_other_within_a_second(fleet: Fleet) -> None:
    old, new = pattern(300_000), pattern(700_001, 7)
    fleet.behind_the_back("shared/x.bin", old)
    cached_by_b(fleet, "shared/x.bin", old)
    assert put(fleet.a, "/shared/x.bin", new).status == 204
    got = served_within(fleet.b, "/shared/x.bin", body_is(new))
    assert got.status == 200
    assert got.body == new
    assert fleet.b.get("/shared/x.bin", {"Range": "bytes=5-9"}).body == new[5:10]
    for srv in (fleet.a, fleet.b):
        assert "Traceback" not in srv.log_text()


def test_a_delete_through_one_server_is_404_on_the_other_within_a_second(fleet: Fleet) -> None:
    data = pattern(100_000, 3)
    fleet.behind_the_back("gone.bin", data)
    cached_by_b(fleet, "gone.bin", data)
    assert delete(fleet.a, "/gone.bin").status == 204
    got = served_within(fleet.b, "/gone.bin", lambda r: r.status == 404)
    assert got.status == 404


def test_a_non_ascii_key_is_noticed_too(fleet: Fleet) -> None:
    target, key = "/%C3%A9t%C3%A9/%E2%9C%93.txt", "été/✓.txt"
    fleet.behind_the_back(key, b"first")
    cached_by_b(fleet, key, b"first", target)
    assert put(fleet.a, target, b"second version").status == 204
    assert served_within(fleet.b, target, body_is(b"second version")).body == b"second version"


def test_a_lost_listener_distrusts_the_cache_until_it_is_back(
    writable: Writable, moto_server: MotoServer, pg_url: str, postgres: PostgresServer
) -> None:
    # One worker each: after the return, the worker that checked the copy again
    # is the one asked, so only a notification can explain the last answer.
    fleet = Fleet(writable, moto_server, pg_url, workers=1)
    first, missed, later = pattern(200_000, 1), pattern(200_000, 2), pattern(200_000, 5)
    fleet.behind_the_back("k.bin", first)
    cached_by_b(fleet, "k.bin", first)
    killed = postgres.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'ferryman-listener'"
    )
    assert int(killed) >= 2  # a's and b's
    assert said(fleet.b, LOST), fleet.b.log_text()
    # A change whose notification nobody hears: b checks every copy cached before it
    # listens again, so it serves this one, not its cached copy.
    fleet.behind_the_back("k.bin", missed)
    serves(fleet.b, "/k.bin", missed)
    assert said(fleet.b, BACK), fleet.b.log_text()
    # Listening again: a write through a is noticed within a second once more.
    serves(fleet.b, "/k.bin", missed)
    assert put(fleet.a, "/k.bin", later).status == 204
    assert served_within(fleet.b, "/k.bin", body_is(later)).body == later
    log = fleet.b.log_text()
    assert log.count(LOST) == 1 and log.count(BACK) == 1
    assert "Traceback" not in log


def test_while_postgresql_is_away_every_use_checks_with_the_store(
    writable: Writable, moto_server: MotoServer, postgres: PostgresServer
) -> None:
    del postgres  # asked for to skip where PostgreSQL is not installed
    pg = PostgresServer()  # a cluster of its own: this test stops it
    try:
        fleet = Fleet(writable, moto_server, pg.url(pg.new_schema()), workers=1)
        fleet.behind_the_back("k.bin", b"first")
        cached_by_b(fleet, "k.bin", b"first")
        pg.stop()
        assert said(fleet.b, LOST), fleet.b.log_text()
        for n in range(3):  # not once: on every use, for as long as nobody listens
            version = pattern(50_000, 100 + n)
            fleet.behind_the_back("k.bin", version)
            serves(fleet.b, "/k.bin", version)
            serves(fleet.b, "/k.bin", version)
        pg.start()
        assert said(fleet.b, BACK), fleet.b.log_text()
        later = pattern(60_000, 9)
        # a's catalog finds the database back within a second or so (catalog/outage.py).
        assert wait_until(lambda: put(fleet.a, "/k.bin", later).status == 204, 30)
        assert served_within(fleet.b, "/k.bin", body_is(later)).body == later
        log = fleet.b.log_text()
        assert log.count(LOST) == 1 and log.count(BACK) == 1
        assert "Traceback" not in log
    finally:
        pg.close()

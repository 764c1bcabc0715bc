"""Servers and commands on a real PostgreSQL catalog (tests/postgres.py).

Writes recorded there byte-exact; two servers seeing each other's records;
migrations run once however many processes start together; the database
going away (writes answer 503 at once, reads go on) and coming back
(writes resume without a restart); audit and repair reading the same
catalog; and a password that never shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from ferryman.catalog import Catalog
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.open import open_catalog
from ferryman.catalog.schema import LATEST
from tests.integration.test_audit import audit, findings_of
from tests.integration.test_repair import repair
from tests.postgres import PASSWORD, PostgresServer
from tests.s3server import MotoServer, s3_env
from tests.serverproc import Servers, pattern, wait_until
from tests.writing import Writable, delete, put, repr_digest

T = TypeVar("T")


def opened(url: str) -> Catalog:
    return open_catalog(parse_catalog_url(url))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman.cli", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


def together(*calls: Callable[[], T]) -> list[T]:
    """Each call in a thread of its own, all started at once; their results in order."""
    results: list[T | None] = [None] * len(calls)

    def run(n: int) -> None:
        results[n] = calls[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def no_secret(text: str) -> None:
    assert PASSWORD not in text
    assert "Traceback" not in text


def test_put_get_delete_are_byte_exact_and_recorded_in_postgresql(
    writable: Writable, pg_url: str, tmp_path: Path
) -> None:
    srv = writable("--catalog", pg_url)
    data = pattern(300_001)
    assert put(srv, "/dir/a.bin", data).status == 201
    got = srv.get("/dir/a.bin")
    assert got.status == 200 and got.body == data
    assert got.header("repr-digest") == repr_digest(data)  # read back from PostgreSQL
    with opened(pg_url) as catalog:
        entry = catalog.get("dir/a.bin")
        assert entry is not None and not entry.deleted
        assert (entry.size, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert delete(srv, "/dir/a.bin").status == 204
    assert srv.get("/dir/a.bin").status == 404
    with opened(pg_url) as catalog:
        history = catalog.history("dir/a.bin")
        assert [h.deleted for h in history] == [False, True]
        assert catalog.count() == 0
    assert not (tmp_path / "state" / "catalog.db").exists()  # no SQLite file beside it
    no_secret(srv.log_text())


def test_two_servers_on_one_catalog_see_each_others_records(
    writable: Writable, pg_url: str, tmp_path: Path
) -> None:
    one = writable("--catalog", pg_url, state=Path("state-one"))
    two = writable("--catalog", pg_url, state=Path("state-two"))
    data = pattern(70_000, 5)
    assert put(one, "/shared.bin", data).status == 201
    got = two.get("/shared.bin")
    # The digest is the catalog's: `two` never wrote this file, `one` recorded it.
    assert got.body == data and got.header("repr-digest") == repr_digest(data)
    assert delete(two, "/shared.bin").status == 204
    with opened(pg_url) as catalog:
        assert [h.deleted for h in catalog.history("shared.bin")] == [False, True]
    assert put(two, "/back.bin", b"again").status == 201
    assert one.get("/back.bin").header("repr-digest") == repr_digest(b"again")


def test_migrations_run_once_however_many_processes_start_together(
    writable: Writable, pg_url: str, postgres: PostgresServer
) -> None:
    migrate = ("catalog", "migrate", "--catalog", pg_url)
    results = together(*[partial(cli, *migrate) for _ in range(4)])
    assert [r.returncode for r in results] == [0] * 4, [r.stderr for r in results]
    for result in results:
        assert result.stdout.strip().endswith(f"schema version {LATEST}")
        assert ":***@" in result.stdout
        no_secret(result.stdout + result.stderr)
    again = cli("catalog", "migrate", "--catalog", pg_url)  # nothing left to do
    assert again.returncode == 0 and again.stdout.strip().endswith(f"schema version {LATEST}")
    schema = pg_url.rpartition("%3D")[2]
    assert postgres.sql(f"SELECT value FROM {schema}.meta") == str(LATEST)  # one row, not four
    # Two servers starting together on a fresh schema: both come up and serve.
    fresh = postgres.url(postgres.new_schema())
    servers = together(
        *[partial(writable, "--catalog", fresh, state=Path(f"s{i}")) for i in range(2)]
    )
    assert len(servers) == 2
    for n, srv in enumerate(servers):
        assert put(srv, f"/n{n}", b"x").status == 201
    with opened(fresh) as catalog:
        assert catalog.schema_version == LATEST and catalog.count() == 2


def test_postgresql_going_away_refuses_writes_at_once_and_they_resume_when_it_returns(
    writable: Writable,
) -> None:
    pg = PostgresServer()
    try:
        url = pg.url(pg.new_schema())
        # A connect timeout far longer than the client waits: a write that waited for
        # the database instead of failing fast would time the client out.
        srv = writable("--catalog", url, "--catalog-connect-timeout", "60")
        data = pattern(10_000)
        assert put(srv, "/before.bin", data).status == 201
        pg.stop()
        for attempt in range(3):
            refused = put(srv, "/during.bin", b"not now")
            assert refused.status == 503, (attempt, refused.status)
            assert json.loads(refused.body)["error"] == "catalog_unavailable"
            assert int(refused.header("retry-after") or 0) >= 1
        got = srv.get("/before.bin")  # reads need no catalog
        assert got.status == 200 and got.body == data
        assert delete(srv, "/before.bin").status == 503
        assert srv.get("/before.bin").body == data  # the refused DELETE removed nothing
        assert not (writable.tmp_path / "root" / "during.bin").exists()
        pg.start()
        assert wait_until(lambda: put(srv, "/during.bin", b"now").status == 201, timeout=30)
        assert srv.get("/during.bin").body == b"now"
        with opened(url) as catalog:
            assert catalog.get("during.bin") is not None
        log = srv.log_text()
        no_secret(log)
        assert sum("is unreachable" in line for line in srv.lines) == 1, log  # said once
        assert any("answers again" in line for line in srv.lines), log
    finally:
        pg.close()


def test_audit_and_repair_use_the_postgresql_catalog(
    writable: Writable, pg_url: str, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    srv = writable("--catalog", pg_url, "--replica", str(mirror))
    data = {f"f{n}.bin": pattern(1000 * (n + 1), n) for n in range(4)}
    for name, body in data.items():
        assert put(srv, f"/{name}", body).status == 201
    srv.stop()
    root = tmp_path / "root"
    stores = [str(root), "--replica", str(mirror), "--catalog", pg_url]
    status, out = audit(*stores, "--report", str(tmp_path / "clean.json"))
    assert status == 0, out
    (root / "f2.bin").unlink()
    status, out = audit(*stores, "--report", str(tmp_path / "lost.json"))
    assert status == 1, out
    assert findings_of(tmp_path / "lost.json") == {("f2.bin", str(root), "missing")}
    status, out = repair(*stores, "--apply")
    assert status == 0, out
    assert (root / "f2.bin").read_bytes() == data["f2.bin"]
    with opened(pg_url) as catalog:
        from ferryman.catalog.copies import Copies

        events = [e.event for e in Copies(catalog).events("f2.bin") if e.store == str(root)]
        assert events[0] == "written" and events[-1] == "repaired"
    no_secret(out)


def test_a_wrong_password_stops_the_start_with_the_url_redacted(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.base_url().replace(PASSWORD, "not-the-Password")
    done = cli("serve", str(tmp_path), "--port", "0", "--catalog", url)
    assert done.returncode == 2
    assert "ferryman:***@127.0.0.1" in done.stderr and "password authentication" in done.stderr
    assert "not-the-Password" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_without_psycopg_a_postgresql_url_names_the_extra_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None; from ferryman.cli import main;"
        " sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "catalog", "migrate", "--catalog",
         "postgresql://u:hunter2@127.0.0.1:1/db"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'ferryman[postgresql]'" in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("url", ["mysql://h/db", "sqlite://relative.db", "postgresql"])
def test_a_catalog_url_of_no_known_kind_is_refused(url: str, tmp_path: Path) -> None:
    done = cli("serve", str(tmp_path), "--port", "0", "--catalog", url)
    assert done.returncode == 2 and "--catalog" in done.stderr
    assert "Traceback" not in done.stderr


def test_workers_started_while_postgresql_is_away_serve_reads_and_take_writes_when_it_returns(
    writable: Writable,
) -> None:
    pg = PostgresServer()
    try:
        srv = writable("--workers", "2", "--catalog", pg.url(pg.new_schema()))
        data = pattern(4096)
        assert put(srv, "/kept.bin", data).status == 201
        pg.stop()
        before = set(srv.child_pids())
        srv.signal(signal.SIGHUP)  # every worker replaced while the database is away
        assert wait_until(lambda: "rolling restart done" in srv.log_text(), 30), srv.log_text()
        assert wait_until(lambda: not before & set(srv.child_pids()), 40)  # the old ones drained
        for _ in range(4):  # whichever worker answers
            assert srv.get("/kept.bin").body == data
            refused = put(srv, "/new.bin", b"later")
            assert refused.status == 503 and refused.header("retry-after") is not None
        pg.start()
        assert wait_until(lambda: put(srv, "/new.bin", b"now").status in (201, 204), timeout=30)
        assert srv.get("/new.bin").body == b"now"
        no_secret(srv.log_text())
    finally:
        pg.close()


def test_a_postgresql_that_is_not_running_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = cli("serve", str(tmp_path), "--port", "0", "--catalog",
               f"postgresql://ferryman:{PASSWORD}@127.0.0.1:{port}/db")  # fmt: skip
    assert done.returncode == 2
    [line] = [line for line in done.stderr.splitlines() if "cannot start" in line]
    assert "is unreachable" in line and "Connection refused" in line
    no_secret(done.stderr)


@pytest.mark.parametrize("how", ["PGPASSWORD", "pgpass"])
def test_the_password_can_come_from_libpq_not_the_url(
    how: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    schema = postgres.new_schema()
    url = f"{postgres.base_url(password=False)}?options=-csearch_path%3D{schema}"
    env = {"PGPASSWORD": PASSWORD}
    if how == "pgpass":
        pgpass = tmp_path / ".pgpass"
        pgpass.write_text(f"127.0.0.1:{postgres.port}:postgres:ferryman:{PASSWORD}\n")
        pgpass.chmod(0o600)
        env = {"PGPASSFILE": str(pgpass)}
    done = cli("catalog", "migrate", "--catalog", url, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"catalog {url}: schema version {LATEST}"
    without = cli("catalog", "migrate", "--catalog", url, env={"PGPASSFILE": "/nonexistent"})
    assert without.returncode == 2 and "password" in without.stderr  # it was libpq's doing


def test_catalog_scan_and_show_work_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "x.bin").write_bytes(pattern(5000))
    assert cli("catalog", "scan", str(root), "--catalog", pg_url).returncode == 0
    shown = cli("catalog", "show", "d/x.bin", "--source", str(root), "--catalog", pg_url, "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["entry"]["sha256"] == hashlib.sha256(pattern(5000)).hexdigest()
    assert not (root / ".ferryman" / "catalog.db").exists()


def test_a_statement_that_waits_too_long_is_503_catalog_busy_not_a_hang(
    writable: Writable, pg_url: str, postgres: PostgresServer
) -> None:
    srv = writable("--catalog", pg_url, "--catalog-statement-timeout", "1")
    assert put(srv, "/a.txt", b"one").status == 201
    with psycopg.connect(pg_url) as blocker:  # holds the intents table: no write may begin
        blocker.execute("LOCK TABLE intents IN ACCESS EXCLUSIVE MODE")
        refused = put(srv, "/b.txt", b"two")
        assert refused.status == 503
        assert json.loads(refused.body)["error"] == "catalog_busy"
        assert srv.get("/a.txt").body == b"one"  # reads go on
    assert put(srv, "/b.txt", b"two").status == 201  # the lock gone, writes go through
    assert not any("unreachable" in line for line in srv.lines)  # busy is not down
    no_secret(srv.log_text())


def test_a_password_libpq_cannot_parse_is_not_repeated_in_the_error(tmp_path: Path) -> None:
    url = "postgresql://ferryman:Bad%zzSecret@127.0.0.1:1/db"  # not valid percent-encoding
    done = cli("catalog", "migrate", "--catalog", url)
    assert done.returncode == 2
    assert "Bad" not in done.stderr and "zzSecret" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_slow_catalog_read_for_repr_digest_does_not_hold_up_other_requests(
    writable: Writable, pg_url: str
) -> None:
    """The digest of a file not asked for yet is looked up in a thread: while PostgreSQL
    keeps that lookup waiting (the table locked), the same worker answers other requests."""
    srv = writable("--catalog", pg_url, "--catalog-statement-timeout", "60")
    slow, quick = pattern(5000, 1), pattern(6000, 2)
    assert put(srv, "/slow.bin", slow).status == 201
    assert put(srv, "/quick.bin", quick).status == 201
    assert srv.get("/quick.bin").header("repr-digest") == repr_digest(quick)  # now known
    schema = pg_url.rpartition("%3D")[2]
    with psycopg.connect(pg_url) as conn:
        conn.execute(f"LOCK TABLE {schema}.objects IN ACCESS EXCLUSIVE MODE")
        answers: list[tuple[int, str | None]] = []

        def get_slow() -> None:
            got = srv.get("/slow.bin")
            answers.append((got.status, got.header("repr-digest")))

        waiting = threading.Thread(target=get_slow)
        waiting.start()
        blocked = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        assert wait_until(lambda: conn.execute(blocked).fetchone() == (1,), timeout=20)
        got = srv.get("/quick.bin")  # one worker: its loop is free while the lookup waits
        assert got.status == 200 and got.body == quick
        assert got.header("repr-digest") == repr_digest(quick)
        assert waiting.is_alive() and not answers
        conn.rollback()  # the lock goes: the lookup goes through
    waiting.join(30)
    assert answers == [(200, repr_digest(slow))]


def test_objects_of_another_tool_get_the_postgresql_catalogs_digest_with_and_without_cache(
    ferryman: Servers, pg_url: str, moto_server: MotoServer, tmp_path: Path
) -> None:
    """An object with no digest of its own: the catalog's, looked up off the event loop,
    whether the answer comes from the store, a cold cache or a warm one."""
    bucket = moto_server.create_bucket()
    data = pattern(70_000, 4)
    moto_server.put_object(bucket, "a.bin", data)
    env = s3_env(moto_server.url)
    scan = cli("catalog", "scan", f"s3://{bucket}", "--catalog", pg_url, env=env)
    assert scan.returncode == 0, scan.stderr
    plain = ferryman("--catalog", pg_url, root=f"s3://{bucket}", env=env)
    cached = ferryman("--catalog", pg_url, "--cache-dir", str(tmp_path / "cache"),
                      root=f"s3://{bucket}", env=env)  # fmt: skip
    for srv in (plain, cached, plain, cached):
        got = srv.get("/a.bin")
        assert got.status == 200 and got.body == data
        assert got.header("repr-digest") == repr_digest(data)

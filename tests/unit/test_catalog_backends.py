"""What the two backends share and where they differ: catalog URLs and their redaction,
the migrations as PostgreSQL runs them (the same tables and columns as SQLite's),
migrations racing on one database, and the up-and-down state of a catalog server."""

from __future__ import annotations

import logging
import sqlite3
import threading
import urllib.parse
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.catalog import Catalog, CatalogUnavailable, SqliteCatalog
from ferryman.catalog.dialect import POSTGRESQL, postgresql
from ferryman.catalog.location import POSTGRESQL as PG
from ferryman.catalog.location import SQLITE, parse_catalog_url, redact, scrub
from ferryman.catalog.open import open_catalog
from ferryman.catalog.outage import Outage
from ferryman.catalog.schema import LATEST, MIGRATIONS
from ferryman.errors import ConfigError
from tests.postgres import PostgresServer
from tests.serverproc import wait_until

# What a password may hold: anything but the characters a URL cannot carry raw.
# A password that is part of the mask itself ("*", "**") cannot be told from the mask.
secret = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(
    lambda password: password not in "***"
)


@given(password=secret, user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True))
def test_a_redacted_url_never_holds_its_password(password: str, user: str) -> None:
    url = f"postgresql://{user}:{password}@db.internal:5432/files"
    shown = redact(url)
    assert shown == f"postgresql://{user}:***@db.internal:5432/files"
    query = f"postgresql://{user}@db/files?sslmode=require&password={password.replace('&', '')}"
    assert "password=***" in redact(query) and "sslmode=require" in redact(query)


@given(password=secret)
def test_a_message_quoting_the_url_loses_its_password_in_every_form(password: str) -> None:
    quoted = urllib.parse.quote(password, safe="")
    url = f"postgresql://u:{quoted}@h/db"
    text = f'invalid percent-encoded token: "{quoted}", that is "{password}"'
    assert password not in scrub(text, url) and quoted not in scrub(text, url)


def test_scrubbing_keeps_the_rest_of_the_message() -> None:
    url = "postgresql://u:s%40cr3t-Pw@h/db?password=other-Pw"
    text = 'bad token "s%40cr3t-Pw"; also s@cr3t-Pw and other-Pw'
    assert scrub(text, url) == 'bad token "***"; also *** and ***'


def test_a_url_without_a_password_is_shown_as_it_is() -> None:
    for url in ("postgresql://db/files", "postgresql://u@db:1/f?sslmode=verify-full",
                "postgresql:///files?host=/run/postgresql"):  # fmt: skip
        assert redact(url) == url


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("sqlite:///var/lib/ferryman/catalog.db", SQLITE, "/var/lib/ferryman/catalog.db"),
        ("postgresql://u:p@h/db", PG, "postgresql://u:p@h/db"),
        ("postgres://h/db", PG, "postgres://h/db"),
    ],
)
def test_catalog_urls_name_their_backend(url: str, kind: str, target: str) -> None:
    location = parse_catalog_url(url)
    assert (location.kind, location.target) == (kind, target)
    assert "p@" not in location.shown or kind == SQLITE


@pytest.mark.parametrize(
    "url", ["catalog.db", "sqlite://relative.db", "sqlite:///a?mode=ro", "mysql://u:pw@h/db"]
)
def test_other_urls_are_refused_without_showing_a_password(url: str) -> None:
    with pytest.raises(ConfigError, match="--catalog") as info:
        parse_catalog_url(url)
    assert "pw" not in str(info.value)


def test_every_migration_renders_for_postgresql_without_sqlite_syntax() -> None:
    assert len(POSTGRESQL) == LATEST
    for text in POSTGRESQL:
        assert "AUTOINCREMENT" not in text and "RAISE(ABORT" not in text
    with pytest.raises(ValueError, match="SQLite syntax"):
        postgresql("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, x INTEGER) STRICT;"
                   " INSERT OR IGNORE INTO t VALUES (1, 1);")  # fmt: skip


def test_both_backends_have_the_same_tables_and_columns(
    pg_url: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    SqliteCatalog(tmp_path / "c.db").close()
    with closing(sqlite3.connect(tmp_path / "c.db")) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        sqlite_side = {
            (table, column[1])
            for table in tables
            if table != "sqlite_sequence"
            for column in conn.execute(f"PRAGMA table_info({table})")
        }
    open_catalog(parse_catalog_url(pg_url)).close()
    schema = pg_url.rpartition("%3D")[2]
    rows = postgres.sql(
        "SELECT table_name || ' ' || column_name FROM information_schema.columns"
        f" WHERE table_schema = '{schema}'"
    )
    pg_side = {tuple(line.split(" ")) for line in rows.splitlines()}
    assert pg_side == sqlite_side
    assert len(sqlite_side) > 40


def test_servers_migrating_one_database_at_once_each_find_it_done(
    pg_url: str, postgres: PostgresServer
) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        start.wait()
        try:
            with open_catalog(parse_catalog_url(pg_url)) as catalog:
                assert catalog.schema_version == LATEST
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    schema = pg_url.rpartition("%3D")[2]
    assert postgres.sql(f"SELECT count(*) FROM {schema}.meta") == "1"
    assert len(MIGRATIONS) == LATEST


def test_an_outage_fails_fast_probes_and_says_each_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answering = threading.Event()
    probes: list[bool] = []

    def probe() -> None:
        probes.append(answering.is_set())
        if not answering.is_set():
            raise OSError("connection refused\n  is the server running?")

    outage = Outage("postgresql://u:***@h/db", probe, interval=0.01)
    caplog.set_level(logging.INFO, "ferryman.catalog")
    try:
        outage.check()  # up: nothing
        outage.went_down("connection lost")
        outage.went_down("connection lost again")  # already down: not said twice
        with pytest.raises(CatalogUnavailable, match="is unreachable") as info:
            outage.check()
        assert "h/db" in str(info.value)
        assert wait_until(lambda: len(probes) >= 3)
        assert outage.down  # every probe failed so far
        answering.set()
        assert wait_until(lambda: not outage.down)
        outage.check()
    finally:
        outage.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is unreachable" in m for m in messages) == 1
    assert sum("answers again after" in m for m in messages) == 1
    assert all("\n" not in m for m in messages)


def test_deleting_one_path_from_many_connections_at_once_logs_it_once(
    catalog: Catalog, tmp_path: Path
) -> None:
    """On PostgreSQL each thread stands for a server of its own (the pool gives each
    its own connection): the update decides which one deletes."""
    catalog.record("k", size=1, sha256="a" * 64, mtime_ns=1, etag='"1"')
    start = threading.Barrier(6)
    results: list[object] = []

    def delete() -> None:
        start.wait()
        results.append(catalog.mark_deleted("k"))

    threads = [threading.Thread(target=delete) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert all(getattr(r, "deleted", False) for r in results)
    assert [h.deleted for h in catalog.history("k")] == [False, True]
    assert len({getattr(r, "updated_ns", 0) for r in results}) == 1  # all saw the one deletion

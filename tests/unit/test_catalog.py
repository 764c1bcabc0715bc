"""The catalog on real SQLite files: round trips, sharing between instances, threads and
processes, migrations, refusals, and a dict-based reference model driven by hypothesis.
What every backend must do runs on a real PostgreSQL too (the `catalog` fixture)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ferryman.catalog
from ferryman.catalog import (
    Catalog,
    CatalogEntry,
    CatalogError,
    Intent,
    SqliteCatalog,
    db,
    sqlitebackend,
    sqlitefile,
)
from ferryman.catalog.api import WRITE
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.open import open_catalog
from ferryman.catalog.schema import LATEST, MIGRATIONS, check_path, statements
from ferryman.errors import FerrymanError
from tests.postgres import PostgresServer


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def record(cat: Catalog, path: str, n: int) -> CatalogEntry:
    """Version `n` of `path`: every field derived from n, so a mixed-up row shows."""
    return cat.record(path, size=n, sha256=sha(n), mtime_ns=n * 1000, etag=f'"v{n}"')


def raw(path: Path) -> closing[sqlite3.Connection]:
    """A plain sqlite3 connection, for what the API must not be able to do."""
    return closing(sqlite3.connect(path, isolation_level=None))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "catalog.db"


@pytest.fixture
def sqlite_catalog(db_path: Path) -> Iterator[SqliteCatalog]:
    with SqliteCatalog(db_path) as cat:
        yield cat


def test_public_surface() -> None:
    assert ferryman.catalog.__all__ == [
        "Catalog",
        "CatalogEntry",
        "CatalogError",
        "CatalogUnavailable",
        "Intent",
        "SqliteCatalog",
    ]
    assert issubclass(CatalogError, FerrymanError)


def test_a_new_catalog_is_empty_at_the_latest_version(catalog: Catalog) -> None:
    assert catalog.schema_version == LATEST == len(MIGRATIONS)
    assert catalog.count() == 0
    assert list(catalog.entries(include_deleted=True)) == []
    assert catalog.get("a") is None
    assert catalog.history("a") == []
    assert catalog.mark_deleted("a") is None
    assert catalog.history("a") == []
    assert catalog.intents() == []


def test_a_new_sqlite_catalog_is_in_wal_mode(sqlite_catalog: SqliteCatalog, db_path: Path) -> None:
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_each_connection_is_durable_and_waits_for_the_lock(sqlite_catalog: SqliteCatalog) -> None:
    # White box: these are settings of each connection, not of the file.
    database = sqlite_catalog._db
    assert isinstance(database, sqlitebackend.SqliteDatabase)
    for conn, query_only in ((database._writer, 0), (database._reader, 1)):
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == sqlitefile.BUSY_TIMEOUT_MS
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA query_only").fetchone()[0] == query_only


def test_reads_do_not_queue_behind_a_write_waiting_for_another_worker(
    sqlite_catalog: SqliteCatalog, db_path: Path
) -> None:
    catalog = sqlite_catalog
    database = catalog._db
    assert isinstance(database, sqlitebackend.SqliteDatabase)
    record(catalog, "a", 1)
    done = threading.Event()
    with raw(db_path) as other:
        other.execute("BEGIN IMMEDIATE")  # another worker holds the write lock

        def write() -> None:
            record(catalog, "b", 2)
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        deadline = time.monotonic() + 5
        while not database._write_lock.locked():  # the write is now waiting for `other`
            assert time.monotonic() < deadline
            threading.Event().wait(0.001)
        assert catalog.get("a") == catalog.history("a")[0]
        assert catalog.count() == 1
        assert not done.is_set()  # the reads did not wait for the write
        other.execute("COMMIT")
        writer.join()
    assert done.is_set()
    assert catalog.count() == 2


def test_a_write_lock_held_too_long_is_a_catalog_error(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlitefile, "BUSY_TIMEOUT_MS", 50)
    with SqliteCatalog(db_path) as cat, raw(db_path) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(CatalogError, match="is locked") as info:
            record(cat, "a", 1)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        other.execute("ROLLBACK")
        assert cat.get("a") is None
        record(cat, "a", 1)  # the failed transaction left nothing behind
        assert cat.history("a") == [cat.get("a")]


def test_record_get_update_history(catalog: Catalog) -> None:
    first = record(catalog, "dir/a.txt", 1)
    assert first == CatalogEntry("dir/a.txt", 1, sha(1), 1000, '"v1"', False, first.updated_ns)
    assert catalog.get("dir/a.txt") == first
    second = record(catalog, "dir/a.txt", 2)
    assert second.updated_ns >= first.updated_ns
    assert catalog.get("dir/a.txt") == second
    assert catalog.history("dir/a.txt") == [first, second]
    assert catalog.count() == 1
    assert catalog.get("dir") is None  # a prefix is not an entry


def test_mark_deleted_keeps_the_last_version_and_the_history(catalog: Catalog) -> None:
    live = record(catalog, "a", 7)
    record(catalog, "b", 8)
    gone = catalog.mark_deleted("a")
    assert gone is not None
    assert (gone.deleted, gone.size, gone.sha256, gone.etag) == (True, 7, sha(7), '"v7"')
    assert catalog.get("a") == gone
    assert catalog.count() == 1
    assert [e.path for e in catalog.entries()] == ["b"]
    assert [(e.path, e.deleted) for e in catalog.entries(include_deleted=True)] == [
        ("a", True),
        ("b", False),
    ]
    assert catalog.mark_deleted("a") == gone  # already deleted: nothing changes
    assert catalog.history("a") == [live, gone]
    again = record(catalog, "a", 9)
    assert catalog.get("a") == again
    assert not again.deleted
    assert catalog.history("a") == [live, gone, again]
    assert catalog.count() == 2


def test_entries_walk_in_pages_in_code_point_order_holding_no_transaction(
    catalog: Catalog, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PAGE_SIZE", 3)
    paths = ["b", "a/z", "a", "a/b", "é", "Z", "a b", "e", "a/b/c", "ü/1", "日本"]
    for n, path in enumerate(paths):
        record(catalog, path, n)
    catalog.mark_deleted("e")
    walk = catalog.entries()
    seen = [next(walk)]
    if isinstance(catalog, SqliteCatalog):
        with raw(db_path) as conn:  # a full checkpoint succeeds only if no reader holds a snapshot
            assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    seen += list(walk)
    assert [e.path for e in seen] == sorted(set(paths) - {"e"})
    assert [e.path for e in catalog.entries(include_deleted=True)] == sorted(paths)
    assert all(e == catalog.get(e.path) for e in seen)


def test_two_instances_on_one_file_see_each_others_writes(db_path: Path) -> None:
    with SqliteCatalog(db_path) as one, SqliteCatalog(db_path) as two:
        written = record(one, "x", 1)
        assert two.get("x") == written
        deleted = two.mark_deleted("x")
        assert one.get("x") == deleted
        assert one.history("x") == two.history("x") == [written, deleted]


def test_eight_threads_of_200_writes_on_two_connections_all_land(db_path: Path) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)
    with SqliteCatalog(db_path) as one, SqliteCatalog(db_path) as two:

        def write(t: int) -> None:
            cat = one if t % 2 else two
            try:
                start.wait()
                for i in range(200):
                    record(cat, f"t{t}/{i:03}", t * 1000 + i)
                    if i % 4 == 0:  # a read then a write in one transaction
                        cat.mark_deleted(f"t{t}/{i:03}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert one.count() == two.count() == 1200
        assert len(list(two.entries(include_deleted=True))) == 1600
        for entry in one.entries():
            t, i = entry.path[1:].split("/")
            assert entry.sha256 == sha(int(t) * 1000 + int(i))


# A worker process: waits for "go" on stdin, opens the catalog, records `count`
# versions under `prefix` (as `record` does) and prints "half" after `signal_at`.
CHILD = """
import hashlib, sys
from ferryman.catalog import SqliteCatalog
db, prefix, count, signal_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.stdin.readline()
with SqliteCatalog(db) as cat:
    for i in range(count):
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        cat.record(f"{prefix}/{i:03}", size=i, sha256=digest, mtime_ns=i * 1000, etag=f'"v{i}"')
        if i == signal_at:
            print("half", flush=True)
"""


def child(db_path: Path, prefix: str, count: int, signal_at: int = -1) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", CHILD, str(db_path), prefix, str(count), str(signal_at)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def reap(proc: subprocess.Popen[str]) -> int:
    """Wait for a child (killing it after 30 s); its exit status. Never leaves it running."""
    try:
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode


def test_another_process_writes_while_this_one_reads_and_writes(
    sqlite_catalog: SqliteCatalog, db_path: Path
) -> None:
    catalog = sqlite_catalog
    proc = child(db_path, "child", 200, signal_at=99)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "half\n"
        assert catalog.count() >= 100  # the child's committed writes are visible here
        counts = []
        for i in range(100):
            record(catalog, f"parent/{i:03}", i)
            counts.append(catalog.count())
            walk = list(catalog.entries())
            paths = [e.path for e in walk]
            assert paths == sorted(set(paths))
            assert all(e.sha256 == sha(e.size) and e.etag == f'"v{e.size}"' for e in walk)
    finally:
        status = reap(proc)
    assert status == 0
    assert counts == sorted(counts)
    assert catalog.count() == 300
    last = catalog.get("child/199")
    assert last is not None
    assert last == catalog.history("child/199")[0]
    assert (last.size, last.sha256, last.mtime_ns, last.etag) == (199, sha(199), 199000, '"v199"')


def test_workers_booting_at_once_create_one_catalog(db_path: Path) -> None:
    procs = [child(db_path, f"w{k}", 10) for k in range(8)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    assert [reap(proc) for proc in procs] == [0] * 8
    with SqliteCatalog(db_path) as cat:
        assert cat.count() == 80
        assert cat.schema_version == LATEST


def test_a_migration_another_worker_did_meanwhile_is_not_repeated(db_path: Path) -> None:
    """Deterministic version of the race above: the version is read again under the write lock.

    The file starts as a released v1 catalog (a new one is created whole, at LATEST)."""
    with raw(db_path) as conn:
        conn.executescript(V1_SQL)
        conn.execute("UPDATE meta SET value = 1 WHERE key = 'schema_version'")

    class Racing(sqlite3.Connection):
        raced = False

        def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
            if sql == "BEGIN IMMEDIATE" and not self.raced:
                self.raced = True
                SqliteCatalog(db_path).close()  # the other worker takes the file to LATEST first
            return super().execute(sql, parameters)

    with closing(sqlite3.connect(db_path, isolation_level=None, factory=Racing)) as conn:
        assert sqlitefile.migrate(conn, str(db_path)) == LATEST
        assert isinstance(conn, Racing) and conn.raced


# Migration 1 as released. Existing databases were made by this text; the
# migration list must keep it unchanged.
V1_SQL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('schema_version', 0);

CREATE TABLE objects (
    path       TEXT PRIMARY KEY NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    sha256     TEXT NOT NULL CHECK (length(sha256) = 64),
    mtime_ns   INTEGER NOT NULL,
    etag       TEXT NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    updated_ns INTEGER NOT NULL
);

CREATE TABLE history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    path     TEXT NOT NULL REFERENCES objects (path),
    size     INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    etag     TEXT NOT NULL,
    deleted  INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    at_ns    INTEGER NOT NULL
);
CREATE INDEX history_by_path ON history (path, id);
"""


def test_released_migrations_are_unchanged() -> None:
    assert MIGRATIONS[0] == V1_SQL


def test_a_hand_made_v1_database_is_migrated_with_its_data(db_path: Path) -> None:
    with raw(db_path) as conn:
        conn.executescript(V1_SQL)
        conn.execute("UPDATE meta SET value = 1 WHERE key = 'schema_version'")
        row = ("old/file", 5, sha(5), 5000, '"v5"')
        conn.execute("INSERT INTO objects VALUES (?, ?, ?, ?, ?, 0, 42)", row)
        conn.execute("INSERT INTO history VALUES (NULL, ?, ?, ?, ?, ?, 0, 42)", row)
    old = CatalogEntry("old/file", 5, sha(5), 5000, '"v5"', False, 42)
    with SqliteCatalog(db_path) as cat:
        assert cat.schema_version == LATEST
        assert cat.get("old/file") == old
        assert cat.history("old/file") == [old]
        new = record(cat, "old/file", 6)
        assert cat.history("old/file") == [old, new]
    with raw(db_path) as conn:  # v2: the history is append-only in the database itself
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM history")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE history SET size = 0")
        with pytest.raises(sqlite3.IntegrityError, match="never removed"):
            conn.execute("DELETE FROM objects")


def test_a_newer_schema_is_refused_not_downgraded(db_path: Path) -> None:
    SqliteCatalog(db_path).close()
    with raw(db_path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (LATEST + 1,))
    with pytest.raises(CatalogError, match=f"schema version {LATEST + 1}, newer than"):
        SqliteCatalog(db_path)
    with raw(db_path) as conn:
        assert conn.execute("SELECT value FROM meta").fetchone()[0] == LATEST + 1


@pytest.mark.parametrize(
    "content",
    [b"hello, world\n" * 500, bytes(range(256)) * 32, b"SQLite format 2\x00" + b"\x01" * 4096],
)
def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(db_path: Path, content: bytes) -> None:
    db_path.write_bytes(content)
    with pytest.raises(CatalogError, match="is not a SQLite database") as info:
        SqliteCatalog(db_path)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert db_path.read_bytes() == content


def test_a_corrupt_catalog_raises_catalog_error(db_path: Path) -> None:
    with SqliteCatalog(db_path) as cat:
        for i in range(50):
            record(cat, f"p/{i}", i)
    data = bytearray(db_path.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[page : 3 * page] = b"\xa5" * (2 * page)  # every page after the schema page
    db_path.write_bytes(bytes(data))
    with pytest.raises(CatalogError, match=r"corrupt|not a SQLite database"):
        cat = SqliteCatalog(db_path)
        try:
            list(cat.entries(include_deleted=True))
            cat.history("p/1")
        finally:
            cat.close()


def test_another_sqlite_database_is_not_taken_for_a_catalog(db_path: Path) -> None:
    with raw(db_path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(CatalogError, match="not a ferryman catalog"):
        SqliteCatalog(db_path)


def test_an_empty_file_is_refused_never_made_into_a_new_catalog(db_path: Path) -> None:
    """SQLite would take it for a new database: a truncated catalog would start over."""
    db_path.write_bytes(b"")
    with pytest.raises(CatalogError, match=r"is empty \(0 bytes\)"):
        SqliteCatalog(db_path)
    assert db_path.read_bytes() == b""
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["catalog.db"]


def test_what_is_not_a_regular_file_is_refused_without_blocking(db_path: Path) -> None:
    os.mkfifo(db_path)  # opening a FIFO to read would wait for a writer
    with pytest.raises(CatalogError, match="is not a regular file"):
        SqliteCatalog(db_path)
    db_path.unlink()
    db_path.mkdir()
    with pytest.raises(CatalogError, match="is not a regular file"):
        SqliteCatalog(db_path)


def test_a_new_catalog_appears_whole_and_leaves_nothing_beside_it(db_path: Path) -> None:
    SqliteCatalog(db_path).close()
    assert db_path.read_bytes()[:16] == b"SQLite format 3\x00"
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["catalog.db"]
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_a_missing_directory_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot open catalog"):
        SqliteCatalog(tmp_path / "missing" / "catalog.db")
    assert not (tmp_path / "missing").exists()


def test_a_closed_catalog_refuses_calls(db_path: Path) -> None:
    cat = SqliteCatalog(db_path)
    cat.close()
    cat.close()
    with pytest.raises(CatalogError, match="closed"):
        cat.get("a")


BAD_PATHS = ["", "/a", "a\x00b", ".", "..", "a/./b", "a/../b", "../a", "a/", "a//b", "\udcff"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_paths_are_refused_everywhere(catalog: Catalog, path: str) -> None:
    with pytest.raises(ValueError):
        record(catalog, path, 1)
    for call in (catalog.get, catalog.history, catalog.mark_deleted):
        with pytest.raises(ValueError):
            call(path)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("sha256", sha(1).upper(), ValueError),
        ("sha256", sha(1)[:-1], ValueError),
        ("sha256", "g" * 64, ValueError),
        ("size", -1, ValueError),
        ("size", 2**63, ValueError),
        ("size", "1", TypeError),
        ("size", True, TypeError),
        ("mtime_ns", 2**64, ValueError),
        ("etag", "abc", ValueError),
        ("etag", '"a"b"', ValueError),
        ("etag", "", ValueError),
    ],
)
def test_bad_fields_are_refused(
    catalog: Catalog, field: str, value: object, error: type[Exception]
) -> None:
    fields: dict[str, Any] = {"size": 1, "sha256": sha(1), "mtime_ns": -5, "etag": 'W/"x"'}
    fields[field] = value
    with pytest.raises(error):
        catalog.record("a", **fields)
    assert catalog.get("a") is None


# A reference model: a dict of current versions and a dict of version lists.
PATHS = st.sampled_from(["a", "a/b", "b", "é/ü", "z z"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("record"), PATHS, st.integers(0, 5)),
        st.tuples(st.just("delete"), PATHS, st.just(0)),
    ),
    max_size=25,
)
Version = tuple[int, str, int, str, bool]


def behaves_like_a_dict_of_versions(cat: Catalog, ops: list[tuple[str, str, int]]) -> None:
    current: dict[str, Version] = {}
    history: dict[str, list[Version]] = {}

    def strip(entry: CatalogEntry | None) -> Version | None:
        if entry is None:
            return None
        return (entry.size, entry.sha256, entry.mtime_ns, entry.etag, entry.deleted)

    for op, path, n in ops:
        if op == "record":
            current[path] = (n, sha(n), n * 1000, f'"v{n}"', False)
            history.setdefault(path, []).append(current[path])
            assert strip(record(cat, path, n)) == current[path]
        else:
            if path in current and not current[path][4]:
                current[path] = (*current[path][:4], True)
                history[path].append(current[path])
            assert strip(cat.mark_deleted(path)) == current.get(path)
    for path in ["a", "a/b", "b", "é/ü", "z z"]:
        assert strip(cat.get(path)) == current.get(path)
        versions = cat.history(path)
        assert [strip(v) for v in versions] == history.get(path, [])
        entry = cat.get(path)
        if entry is not None:
            assert entry.updated_ns == versions[-1].updated_ns
    assert cat.count() == sum(not v[4] for v in current.values())
    assert [e.path for e in cat.entries(include_deleted=True)] == sorted(current)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_the_catalog_behaves_like_a_dict_of_versions(ops: list[tuple[str, str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, SqliteCatalog(Path(tmp) / "c.db") as cat:
        behaves_like_a_dict_of_versions(cat, ops)


@pytest.fixture(scope="module")
def pg_model_catalog(postgres: PostgresServer) -> Iterator[Catalog]:
    """One PostgreSQL catalog for every example, emptied before each."""
    with open_catalog(parse_catalog_url(postgres.url(postgres.new_schema()))) as cat:
        yield cat


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_the_postgresql_catalog_behaves_like_a_dict_of_versions(
    pg_model_catalog: Catalog, ops: list[tuple[str, str, int]]
) -> None:
    with pg_model_catalog.use(WRITE) as tx:  # TRUNCATE fires no row trigger: a fresh start
        tx.execute("TRUNCATE objects, history, intents")
    behaves_like_a_dict_of_versions(pg_model_catalog, ops)


# -- intents and file identity (schema v3) ------------------------------------------


def test_an_intent_is_cleared_by_the_record_of_its_outcome(catalog: Catalog) -> None:
    put = Intent("a/x.bin", "put", "2049:77", 5, sha(5), ".ferryman-upload-1-ab")
    catalog.begin(put)
    [kept] = catalog.intents()
    assert (kept.path, kept.op, kept.ident, kept.size, kept.sha256, kept.staged) == (
        "a/x.bin", "put", "2049:77", 5, sha(5), ".ferryman-upload-1-ab",
    )  # fmt: skip
    assert kept.pid == os.getpid() and kept.at_ns > 0
    entry = catalog.record("a/x.bin", size=5, sha256=sha(5), mtime_ns=1, etag='"e"', ino=77,
                           ctime_ns=9)  # fmt: skip
    assert catalog.intents() == [] and (entry.ino, entry.ctime_ns) == (77, 9)
    assert catalog.get("a/x.bin") == entry and catalog.history("a/x.bin") == [entry]
    catalog.begin(Intent("a/x.bin", "delete", "2049:77"))
    catalog.begin(Intent("b", "delete", "e"))  # never catalogued: nothing to mark, still cleared
    deleted = catalog.mark_deleted("a/x.bin")
    assert deleted is not None and deleted.deleted and deleted.ino == 77
    assert catalog.mark_deleted("b") is None
    assert catalog.intents() == []


def test_one_intent_per_path_the_latest_wins(catalog: Catalog) -> None:
    catalog.begin(Intent("p", "put", "1:1", 1, sha(1)))
    catalog.begin(Intent("p", "delete", "1:1"))
    catalog.begin(Intent("q", "delete", "1:2"))
    assert [(i.path, i.op) for i in catalog.intents()] == [("p", "delete"), ("q", "delete")]
    catalog.drop_intent("p")
    assert [i.path for i in catalog.intents()] == ["q"]


@pytest.mark.parametrize(
    "intent",
    [
        Intent("/abs", "put", "1:1"),
        Intent("ok", "rename", "1:1"),
        Intent("ok", "put", "1:1", -1, sha(1)),
        Intent("ok", "put", "1:1", 1, "short"),
    ],
)
def test_bad_intents_are_refused(catalog: Catalog, intent: Intent) -> None:
    with pytest.raises((ValueError, CatalogError)):
        catalog.begin(intent)
    assert catalog.intents() == []


def test_a_v2_database_gains_identity_and_intents_and_keeps_its_rows(db_path: Path) -> None:
    with raw(db_path) as conn:
        conn.executescript(V1_SQL)
        for statement in statements(MIGRATIONS[1]):
            conn.execute(statement)
        conn.execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'")
        row = ("old/file", 5, sha(5), 5000, '"v5"')
        conn.execute("INSERT INTO objects VALUES (?, ?, ?, ?, ?, 0, 42)", row)
    with SqliteCatalog(db_path) as cat:
        assert cat.schema_version == LATEST
        old = cat.get("old/file")
        assert old is not None and (old.ino, old.ctime_ns) == (None, None)
        assert cat.intents() == []


def test_a_single_use_url_is_used_once_given_back_once_and_forgotten_when_expired(
    catalog: Catalog,
) -> None:
    from ferryman.catalog.db import UrlUsed

    far = int(time.time()) + 3600
    digest = sha(1)
    assert not catalog.url_used(digest)
    catalog.begin(Intent("a", "put", "1:1", 1, sha(1)), once=(digest, far))
    assert catalog.url_used(digest)
    with pytest.raises(UrlUsed):
        catalog.begin(Intent("a", "put", "1:2", 1, sha(1)), once=(digest, far))
    assert [i.ident for i in catalog.intents()] == ["1:1"]  # the refused one left nothing
    catalog.drop_intent("a", release=digest)  # the change failed: the URL may be used again
    assert not catalog.url_used(digest) and catalog.intents() == []
    catalog.begin(Intent("a", "delete", "1:1"), once=(digest, int(time.time()) - 5))
    catalog.begin(Intent("b", "delete", "1:3"), once=(sha(2), far))  # prunes the expired one
    assert not catalog.url_used(digest) and catalog.url_used(sha(2))


@given(st.lists(st.sampled_from(["a", "é", ".", "..", "", "...", ".a", "a.", "\x00", "\ud800"]),
                min_size=1, max_size=5).map("/".join))  # fmt: skip
def test_a_catalog_path_is_refused_exactly_when_a_segment_is_empty_dot_or_dotdot(
    path: str,
) -> None:
    """check_path's substring tests agree with the rule they stand for, segment by segment."""
    segments = path.split("/")
    bad = (
        any(s in ("", ".", "..") for s in segments)
        or "\x00" in path
        or any("\ud800" <= c <= "\udfff" for c in path)
    )
    if bad:
        with pytest.raises(ValueError):
            check_path(path)
    else:
        check_path(path)

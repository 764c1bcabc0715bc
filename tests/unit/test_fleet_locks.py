"""Write locks across servers (Catalog.key_lock), their numbers, and the server id intents carry."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.catalog import Catalog
from ferryman.catalog.api import KeyBusy
from ferryman.catalog.db import Intent, lock_number
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.open import open_catalog
from ferryman.serverid import FILE, server_id

keys = st.text(min_size=1, max_size=40)


@given(scope=keys, key=keys)
def test_a_lock_number_is_a_signed_64_bit_integer_fixed_by_scope_and_key(
    scope: str, key: str
) -> None:
    number = lock_number(scope, key)
    assert -(2**63) <= number < 2**63
    assert lock_number(scope, key) == number


@given(key=keys)
def test_one_key_in_two_stores_is_two_locks(key: str) -> None:
    assert lock_number("s3://one", key) != lock_number("s3://two", key)
    assert lock_number("s3://one", key) != lock_number("s3://one", key + "x")


def test_the_server_id_is_made_once_and_kept(tmp_path: Path) -> None:
    first = server_id(tmp_path)
    assert len(first) == 24 and first == server_id(tmp_path)
    assert (tmp_path / FILE).read_text().strip() == first
    assert [p.name for p in tmp_path.iterdir()] == [FILE]  # no draft left


def test_workers_starting_together_agree_on_one_id(tmp_path: Path) -> None:
    ids: list[str] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        ids.append(server_id(tmp_path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1


def test_a_damaged_server_id_is_an_error_not_a_new_id(tmp_path: Path) -> None:
    (tmp_path / FILE).write_text("\n")
    with pytest.raises(OSError, match="no valid server id"):
        server_id(tmp_path)


def test_an_intent_keeps_the_server_that_recorded_it(catalog: Catalog) -> None:
    catalog.begin(Intent("a.bin", "put", "i1", 3, "0" * 64, None, server="abc"))
    catalog.begin(Intent("b.bin", "delete", "i2"))
    found = {i.path: i.server for i in catalog.intents()}
    assert found == {"a.bin": "abc", "b.bin": None}


def test_on_sqlite_the_key_lock_takes_nothing(catalog: Catalog) -> None:
    async def twice() -> None:
        async with catalog.key_lock("s", "k", wait=0), catalog.key_lock("s", "k", wait=0):
            pass  # one server per SQLite file: the record lock orders its workers

    if "postgresql" in catalog.location:
        pytest.skip("PostgreSQL's lock is exclusive (next test)")
    asyncio.run(twice())


def test_on_postgresql_one_holder_at_a_time_and_released_at_the_end(pg_url: str) -> None:
    """Two catalogs are two servers: each has its own lock connection."""
    one = open_catalog(parse_catalog_url(pg_url))
    two = open_catalog(parse_catalog_url(pg_url))

    async def scenario() -> None:
        async with one.key_lock("s3://b", "k", wait=1):
            with pytest.raises(KeyBusy):
                async with two.key_lock("s3://b", "k", wait=0.2):
                    pass
            async with two.key_lock("s3://b", "other", wait=0):
                pass  # another key is free
            async with two.key_lock("s3://c", "k", wait=0):
                pass  # the same key of another store too
        async with two.key_lock("s3://b", "k", wait=0):
            pass  # released when the holder's block ended

    try:
        asyncio.run(scenario())
    finally:
        one.close()
        two.close()


def test_a_lock_connection_ended_by_the_server_is_replaced_and_the_catalog_stays_up(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends the session holding a lock (pg_terminate_backend): the lock is gone
    with it, its release says so, and the next write gets a new connection at once."""
    one = open_catalog(parse_catalog_url(pg_url))
    two = open_catalog(parse_catalog_url(pg_url))
    holder = "SELECT pid FROM pg_locks WHERE locktype = 'advisory'"
    with psycopg.connect(pg_url, autocommit=True) as admin:

        async def scenario() -> None:
            async with one.key_lock("s3://b", "k", wait=1):
                row = admin.execute(holder).fetchone()
                assert row is not None
                admin.execute("SELECT pg_terminate_backend(%s)", row)
                async with two.key_lock("s3://b", "k", wait=5):
                    pass  # the lock went with the session
            async with one.key_lock("s3://b", "k", wait=1):
                one.ready()  # not taken for an outage of the catalog
                assert admin.execute(holder).fetchone() is not None

        try:
            asyncio.run(scenario())
        finally:
            one.close()
            two.close()
    assert "could not release a write lock" in caplog.text

"""What a change tells the fleet: payloads (pure), the trust floor's file, the listener's
choices, and PostgreSQL delivering a catalog change's notification once it commits."""

from __future__ import annotations

import asyncio
import math
import select
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.app.staging import store_id
from ferryman.cache.freshness import UNTRUSTED, Floor
from ferryman.cache.noticenames import listens, server_origin, store_name
from ferryman.cache.notices import ChangeListener, backoff
from ferryman.catalog.changes import (
    CHANNEL,
    MAX_PAYLOAD,
    Notice,
    changed_stores,
    decode,
    encode,
)
from ferryman.catalog.copies import CopyEvent
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.open import open_catalog
from ferryman.config import Config

SHA = "ab" * 32
texts = st.text(st.characters(exclude_categories=["Cs"]))  # what a Python str can encode


@given(origin=texts.filter(lambda t: len(t) <= 64), store=texts, key=texts)
def test_a_payload_fits_is_ascii_and_names_the_key_or_every_key(
    origin: str, store: str, key: str
) -> None:
    payload = encode(origin, store, key)
    assert payload.isascii()
    assert len(payload.encode()) <= MAX_PAYLOAD < 8000
    notice = decode(payload)
    assert notice is not None
    assert notice.origin == origin
    if notice.key is not None:
        assert notice == Notice(origin, store, key)
    else:  # too long to name: every key of the store (or of every store)
        assert notice.store in (store, "")
        assert notice.concerns(store)


@given(key=st.text(st.characters(min_codepoint=0x80, exclude_categories=["Cs"]), min_size=1))
def test_a_non_ascii_key_comes_back_whole_while_it_fits(key: str) -> None:
    notice = decode(encode("o", "s3://b/p", key))
    assert notice is not None
    if len(key) <= 600:  # at most 12 ASCII bytes per code point escaped
        assert notice.key == key


def test_a_key_too_long_to_name_becomes_every_key_of_its_store() -> None:
    notice = decode(encode("o", "s3://b", "k" * 8000))
    assert notice == Notice("o", "s3://b", None)
    assert decode(encode("o", "s3://b", "k" * 7900)) == Notice("o", "s3://b", "k" * 7900)
    assert decode(encode("o", "s3://" + "b" * 9000, "k")) == Notice("o", "", None)


@given(st.one_of(texts, st.binary().map(lambda b: b.decode("latin-1"))))
def test_anything_else_on_the_channel_is_ignored_not_an_error(payload: str) -> None:
    notice = decode(payload)
    assert notice is None or isinstance(notice, Notice)


@pytest.mark.parametrize("payload", [
    "", "null", "[]", '{"v": 2, "o": "", "s": "", "k": "a"}', '{"v": 1, "o": 1, "s": "", "k": "a"}',
    '{"v": 1, "o": "", "s": "", "k": 5}', '{"v": 1, "o": "", "s": ""}', '{"v": true}',
])  # fmt: skip
def test_foreign_payloads_decode_to_nothing(payload: str) -> None:
    assert decode(payload) is None


def test_the_changed_stores_are_those_whose_copy_changed_once_each() -> None:
    events = [CopyEvent("k", "s3://a", "written"), CopyEvent("k", "s3://r", "write_failed"),
              CopyEvent("k", "s3://a", "deleted"), CopyEvent("k", "/srv", "repaired"),
              CopyEvent("k", "s3://v", "verified")]  # fmt: skip
    assert changed_stores(events) == ["s3://a", "/srv"]
    assert changed_stores([]) == [""]  # named no store: every listener acts on it
    assert Notice("o", "", "k").concerns("s3://a")
    assert not Notice("o", "s3://b", "k").concerns("s3://a")


@pytest.mark.parametrize("source", ["s3://bucket", "s3://bucket/", "s3://bucket/pre/fix/"])
def test_a_listener_names_its_store_as_the_writes_name_it(source: str) -> None:
    assert store_name(Config(source=source)) == store_id(source)


def test_backoff_grows_to_its_cap() -> None:
    waits = [backoff(n) for n in range(40)]
    assert all(0 < w <= 5.0 for w in waits)
    assert backoff(0) <= 0.25 and backoff(30) >= 2.5


# -- the trust floor ---------------------------------------------------------------------


def test_the_floor_is_shared_through_its_file(tmp_path: Path) -> None:
    reader = Floor(tmp_path)
    assert reader.value() == UNTRUSTED  # no filler yet: trust nothing
    writer = Floor(tmp_path, writable=True)
    for value in (UNTRUSTED, 0.0, 1765000000.25):
        writer.set(value)
        assert reader.value() == value
    again = Floor(tmp_path, writable=True)  # a restarted filler keeps the same file
    again.set(42.0)
    assert reader.value() == 42.0
    for floor in (reader, writer, again):
        floor.close()


def test_a_torn_floor_is_not_trusted(tmp_path: Path) -> None:
    writer = Floor(tmp_path, writable=True)
    writer.set(10.0)
    (tmp_path / "fleet.floor").write_bytes(bytes(16))  # value 0 without its complement
    assert math.isinf(Floor(tmp_path).value())
    writer.close()


# -- the listener's choices --------------------------------------------------------------


class Dropped:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def __call__(self, key: str) -> None:
        self.keys.append(key)


def listener(tmp_path: Path, drop: Dropped, now: float = 100.0) -> ChangeListener:
    floor = Floor(tmp_path, writable=True)
    floor.set(50.0)
    return ChangeListener("postgresql://u:secret@h/db", store="s3://mine", origin="me",
                          floor=floor, drop=drop, connect_timeout=1,
                          clock=lambda: now)  # fmt: skip


def test_the_listener_drops_keys_of_its_store_from_other_servers(tmp_path: Path) -> None:
    drop = Dropped()
    heard = listener(tmp_path, drop)
    assert heard.location == "postgresql://u:***@h/db"

    async def hear() -> None:
        for payload in (
            encode("other", "s3://mine", "a/é"),
            encode("me", "s3://mine", "own"),
            encode("other", "s3://theirs", "b"),
            encode("", "", "c"),
            "junk",
        ):
            heard.handle(payload)  # fmt: skip
        await asyncio.sleep(0)

    asyncio.run(hear())
    assert drop.keys == ["a/é", "c"]
    assert heard.floor.value() == 50.0


def test_a_notice_of_every_key_raises_the_floor_to_now(tmp_path: Path) -> None:
    drop = Dropped()
    heard = listener(tmp_path, drop, now=123.0)
    heard.handle(encode("other", "s3://mine", "k" * 9000))
    assert heard.floor.value() == 123.0 and drop.keys == []


# -- PostgreSQL: delivered when the change commits -----------------------------------------


def _heard(conn: psycopg.Connection[object], wait: float) -> list[str]:
    select.select([conn.fileno()], [], [], wait)
    return [n.payload for n in conn.notifies(timeout=0.01)]


def test_a_catalog_change_is_announced_once_it_commits_and_a_read_is_not(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as listening:
        listening.execute(f"LISTEN {CHANNEL}")
        settings = parse_catalog_url(pg_url)
        with open_catalog(settings, origin="srv1") as catalog:
            catalog.record("d/ü.bin", size=1, sha256=SHA, mtime_ns=1, etag='"e"',
                           copies=[CopyEvent("d/ü.bin", "s3://b", "written")])  # fmt: skip
            catalog.mark_deleted("never/recorded")
            heard = [decode(p) for p in _heard(listening, 5)]
            assert heard == [Notice("srv1", "s3://b", "d/ü.bin"),
                             Notice("srv1", "", "never/recorded")]  # fmt: skip
            with pytest.raises(ValueError):  # refused before anything is written
                catalog.record("bad", size=-1, sha256=SHA, mtime_ns=1, etag='"e"')
            catalog.get("d/ü.bin")  # reads announce nothing
            assert _heard(listening, 0.3) == []


@pytest.mark.parametrize(("catalog", "cache", "expected"), [
    (None, "/var/cache/ferryman", False),  # SQLite: one server, nothing to hear
    ("sqlite:///var/lib/ferryman/catalog.db", "/var/cache/ferryman", False),
    ("postgresql://db.internal/ferryman", None, False),  # no cache: nothing to drop
    ("postgresql://db.internal/ferryman", "/var/cache/ferryman", True),
])  # fmt: skip
def test_only_a_cache_in_front_of_a_postgresql_catalog_listens(
    catalog: str | None, cache: str | None, expected: bool
) -> None:
    config = Config(source="s3://bucket", catalog=catalog, cache_dir=cache)
    assert listens(config) is expected


def test_a_server_is_named_the_same_in_every_process_and_apart_from_others() -> None:
    one = Config(source="s3://bucket", cache_dir="/var/cache/one")
    assert server_origin(one) == server_origin(Config(source="s3://b2", cache_dir="/var/cache/one"))
    assert server_origin(one) != server_origin(Config(source="s3://bucket", cache_dir="/var/c/2"))
    assert len(server_origin(one)) == 16
    assert server_origin(Config(source="s3://bucket")) == ""  # no cache: nothing to skip

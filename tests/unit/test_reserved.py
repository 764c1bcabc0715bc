"""The reserved `/-/` prefix: which paths it holds, who may scrape, /-/ready's checks and
its one-second memory, the audit's findings as metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from ferryman.app.readiness import Readiness, directory_check
from ferryman.app.reserved import is_loopback, is_reserved, scrape_refusal
from ferryman.catalog import SqliteCatalog
from ferryman.catalog.runs import Check, Runs, StoreProgress, latest_audit
from ferryman.metrics.scrape import AuditCollector, render
from ferryman.stores.base import Unavailable


@pytest.mark.parametrize(
    ("path", "reserved"),
    [(b"/-/health", True), (b"/-/", True), (b"/-", True), (b"/-/x/y", True),
     (b"/%2D/metrics", True), (b"/%2d", True), (b"/-%2Fready", True),
     (b"/-a", False), (b"/a/-/health", False), (b"/", False), (b"/%41", False),
     (b"/--/x", False)],
)  # fmt: skip
def test_reserved_paths(path: bytes, reserved: bool) -> None:
    assert is_reserved(path) is reserved


@given(st.text(alphabet="abc-/%2D", max_size=12))
def test_a_path_is_reserved_when_its_decoded_first_segment_is_a_dash(text: str) -> None:
    from urllib.parse import unquote_to_bytes

    path = ("/" + text).encode()
    first = unquote_to_bytes(path)[1:].split(b"/")[0]
    decoded_has_more = b"/" in unquote_to_bytes(path)[1:]
    assert is_reserved(path) is (first == b"-" and (decoded_has_more or
                                                    unquote_to_bytes(path) == b"/-"))  # fmt: skip


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.1", False), ("192.0.2.7", False), ("::ffff:192.0.2.7", False), ("2001:db8::1", False),
     ("-", False), ("", False)],
)  # fmt: skip
def test_loopback_peers(peer: str, loopback: bool) -> None:
    assert is_loopback(peer) is loopback


TOKEN = "s3cret-scrape-token"


@pytest.mark.parametrize(
    ("peer", "authorization", "token", "status"),
    [
        ("127.0.0.1", None, None, None),  # loopback: always
        ("::1", "Bearer wrong", TOKEN, None),
        ("192.0.2.7", None, None, 403),  # no token configured: loopback only
        ("192.0.2.7", f"Bearer {TOKEN}", None, 403),
        ("192.0.2.7", None, TOKEN, 401),  # a token is configured: ask for it
        ("192.0.2.7", f"Basic {TOKEN}", TOKEN, 401),
        ("192.0.2.7", "Bearer ", TOKEN, 401),
        ("192.0.2.7", "Bearer wrong", TOKEN, 403),
        ("192.0.2.7", f"Bearer {TOKEN}x", TOKEN, 403),
        ("192.0.2.7", f"Bearer {TOKEN}", TOKEN, None),
        ("192.0.2.7", f"bearer {TOKEN}", TOKEN, None),
    ],
)
def test_who_may_scrape(peer: str, authorization: str | None, token: str | None,
                        status: int | None) -> None:  # fmt: skip
    refusal = scrape_refusal(peer, authorization, token)
    assert (refusal.status if refusal else None) == status
    if status == 401:
        assert refusal is not None and dict(refusal.headers)["WWW-Authenticate"].startswith(
            "Bearer"
        )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ready_answers_are_kept_a_second() -> None:
    calls = []

    async def store() -> str | None:
        calls.append("store")
        return None if len(calls) < 3 else "gone"

    clock = Clock()
    readiness = Readiness({"store": store}, timeout=1.0, clock=clock)

    async def probes() -> list[tuple[bool, list[str]]]:
        seen = [await readiness.state() for _ in range(50)]  # one round for all of them
        clock.now += 0.5
        seen.append(await readiness.state())
        clock.now += 0.6
        seen.append(await readiness.state())  # a second passed: checked again
        clock.now += 1.1
        seen.append(await readiness.state())
        return seen

    seen = asyncio.run(probes())
    assert len(calls) == 3 and readiness.rounds == 3
    assert seen[0] == (True, []) and seen[50] == (True, []) and seen[51] == (True, [])
    assert seen[52] == (False, ["store: gone"])


def test_a_check_that_hangs_is_a_reason_and_is_not_started_again() -> None:
    started = []
    release = asyncio.Event()

    async def stuck() -> str | None:
        started.append(1)
        await release.wait()
        return None

    async def failing() -> str | None:
        raise Unavailable("connection refused")

    async def fine() -> str | None:
        return None

    clock = Clock()
    readiness = Readiness({"catalog": stuck, "store": failing, "cache": fine}, timeout=0.05,
                          clock=clock)  # fmt: skip

    async def rounds() -> list[tuple[bool, list[str]]]:
        first = await readiness.state()
        clock.now += 2
        second = await readiness.state()  # the stuck check still runs: waited on, not redone
        release.set()
        await asyncio.sleep(0)
        clock.now += 2
        third = await readiness.state()
        return [first, second, third]

    first, second, third = asyncio.run(rounds())
    assert first == (False, ["catalog: no answer within 0.05s",
                             "store: Unavailable: connection refused"])  # fmt: skip
    assert second == first
    assert third == (False, ["store: Unavailable: connection refused"])
    assert len(started) == 2  # once for the first two rounds, once for the third


def test_the_directory_check_sees_a_source_moved_away_and_back(tmp_path: Path) -> None:
    import os

    source = tmp_path / "source"
    source.mkdir()
    fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    try:
        check = directory_check(str(source), fd)
        assert asyncio.run(check()) is None
        source.rename(tmp_path / "away")
        assert "No such file or directory" in (asyncio.run(check()) or "")
        source.mkdir()  # another directory in its place is not the one being served
        assert "was replaced" in (asyncio.run(check()) or "")
        source.rmdir()
        (tmp_path / "away").rename(source)
        assert asyncio.run(check()) is None
    finally:
        os.close(fd)


def test_the_latest_finished_audit_becomes_metrics(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    try:
        assert latest_audit(catalog) is None
        runs = Runs(catalog)
        old = runs.start("audit", {"n": 1})
        runs.record(old, "s", StoreProgress("z", 1), [Check("s", "a", "missing")])
        runs.finish(old)
        new = runs.start("audit", {"n": 2})
        findings = [Check("s", "a", "missing"), Check("s", "b", "zero_byte"),
                    Check("s", "c", "zero_byte"), Check("t", "c", "digest_mismatch")]  # fmt: skip
        runs.record(new, "s", StoreProgress("z", 10), findings)
        finished_ns = runs.finish(new)
        unfinished = runs.start("audit", {"n": 3})  # still running: not reported
        runs.record(unfinished, "s", StoreProgress("a", 0), [Check("s", "x", "unexpected")])
        families = {f.name: f for f in AuditCollector(catalog).collect()}
        counts = {s.labels["kind"]: s.value for s in families["ferryman_audit_findings"].samples}
        assert counts == {"missing": 1, "zero_byte": 2, "digest_mismatch": 1}
        [when] = families["ferryman_audit_last_finished_timestamp_seconds"].samples
        assert when.value == pytest.approx(finished_ns / 1e9)
        # And through a whole scrape's text.
        empty = tmp_path / "metrics"  # no process wrote values: only the catalog's
        empty.mkdir()
        text = render(str(empty), catalog).decode()
        parsed = {f.name for f in text_string_to_metric_families(text)}
        assert {
            "ferryman_audit_findings",
            "ferryman_audit_last_finished_timestamp_seconds",
        } <= parsed
    finally:
        catalog.close()


def test_a_catalog_that_cannot_be_read_leaves_the_audit_out_of_the_scrape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    catalog.close()  # every use now raises CatalogError
    empty = tmp_path / "metrics"
    empty.mkdir()
    text = render(str(empty), catalog).decode()
    assert "ferryman_audit" not in text
    assert "the latest audit could not be read" in caplog.text
    caplog.clear()
    render(str(empty), catalog)
    assert "could not be read" not in caplog.text  # once per outage, not once per scrape

"""MemberCopies: one copy per member, shared by every lease, gone after the last.

Jobs here write known bytes into a real spool (tmp_path) instead of
decompressing an archive (that is extract_member's test, in
test_archive_index.py); a gate holds a job until the test lets it finish,
so waiters can be made to pile up on it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.app.archive_copies import Lease, MemberCopies, Refusal
from ferryman.app.spool import LOCK_NAME, Spool, SpoolFull
from ferryman.errors import HttpError


def spooled(spool: Spool) -> list[str]:
    if not os.path.isdir(spool.directory):
        return []
    return sorted(name for name in os.listdir(spool.directory) if name != LOCK_NAME)


class Job:
    """Writes `data` into a reserved spool file, once `gate` is open."""

    def __init__(self, spool: Spool, data: bytes, *, gate: threading.Event | None = None,
                 refusal: Refusal | None = None) -> None:  # fmt: skip
        self.spool = spool
        self.data = data
        self.gate = gate
        self.refusal = refusal
        self.runs = 0
        self.closed = 0
        self.stopped = False

    def run(self, stop: threading.Event) -> tuple[int, str] | Refusal:
        self.runs += 1
        if self.gate is not None:
            self.gate.wait(10)
        if stop.is_set():
            self.stopped = True
            return Refusal(503, "stopped", "")
        if self.refusal is not None:
            return self.refusal
        try:
            fd, name = self.spool.reserve(len(self.data))
        except SpoolFull as exc:
            return Refusal(503, "spool_full", str(exc), for_room=True)
        os.pwrite(fd, self.data, 0)
        return fd, name

    def close(self) -> None:
        self.closed += 1


def starter(job: Job) -> Callable[[], Job]:
    """What a lease calls to start `job`."""
    return lambda: job


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(str(tmp_path / "spool"), keep=0)


async def settle() -> None:
    """Let callbacks and finished threads be seen by the loop."""
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def test_concurrent_leases_share_one_copy_and_the_last_release_removes_it(spool: Spool) -> None:
    async def run() -> None:
        copies = MemberCopies(spool)
        gate = threading.Event()
        jobs: list[Job] = []

        def start() -> Job:
            jobs.append(Job(spool, b"member bytes", gate=gate))
            return jobs[-1]

        waiting = [asyncio.ensure_future(copies.lease("k", start)) for _ in range(10)]
        await settle()
        assert not any(w.done() for w in waiting)  # all wait for the one job
        gate.set()
        leases = await asyncio.gather(*waiting)
        assert len(jobs) == 1 and jobs[0].runs == 1 and jobs[0].closed == 1
        assert len({lease.fd for lease in leases}) == 1
        assert os.pread(leases[0].fd, 100, 0) == b"member bytes"
        assert len(spooled(spool)) == 1
        for lease in leases[:-1]:
            lease.release()
            lease.release()  # a second release of the same lease counts for nothing
        assert len(spooled(spool)) == 1  # one transfer still uses it
        leases[-1].release()
        assert spooled(spool) == [] and len(copies) == 0

    asyncio.run(run())


def test_an_unused_copy_is_kept_for_the_next_request_then_removed(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"), keep=0.3)

    async def run() -> None:
        copies = MemberCopies(spool, kept=2)
        jobs: list[Job] = []

        def start() -> Job:
            jobs.append(Job(spool, b"x" * 10))
            return jobs[-1]

        first = await copies.lease("k", start)
        first.release()
        assert len(spooled(spool)) == 1 and copies.unused == 1
        again = await copies.lease("k", start)
        assert len(jobs) == 1 and again.fd == first.fd and copies.unused == 0
        again.release()
        await asyncio.sleep(0.6)
        assert spooled(spool) == [] and len(copies) == 0
        for key in ("a", "b", "c"):  # at most `kept` unused copies: the oldest goes
            (await copies.lease(key, start)).release()
        assert copies.unused == 2 and len(spooled(spool)) == 2
        assert "a" not in copies._copies

    asyncio.run(run())


def test_a_refusal_reaches_every_waiter_as_its_own_error(spool: Spool) -> None:
    async def run() -> None:
        copies = MemberCopies(spool)
        gate = threading.Event()
        refusal = Refusal(500, "bad_archive", "damaged", (("X-Why", "test"),))
        job = Job(spool, b"", gate=gate, refusal=refusal)
        waiting = [asyncio.ensure_future(copies.lease("k", lambda: job)) for _ in range(3)]
        await settle()
        gate.set()
        errors = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(e, HttpError) and e.status == 500 for e in errors)
        assert len({id(e) for e in errors}) == 3  # never one instance raised thrice
        assert job.runs == 1 and len(copies) == 0 and spooled(spool) == []
        fine = Job(spool, b"ok")
        lease = await copies.lease("k", lambda: fine)  # the next request tries again
        assert fine.runs == 1
        lease.release()

    asyncio.run(run())


def test_a_refusal_for_room_drops_unused_copies_and_tries_again(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"), max_size=1000, keep=60)

    async def run() -> None:
        copies = MemberCopies(spool)
        (await copies.lease("a", lambda: Job(spool, b"a" * 600))).release()
        assert copies.unused == 1
        job = Job(spool, b"b" * 600)
        lease = await copies.lease("b", lambda: job)
        assert job.runs == 2  # refused once for room, then fitted
        assert len(spooled(spool)) == 1 and os.pread(lease.fd, 1, 0) == b"b"
        held = await copies.lease("b", lambda: Job(spool, b""))  # in use: never dropped
        with pytest.raises(HttpError) as refused:
            await copies.lease("c", lambda: Job(spool, b"c" * 600))
        assert (refused.value.status, refused.value.error) == (503, "spool_full")
        assert len(spooled(spool)) == 1
        lease.release()
        held.release()

    asyncio.run(run())


def test_a_cancelled_last_waiter_stops_the_job(spool: Spool) -> None:
    async def run() -> None:
        copies = MemberCopies(spool)
        gate = threading.Event()
        job = Job(spool, b"never", gate=gate)
        one = asyncio.ensure_future(copies.lease("k", lambda: job))
        two = asyncio.ensure_future(copies.lease("k", lambda: job))
        await settle()
        one.cancel()
        await settle()
        assert len(copies) == 1  # another request still waits
        two.cancel()
        await settle()
        assert len(copies) == 0  # nobody waits: the next request starts anew
        gate.set()
        await asyncio.gather(*copies._jobs)  # the job's task ends after it closed the job
        assert job.closed == 1 and job.stopped and spooled(spool) == []

    asyncio.run(run())


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=40))
def test_files_follow_leases_exactly(tmp_path_factory: pytest.TempPathFactory,
                                     steps: list[tuple[bool, int]]) -> None:  # fmt: skip
    """Any order of leases and releases: one file per member in use, none for the others,
    and a job only when a member goes from unused to used."""
    spool = Spool(str(tmp_path_factory.mktemp("spool") / "spool"), keep=0)

    async def run() -> None:
        copies = MemberCopies(spool)
        held: dict[int, list[Lease]] = {k: [] for k in range(4)}
        runs = expected_runs = 0
        for take, key in steps:
            if take:
                if not held[key]:
                    expected_runs += 1
                job = Job(spool, b"%d" % key)
                held[key].append(await copies.lease(key, starter(job)))
                runs += job.runs
            elif held[key]:
                held[key].pop().release()
            in_use = {k for k, leases in held.items() if leases}
            assert len(spooled(spool)) == len(in_use) == len(copies)
            for k in in_use:
                assert os.pread(held[k][0].fd, 8, 0) == b"%d" % k
        assert runs == expected_runs
        for leases in held.values():
            for lease in leases:
                lease.release()
        assert spooled(spool) == []

    asyncio.run(run())

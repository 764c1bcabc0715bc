"""Multipart uploads in progress: their records in the catalog (both backends), the
owner's lease, and the sweep that aborts what a dead process left.

The live owner of the sweep tests is another process holding its lease (a
lease is re-entrant within its holder, so only another process can show
"busy"); the store is an in-memory one that notes what it was asked to abort.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.app.uploadrecords import UploadOwner
from ferryman.app.uploadsweep import UploadSweep
from ferryman.catalog.api import Catalog, KeyBusy
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.multipart import MultipartUpload, new_owner, owner_lease
from ferryman.catalog.open import open_catalog
from ferryman.stores.base import AccessDenied, NotFound, StoreError, Unavailable
from ferryman.stores.s3upload import put_in_parts

STORE = "s3://bucket/prefix"


@pytest.fixture(params=["sqlite", "postgresql"])
def located(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Catalog]]:
    """(URL, catalog) on each backend: another process can open the same one."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    with open_catalog(parse_catalog_url(url)) as opened:
        yield url, opened


def upload(upload_id: str, owner: str = "srv:1:aa", key: str = "a/b.bin",
           store: str = STORE) -> MultipartUpload:  # fmt: skip
    return MultipartUpload(store, key, upload_id, owner, owner.split(":")[0], 1)


def test_uploads_are_recorded_listed_by_store_and_dropped(catalog: Catalog) -> None:
    catalog.note_upload(upload("u1"))
    catalog.note_upload(upload("u2", key="c.bin"))
    catalog.note_upload(upload("u1", store="s3://other"))
    catalog.note_upload(upload("u1"))  # a second record of one upload changes nothing
    mine = catalog.uploads(STORE)
    assert [(u.upload_id, u.key, u.owner) for u in mine] == [
        ("u1", "a/b.bin", "srv:1:aa"), ("u2", "c.bin", "srv:1:aa"),
    ]  # fmt: skip
    assert all(u.started_ns > 0 and u.server == "srv" and u.pid == 1 for u in mine)
    assert len(catalog.uploads()) == 3
    assert catalog.drop_upload(STORE, "u1") is True
    assert catalog.drop_upload(STORE, "u1") is False  # dropped already
    assert [u.upload_id for u in catalog.uploads(STORE)] == ["u2"]
    assert [u.store for u in catalog.uploads("s3://other")] == ["s3://other"]


@pytest.mark.parametrize("bad", [upload(""), upload("u", store=""), upload("u", owner="")])
def test_an_upload_without_its_names_is_refused(catalog: Catalog, bad: MultipartUpload) -> None:
    with pytest.raises(ValueError):
        catalog.note_upload(bad)
    assert catalog.uploads() == []


def test_owner_names_differ_per_process_start() -> None:
    first, second = new_owner("srv"), new_owner("srv")
    assert first != second and first.startswith("srv:") and second.startswith("srv:")
    assert owner_lease(first) != owner_lease(second)


class Bucket:
    """Aborts noted; a NotFound for uploads it does not know; `failing` refuses all."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.aborted: list[tuple[str, str]] = []
        self.failing = False

    async def abort_upload(self, key: str, upload_id: str) -> None:
        if self.failing:
            raise Unavailable("the store does not answer")
        if upload_id not in self.known:
            raise NotFound(key)
        self.known.discard(upload_id)
        self.aborted.append((key, upload_id))


class NotFoundCounts(Bucket):
    async def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await super().abort_upload(key, upload_id)
        except NotFound:
            self.aborted.append((key, upload_id))  # as S3Store does: gone already is done


_HOLDER = textwrap.dedent("""
    import sys
    from ferryman.catalog.location import parse_catalog_url
    from ferryman.catalog.open import open_catalog
    with open_catalog(parse_catalog_url(sys.argv[1])) as catalog:
        with catalog.lease(sys.argv[2]):
            print("held", flush=True)
            sys.stdin.read()
""")


@pytest.fixture
def live_owner(located: tuple[str, Catalog]) -> Iterator[str]:
    """The owner name of another process, alive and holding its lease."""
    url, _ = located
    owner = new_owner("elsewhere")
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, url, owner_lease(owner)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        yield owner
    finally:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        child.wait(10)
        child.stdout.close()


def test_a_sweep_aborts_the_uploads_of_gone_owners_only(
    located: tuple[str, Catalog], live_owner: str
) -> None:
    _, catalog = located
    me = UploadOwner(catalog, "here")
    gone = new_owner("elsewhere")  # nobody holds its lease: its process died
    for record in [
        upload("dead1", gone),
        upload("dead2", gone, key="x"),
        upload("alive", live_owner),
        upload("other", gone, store="s3://other"),
    ]:
        catalog.note_upload(record)  # fmt: skip
    me.note(upload("mine", me.name))  # being sent by this process
    bucket = Bucket({"dead1", "dead2", "alive", "other", "mine"})
    sweep = UploadSweep(me, {STORE: bucket})
    assert asyncio.run(sweep.once()) == 2
    assert sorted(bucket.aborted) == [("a/b.bin", "dead1"), ("x", "dead2")]
    left = sorted(u.upload_id for u in catalog.uploads())
    assert left == ["alive", "mine", "other"]  # another store's upload is not this sweep's
    # The sweep let go of the dead owner's lease: another process may take it.
    with catalog.lease(owner_lease(gone)):
        pass
    # This process's own lease is still held (the sweep never took and released it).
    assert _busy_elsewhere(located[0], owner_lease(me.name))
    assert not _busy_elsewhere(located[0], owner_lease(gone))
    assert _busy_elsewhere(located[0], owner_lease(live_owner))


def test_an_own_upload_no_longer_sent_is_aborted_and_a_gone_one_counts_as_done(
    located: tuple[str, Catalog],
) -> None:
    _, catalog = located
    me = UploadOwner(catalog, "here")
    me.note(upload("failed-abort", me.name))
    me.finished(STORE, "failed-abort")  # its abort failed: the record stayed
    catalog.note_upload(upload("completed", new_owner("gone")))  # completed, then killed
    bucket = NotFoundCounts({"failed-abort"})
    assert asyncio.run(UploadSweep(me, {STORE: bucket}).once()) == 2
    assert catalog.uploads() == []


def test_a_store_that_cannot_abort_keeps_the_record_for_the_next_sweep(
    located: tuple[str, Catalog],
) -> None:
    _, catalog = located
    me = UploadOwner(catalog, "here")
    gone = new_owner("gone")
    catalog.note_upload(upload("u", gone))
    bucket = Bucket({"u"})
    bucket.failing = True
    sweep = UploadSweep(me, {STORE: bucket})
    assert asyncio.run(sweep.once()) == 0
    assert [u.upload_id for u in catalog.uploads()] == ["u"]
    bucket.failing = False
    assert asyncio.run(sweep.once()) == 1
    assert bucket.aborted == [("a/b.bin", "u")] and catalog.uploads() == []


def _busy_elsewhere(url: str, name: str) -> bool:
    """Whether another process finds the lease `name` held."""
    probe = textwrap.dedent("""
        import sys
        from ferryman.catalog.api import KeyBusy
        from ferryman.catalog.location import parse_catalog_url
        from ferryman.catalog.open import open_catalog
        with open_catalog(parse_catalog_url(sys.argv[1])) as catalog:
            try:
                with catalog.lease(sys.argv[2]):
                    print("free")
            except KeyBusy:
                print("busy")
    """)
    done = subprocess.run([sys.executable, "-c", probe, url, name], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    return done.stdout.strip() == "busy"


def test_keybusy_is_what_a_held_lease_says(located: tuple[str, Catalog], live_owner: str) -> None:
    _, catalog = located
    with pytest.raises(KeyBusy), catalog.lease(owner_lease(live_owner)):
        pass


def test_a_failing_sweep_is_logged_and_the_next_one_runs(
    located: tuple[str, Catalog], caplog: pytest.LogCaptureFixture
) -> None:
    _, catalog = located
    me = UploadOwner(catalog, "here")
    catalog.note_upload(upload("u", new_owner("gone")))

    class Broken(Bucket):
        calls = 0

        async def abort_upload(self, key: str, upload_id: str) -> None:
            Broken.calls += 1
            if Broken.calls == 1:
                raise RuntimeError("a bug")
            await super().abort_upload(key, upload_id)

    async def two_sweeps() -> None:
        task = asyncio.create_task(UploadSweep(me, {STORE: Broken({"u"})}).run(0.01))
        for _ in range(500):
            if not catalog.uploads():
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(two_sweeps())
    assert catalog.uploads() == [] and Broken.calls == 2
    assert "the sweep of multipart uploads failed: RuntimeError: a bug" in caplog.text


class Script:
    """An ObjectCall and UploadRecords writing one log: the order of what an upload does."""

    def __init__(self, *, failing: tuple[str, ...] = (), refuse_record: bool = False) -> None:
        self.log: list[tuple[object, ...]] = []
        self.failing = set(failing)
        self.refuse_record = refuse_record

    async def __call__(self, operation: str, /, **params: object) -> dict[str, str]:
        self.log.append((operation,))
        if operation in self.failing:
            raise AccessDenied(f"{operation} refused")
        return {"UploadId": "up-1"} if operation == "create_multipart_upload" else {"ETag": '"e"'}

    async def opened(self, key: str, upload_id: str) -> None:
        self.log.append(("opened", key, upload_id))
        if self.refuse_record:
            raise Unavailable("the catalog does not answer")

    async def closed(self, key: str, upload_id: str, gone: bool) -> None:
        self.log.append(("closed", key, upload_id, gone))


def _send(script: Script, tmp_path: Path) -> BaseException | None:
    body = tmp_path / "body"
    body.write_bytes(bytes(range(10)))
    fd = os.open(body, os.O_RDONLY)
    try:
        asyncio.run(put_in_parts(script, fd, 10, {}, part_size=4, max_parts=100, concurrency=1,
                                 attempts=1, records=script, key="k"))  # fmt: skip
    except Exception as exc:
        return exc
    finally:
        os.close(fd)
    return None


def test_an_upload_is_recorded_before_its_first_part_and_forgotten_once_complete(
    tmp_path: Path,
) -> None:
    script = Script()
    assert _send(script, tmp_path) is None
    assert script.log[:2] == [("create_multipart_upload",), ("opened", "k", "up-1")]
    assert script.log[2:5] == [("upload_part",)] * 3
    assert script.log[5:] == [("complete_multipart_upload",), ("closed", "k", "up-1", True)]


@pytest.mark.parametrize(
    ("script", "after_record", "gone"),
    [
        (Script(failing=("upload_part",)), [("upload_part",)], True),
        (Script(failing=("complete_multipart_upload",)),
         [("upload_part",)] * 3 + [("complete_multipart_upload",)], True),
        (Script(failing=("upload_part", "abort_multipart_upload")), [("upload_part",)], False),
        (Script(refuse_record=True), [], True),
    ],
)  # fmt: skip
def test_a_failed_upload_is_aborted_and_forgotten_only_once_gone(
    tmp_path: Path, script: Script, after_record: list[tuple[object, ...]], gone: bool
) -> None:
    assert isinstance(_send(script, tmp_path), StoreError)
    assert script.log[:2] == [("create_multipart_upload",), ("opened", "k", "up-1")]
    # One part at a time: the first failure is the last part sent.
    assert script.log[2:-2] == after_record
    assert script.log[-2:] == [("abort_multipart_upload",), ("closed", "k", "up-1", gone)]

"""The archive-member workloads' check before timing (bench/members.py), against a real
ferryman over the bench's own archives: the member's bytes from inside the .tar and
the .tar.gz, the same bytes as the plain file nginx is asked for, and any other bytes
flagged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.benchpath import BENCH_DIR
from tests.serverproc import ServerProcess

assert BENCH_DIR.is_dir()  # bench/ is on sys.path: its modules by plain name

from answers import FixedRequest, check  # noqa: E402
from members import MEMBER_REQUESTS, PLAIN_PATH  # noqa: E402
from testfiles import MEMBER_INDEX, SMALL_NAME, member_bytes, write_members  # noqa: E402

SMALL = bytes(range(256)) * 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("members")
    (root / SMALL_NAME).write_bytes(SMALL)  # the check's follow-up request asks for it
    write_members(root)
    srv = ServerProcess(root)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("spec", MEMBER_REQUESTS, ids=lambda spec: spec.key)
def test_the_check_passes_on_the_members_bytes_from_inside_the_archive(
    server: ServerProcess, spec: FixedRequest
) -> None:
    found = check(spec, server.port, SMALL)
    assert (found.unsupported, found.problems) == ("", ())
    answer = server.get(spec.path)
    assert (answer.status, answer.body) == (200, member_bytes(MEMBER_INDEX))
    assert answer.body == server.get(PLAIN_PATH).body


@pytest.mark.parametrize("spec", MEMBER_REQUESTS, ids=lambda spec: spec.key)
def test_the_check_flags_any_other_bytes(server: ServerProcess, spec: FixedRequest) -> None:
    neighbour = replace(spec, content=member_bytes(MEMBER_INDEX + 1))
    found = check(neighbour, server.port, SMALL)
    assert found.unsupported == ""
    assert found.problems == ("check: 1024 bytes that are not the 1024 expected",)


def test_a_member_the_archive_lacks_is_unsupported(server: ServerProcess) -> None:
    missing = replace(MEMBER_REQUESTS[0], path=MEMBER_REQUESTS[0].path.replace("0500", "5000"))
    assert check(missing, server.port, SMALL).unsupported == "answers 404, not 200"

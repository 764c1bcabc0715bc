"""The benchmark's workload definitions, its raw answer reader and its machine line."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.benchpath import BENCH_DIR

assert BENCH_DIR.is_dir()  # bench/ is on sys.path: its modules by plain name

import testfiles  # noqa: E402
from answercheck import ExchangeError, read_answer, request_bytes  # noqa: E402
from answers import FIXED_REQUESTS, MISSING_PATH, SMALL_PATH  # noqa: E402
from machine import cpu_model, machine_line  # noqa: E402
from members import MEMBER_REQUESTS, not_applicable, request_for  # noqa: E402
from outcome import RPS, Context, Outcome, Workload  # noqa: E402
from report import NOT_APPLICABLE, build_results, format_cell  # noqa: E402
from servers import SERVERS, TLS_SERVERS, Launch, ServerSpec  # noqa: E402
from settings import LIMIT, REFERENCE, Settings, settings_for  # noqa: E402
from testfiles import (  # noqa: E402
    MEMBER_INDEX,
    MEMBERS_COUNT,
    MEMBERS_TAR,
    MEMBERS_TGZ,
    member_bytes,
    member_name,
    write_members,
)
from workloads import WORKLOADS  # noqa: E402

NEW = ("notfound", "notmodified", "head", "close", "listing")
MEMBERS = ("member", "member-gz")


def test_every_workload_is_defined_once_and_titled_with_this_runs_counts() -> None:
    keys = [w.key for w in WORKLOADS]
    assert len(keys) == len(set(keys))
    expected = {"small", "big", "ranges", "multirange", "gzip", "idle", "slow", *NEW, *MEMBERS}
    assert expected == set(keys)
    settings = settings_for(True)
    for workload in WORKLOADS:
        title = workload.describe(settings)
        assert "{" not in title, title
        assert workload.metrics, workload.key


def test_the_fixed_requests_say_what_their_answer_must_be() -> None:
    specs = {spec.key: spec for spec in FIXED_REQUESTS}
    assert set(specs) == {"small", *NEW}
    assert (specs["notfound"].path, specs["notfound"].status) == (MISSING_PATH, 404)
    assert (specs["notmodified"].status, specs["notmodified"].body) == (304, "none")
    assert specs["notmodified"].headers('"abc"') == ('If-None-Match: "abc"',)
    assert (specs["head"].method, specs["head"].body, specs["head"].tool) == ("HEAD", "none", "ab")
    assert specs["close"].headers(None) == ("Connection: close",)
    for key in ("small", "notfound", "head"):
        assert specs[key].headers('"abc"') == ()
    listing = specs["listing"]
    assert (listing.body, listing.headers(None)) == ("listing", ("Accept: text/html",))
    assert all(
        spec.path in (SMALL_PATH, MISSING_PATH) for spec in FIXED_REQUESTS if spec != listing
    )


def test_the_probe_takes_part_in_the_small_file_workload_only() -> None:
    by_name = {spec.name: spec for spec in SERVERS + TLS_SERVERS}
    probe = by_name[LIMIT]
    assert [w.key for w in WORKLOADS if probe.takes_part(w.key)] == ["small"]
    for name in ("ferryman", REFERENCE):
        assert all(by_name[name].takes_part(w.key) for w in WORKLOADS)


def test_the_pure_ferryman_is_the_same_command_without_its_compiled_path(tmp_path: Path) -> None:
    by_name = {spec.name: spec for spec in SERVERS}
    settings = settings_for(quick=True)
    files = testfiles.TestFiles(tmp_path)
    compiled = by_name["ferryman"].launch(tmp_path, files, settings)
    pure = by_name["ferryman-pure"].launch(tmp_path, files, settings)
    assert pure.argv == compiled.argv
    assert pure.env == {"FERRYMAN_PURE": "1"} and "FERRYMAN_PURE" not in compiled.env


def test_a_member_is_asked_of_ferryman_in_its_archive_and_of_nginx_as_a_plain_file() -> None:
    by_name = {spec.name: spec for spec in SERVERS + TLS_SERVERS}
    specs = {spec.key: spec for spec in MEMBER_REQUESTS}
    assert set(specs) == set(MEMBERS)
    name = member_name(MEMBER_INDEX)
    for ferryman in ("ferryman", "ferryman-pure", "ferryman-https"):
        assert request_for(specs["member"], by_name[ferryman]).path == f"/{MEMBERS_TAR}/{name}"
        assert request_for(specs["member-gz"], by_name[ferryman]).path == f"/{MEMBERS_TGZ}/{name}"
    for nginx in (REFERENCE, "nginx-https"):
        for spec in specs.values():
            assert request_for(spec, by_name[nginx]).path == f"/{name}"
    for spec in specs.values():
        assert spec.expected(b"the 1 KiB file") == member_bytes(MEMBER_INDEX)
        assert (spec.status, spec.body, spec.headers(None)) == (200, "file", ())


def test_servers_that_serve_no_tar_members_are_not_applicable_to_the_member_workloads() -> None:
    by_name = {spec.name: spec for spec in SERVERS + TLS_SERVERS}
    workloads = {w.key: w for w in WORKLOADS}
    for key in MEMBERS:
        unfit = {name for name, spec in by_name.items() if workloads[key].unfit(spec)}
        servers_of_members = {
            "ferryman",
            "ferryman-pure",
            "ferryman-https",
            REFERENCE,
            "nginx-https",
        }
        assert unfit == set(by_name) - servers_of_members
        assert "nginx stands in" in workloads[key].unfit(by_name["caddy"])
    # Every other workload can be run against every server (the probe takes part in
    # `small` only, which its ServerSpec says).
    others = [w for w in WORKLOADS if w.key not in MEMBERS]
    assert not any(w.unfit(spec) for w in others for spec in by_name.values())


def test_a_server_a_workload_cannot_be_run_against_is_reported_and_never_started(
    tmp_path: Path,
) -> None:
    """bench.py's loop: no start, no rounds, one "not applicable" with the reason."""
    loaded = importlib.util.spec_from_file_location("bench_main", BENCH_DIR / "bench.py")
    assert loaded is not None and loaded.loader is not None
    bench_main = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(bench_main)

    def never(workdir: Path, files: testfiles.TestFiles, settings: Settings) -> Launch:
        raise AssertionError("a server the workload cannot be run against was started")

    def never_run(server: object, ctx: object) -> Outcome:
        raise AssertionError("the workload was run")

    peer = ServerSpec("peer", "a server without tar members", never)
    workload = Workload("member", "a member", (RPS,), never_run, True, not_applicable)
    ctx = Context(settings_for(True, rounds=3), testfiles.TestFiles(tmp_path), tmp_path)
    outcomes = bench_main.run_all([peer], [workload], ctx)
    only = outcomes["member"]["peer"]
    assert (only.status, only.metrics) == (NOT_APPLICABLE, {})
    assert only.note == not_applicable(peer)
    assert format_cell(build_results(outcomes, REFERENCE)[0].as_dict(), RPS) == NOT_APPLICABLE


def test_the_archives_and_the_plain_files_hold_the_same_members_byte_for_byte(
    tmp_path: Path,
) -> None:
    write_members(tmp_path)
    first = {name: (tmp_path / name).read_bytes() for name in (MEMBERS_TAR, MEMBERS_TGZ)}
    for archive in (MEMBERS_TAR, MEMBERS_TGZ):
        with tarfile.open(tmp_path / archive) as tar:
            files = [info for info in tar.getmembers() if info.isfile()]
            assert len(files) == MEMBERS_COUNT
            for n, info in enumerate(files):
                assert info.name == member_name(n)
                extracted = tar.extractfile(info)
                assert extracted is not None
                data = extracted.read()
                assert data == member_bytes(n) == (tmp_path / member_name(n)).read_bytes()
                assert len(data) == 1024
                assert data.startswith(f"{member_name(n)}\n".encode())
    assert member_bytes(MEMBER_INDEX) != member_bytes(MEMBER_INDEX + 1)
    # The same bytes on every run.
    (tmp_path / "again").mkdir()
    write_members(tmp_path / "again")
    for name, data in first.items():
        assert (tmp_path / "again" / name).read_bytes() == data


def read(raw: bytes, method: str = "GET") -> tuple[int, dict[str, str], bytes, bytes]:
    """The answer, and what is left for the next one."""
    reader = io.BufferedReader(io.BytesIO(raw))
    answer = read_answer(reader, method)
    return answer.status, answer.headers, answer.body, reader.read()


NEXT = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_head_answer_has_no_body_whatever_its_content_length() -> None:
    raw = b'HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nETag: "x"\r\n\r\n' + NEXT
    status, headers, body, rest = read(raw, "HEAD")
    assert (status, headers["content-length"], headers["etag"], body) == (200, "1024", '"x"', b"")
    assert rest == NEXT


def test_a_304_has_no_body_and_stray_bytes_break_the_next_answer() -> None:
    status, _, body, rest = read(b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\nSTRAY' + NEXT)
    assert (status, body) == (304, b"")
    with pytest.raises(ExchangeError, match="not a status line"):
        read(rest)


@given(st.lists(st.binary(min_size=1, max_size=50), max_size=6))
def test_a_chunked_body_is_read_whole(chunks: list[bytes]) -> None:
    coded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n" + coded + NEXT
    status, _, body, rest = read(raw)
    assert (status, body, rest) == (404, b"".join(chunks), NEXT)


def test_a_body_shorter_than_its_length_is_an_error() -> None:
    with pytest.raises(ExchangeError, match="body ends after 3 of 10 bytes"):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")


def test_closing_answers() -> None:
    def closes(head: bytes) -> bool:
        reader = io.BufferedReader(io.BytesIO(head + b"\r\n"))
        return bool(read_answer(reader, "HEAD").closes)

    assert closes(b"HTTP/1.1 200 OK\r\nConnection: close\r\n")
    assert not closes(b"HTTP/1.1 200 OK\r\n")
    assert closes(b"HTTP/1.0 200 OK\r\n")
    assert not closes(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n")


def test_request_bytes() -> None:
    assert request_bytes("HEAD", "/1k.bin", 8000, ("Connection: close",)) == (
        b"HEAD /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: close\r\n\r\n"
    )


X86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n\nHardware\t: BCM2835\n"


def test_cpu_model_from_cpuinfo() -> None:
    assert cpu_model(X86) == "Intel(R) Xeon(R) Processor"
    assert cpu_model(ARM) == "BCM2835"
    assert cpu_model("") == "unknown"


def test_the_machine_line_names_the_machine_and_the_two_core_limit() -> None:
    info = {
        "cores": 2, "cpu_model": "Intel(R) Xeon(R) Processor", "kernel": "6.1.0",
        "python": "3.11.7", "ferryman_python": "3.11.7", "nginx": "1.22.1", "wrk": "4.1.0",
        "server_cpu": "1", "client_cpu": "0", "wrk_threads": 1,
    }  # fmt: skip
    line = machine_line(info)
    parts = (
        "2 cores (Intel(R) Xeon(R) Processor)", "Linux 6.1.0", "Python 3.11.7", "nginx 1.22.1",
        "server on CPU 1", "CPU 0 (wrk 1 thread)", "that is the limit",
    )  # fmt: skip
    for part in parts:
        assert part in line
    wide = machine_line({**info, "cores": 8, "client_cpu": "0,2-7", "wrk_threads": 7})
    assert "limit" not in wide
    assert "(wrk 7 threads)" in wide

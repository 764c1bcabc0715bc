"""The benchmark's workload definitions, its raw answer reader and its machine line."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.benchpath import BENCH_DIR

assert BENCH_DIR.is_dir()  # bench/ is on sys.path: its modules by plain name

from answercheck import ExchangeError, read_answer, request_bytes  # noqa: E402
from answers import FIXED_REQUESTS, MISSING_PATH, SMALL_PATH  # noqa: E402
from machine import cpu_model, machine_line  # noqa: E402
from servers import SERVERS, TLS_SERVERS  # noqa: E402
from settings import LIMIT, REFERENCE, settings_for  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

NEW = ("notfound", "notmodified", "head", "close", "listing")


def test_every_workload_is_defined_once_and_titled_with_this_runs_counts() -> None:
    keys = [w.key for w in WORKLOADS]
    assert len(keys) == len(set(keys))
    assert {"small", "big", "ranges", "multirange", "gzip", "idle", "slow", *NEW} == set(keys)
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

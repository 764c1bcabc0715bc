"""The benchmark's load-generator accounting: which figures are the client's limit.

The CPU figures come from the kernel (wait4 of wrk or ab, /proc/PID/stat of a
server's tree) and the tools' own summaries; each is parsed by a pure function.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.benchpath import BENCH_DIR

assert BENCH_DIR.is_dir()  # bench/ is on sys.path: its modules by plain name

from abrun import AbError  # noqa: E402
from abrun import parse_output as parse_ab  # noqa: E402
from clientload import (  # noqa: E402
    CLIENT_BOUND_SHARE,
    ClientCpu,
    cpu_list_size,
    format_cpu_list,
    is_client_bound,
)
from proctree import stat_cpu_ticks, stat_fields  # noqa: E402
from wrkrun import WrkResult  # noqa: E402


@pytest.mark.parametrize(
    ("spec", "size"), [("0", 1), ("1", 1), ("0-3", 4), ("0,2-4", 4), ("0-1,1-2", 3), ("7", 1)]
)
def test_a_cpu_list_names_its_cpus_once(spec: str, size: int) -> None:
    assert cpu_list_size(spec) == size


@pytest.mark.parametrize("spec", ["", "a", "3-1", "1-", "-1", "0,,1", "1.5"])
def test_a_bad_cpu_list_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="not a CPU list"):
        cpu_list_size(spec)


@given(st.sets(st.integers(0, 255), min_size=1))
def test_a_formatted_cpu_list_names_the_same_cpus(cpus: set[int]) -> None:
    spec = format_cpu_list(cpus)
    assert cpu_list_size(spec) == len(cpus)
    named: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        named.update(range(int(low), int(high or low) + 1))
    assert named == cpus


def test_the_threshold_is_ninety_percent_of_the_pinned_cores() -> None:
    assert not is_client_bound(0.899)
    assert is_client_bound(0.90)
    # wrk with two threads on two cores that used one of them fully: not saturated.
    assert not ClientCpu(cpu_s=3.0, wall_s=3.0, cores=2).bound
    assert ClientCpu(cpu_s=5.5, wall_s=3.0, cores=2).bound
    assert ClientCpu(cpu_s=2.85, wall_s=3.0, cores=1).bound


@given(
    st.floats(0, 1000, allow_nan=False),
    st.floats(0.001, 1000, allow_nan=False),
    st.integers(1, 64),
)
def test_client_bound_means_at_least_ninety_percent_of_its_cores(
    cpu: float, wall: float, cores: int
) -> None:
    client = ClientCpu(cpu, wall, cores)
    assert client.bound == (cpu / (wall * cores) >= CLIENT_BOUND_SHARE)
    assert client.as_dict()["client_bound"] == client.bound


def test_no_wall_time_is_no_share() -> None:
    assert ClientCpu(1.0, 0.0, 1).share == 0.0
    assert ClientCpu(0.97, 1.0, 1).describe("wrk") == "wrk used 97% of its 1 core"


def stat_line(pid: int, comm: str, session: int, ticks: tuple[int, int, int, int]) -> str:
    """A /proc/PID/stat line as the kernel writes it (fields 1 to 20)."""
    fields = ["S", "1", str(pid), str(session), "0", "-1", "4194560", "10", "0", "0", "0"]
    fields += [str(t) for t in ticks] + ["20", "0", "1"]
    return f"{pid} ({comm}) " + " ".join(fields) + "\n"


@given(
    st.text(st.characters(blacklist_characters="\n\x00"), max_size=15),
    st.tuples(*[st.integers(0, 10**9)] * 4),
    st.integers(1, 4_000_000),
)
def test_cpu_ticks_are_read_whatever_the_command_name(
    comm: str, ticks: tuple[int, int, int, int], session: int
) -> None:
    """A command name may hold spaces and ')': fields count from the last ')'."""
    line = stat_line(4242, comm, session, ticks)
    assert stat_cpu_ticks(line) == sum(ticks)
    assert int(stat_fields(line)[3]) == session


def test_cpu_ticks_of_a_tricky_name() -> None:
    line = stat_line(7, "nginx: worker) (x", 7, (100, 50, 3, 2))
    assert stat_cpu_ticks(line) == 155


AB_OUTPUT = """\
Benchmarking 127.0.0.1 (be patient).....done


Server Software:        nginx/1.22.1
Document Path:          /1k.bin
Document Length:        0 bytes

Concurrency Level:      64
Time taken for tests:   2.000 seconds
Complete requests:      223662
Failed requests:        0
Keep-Alive requests:    223470
Total transferred:      53677920 bytes
HTML transferred:       0 bytes
Requests per second:    111812.22 [#/sec] (mean)

Percentage of the requests served within a certain time (ms)
  50%      1
  99%      2
 100%      5 (longest request)
"""


def test_ab_summary() -> None:
    result = parse_ab(AB_OUTPUT)
    assert (result.requests, result.keep_alive, result.failed) == (223662, 223470, 0)
    assert (result.bytes, result.body_bytes, result.non_2xx) == (53677920, 0, 0)
    assert result.duration_s == 2.0
    assert result.p99_ms == 2
    assert result.requests_per_s == 111831
    assert result.problems() == []


def test_ab_summary_of_errors() -> None:
    text = AB_OUTPUT.replace("Failed requests:        0", "Failed requests:        3")
    text = text.replace("HTML transferred:", "Non-2xx responses:      223662\nHTML transferred:")
    result = parse_ab(text)
    assert result.non_2xx == 223662
    assert result.problems(error_statuses=True) == [
        "3 failed (connect, read, or a length unlike the first)"
    ]
    assert "223662 non-2xx" in result.problems()


def test_ab_that_measured_new_connections_is_flagged() -> None:
    text = AB_OUTPUT.replace("Keep-Alive requests:    223470", "Keep-Alive requests:    0")
    assert parse_ab(text).problems() == ["only 0 of 223662 answers kept the connection"]


def test_ab_without_its_summary_is_an_error() -> None:
    with pytest.raises(AbError, match="no duration_s in ab output"):
        parse_ab("apr_pollset_poll: The timeout specified has expired (70007)")


def wrk_result(requests: int, status_errors: int) -> WrkResult:
    errors = {"connect": 0, "read": 0, "write": 0, "status": status_errors, "timeout": 0}
    return WrkResult(requests, requests * 300, 3.0, errors, {"p99": 900}, {})


def test_wrk_status_errors_are_expected_only_where_every_answer_is_an_error() -> None:
    assert wrk_result(1000, 1000).problems(error_statuses=True) == []
    assert wrk_result(1000, 990).problems(error_statuses=True) == ["10 answers not 4xx/5xx"]
    assert wrk_result(1000, 0).problems() == []
    assert wrk_result(1000, 4).problems() == ["4 non-2xx"]
    assert wrk_result(0, 0).problems() == ["no complete response"]


def test_dd_summary_gives_its_seconds() -> None:
    from put_bench import dd_seconds

    output = (
        "256+0 records in\n256+0 records out\n"
        "268435456 bytes (268 MB, 256 MiB) copied, 0.174959 s, 1.5 GB/s\n"
    )
    assert dd_seconds(output) == pytest.approx(0.174959)
    with pytest.raises(RuntimeError):
        dd_seconds("dd: failed to open 'x': Permission denied\n")

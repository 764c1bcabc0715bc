"""Memory soak: the worker's RSS stays flat over many answers of every kind.

One real ferryman per setup (bench/soak_kinds.py), wrk driving each kind of
answer with every status checked, VmRSS of the worker (and of the cache
filler in front of S3) after a warm-up and after the measured answers; the
growth must stay within bench/soak.py's THRESHOLD (4 MiB). The short counts
(10,000 answers of most kinds, 5,000 writes and store 404s) make a leak of
1 KiB per answer fail; FERRYMAN_SLOW=1 runs the long counts of
`make bench-soak` (100,000).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bench.soak import MIB, THRESHOLD, SoakError, drive, soak
from bench.soak_kinds import KINDS, STORE_SETUPS, Kind, Step, build_tree, start_server

from tests.s3server import MotoServer
from tests.serverproc import ServerProcess, need

LONG = os.environ.get("FERRYMAN_SLOW") == "1"

Servers = Callable[[str, MotoServer | None], ServerProcess]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """One server per setup, started when a kind first needs it, shared by its kinds."""
    tree = build_tree(Path(tmp_path_factory.mktemp("soak")))
    started: dict[str, ServerProcess] = {}

    def server(setup: str, moto: MotoServer | None) -> ServerProcess:
        if setup not in started:
            started[setup] = start_server(setup, tree, moto)
        return started[setup]

    yield server
    for srv in started.values():
        assert srv.stop() == 0, srv.log_text()


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS, ids=[kind.key for kind in KINDS])
def test_memory_stays_flat(kind: Kind, servers: Servers, request: pytest.FixtureRequest) -> None:
    need("wrk")
    moto = request.getfixturevalue("moto_server") if kind.setup in STORE_SETUPS else None
    srv = servers(kind.setup, moto)
    outcomes = soak(srv, kind, kind.long if LONG else kind.short)
    for o in outcomes:
        assert o.growth <= THRESHOLD, (
            f"{kind.title}: the {o.process}'s RSS grew {o.growth / MIB:.2f} MiB "
            f"({o.rss_warm / MIB:.1f} -> {o.rss_after / MIB:.1f}) in {o.requests:,} answers"
            f" after {o.warmup:,} to warm up: about {o.growth / o.requests:.0f} bytes each"
        )
    assert "Traceback" not in srv.log_text()


@pytest.mark.parametrize(
    "kind",
    [
        Kind("other-status", "a 404 where a 200 is expected", "files",
             (Step("GET", "/missing.txt", 200),)),
        # Both statuses are expected, each for the other step: only the order is wrong.
        Kind("swapped", "steps answered out of turn", "files",
             (Step("GET", "/small.txt", 404), Step("GET", "/missing.txt", 200)), connections=1),
        Kind("head", "HEAD answered 404", "files", (Step("HEAD", "/missing.txt", 200),)),
    ],
    ids=lambda kind: kind.key,
)  # fmt: skip
def test_an_answer_other_than_the_kind_fails_the_soak(kind: Kind, servers: Servers) -> None:
    """The soak measures the answers it claims to: any other status fails the run."""
    need("wrk")
    with pytest.raises(SoakError, match="mismatched"):
        drive(servers("files", None), kind, 200)

"""The fleet example of docs/operations.md, run as written: docs/fleet/.

Two ferryman nodes on one bucket (moto's S3 server) and one PostgreSQL
catalog, behind nginx configured by docs/fleet/nginx-ferryman.conf with
only its addresses changed. Through the balancer: a write lands and every
node answers it byte-exact with the catalog's digest; reads are spread over
both nodes; a node drained with SIGTERM is passed over with no failed
request; metrics are not reachable through it. And the node settings file,
docs/fleet/node-a.env, names only settings ferryman has.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.config.load import build_config
from ferryman.config.options import OPTIONS
from tests import fleetconf
from tests.rawhttp import Conn, RawResponse
from tests.serverproc import ServerProcess, pattern, wait_until
from tests.writing import Writable, bearer, repr_digest


class Balancer(fleetconf.Balancer):
    """The documented nginx, and requests through it as a client would make them."""

    def connect(self, timeout: float = 30.0) -> Conn:
        return Conn(socket.create_connection(("127.0.0.1", self.port), timeout=timeout))

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> RawResponse:
        with self.connect() as conn:
            return conn.request(method, target, {"Host": "files.example", **(headers or {})}, body)


def node(writable: Writable, tmp_path: Path, name: str, catalog: str, bucket: str,
         endpoint: str) -> ServerProcess:  # fmt: skip
    """A node as node-a.env describes one: the shared bucket and catalog, its own
    state directory, cache and access log."""
    return writable(
        "--catalog", catalog, "--cache-dir", str(tmp_path / f"cache-{name}"),
        "--access-log", str(tmp_path / f"access-{name}.log"),
        root=f"s3://{bucket}/files", s3_endpoint=endpoint, state=Path(f"state-{name}"),
    )  # fmt: skip


@pytest.fixture
def fleet(
    writable: Writable, pg_url: str, s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> Iterator[tuple[Balancer, list[ServerProcess]]]:
    nodes = [node(writable, tmp_path, name, pg_url, s3_bucket, moto_endpoint) for name in "ab"]
    balancer = Balancer(tmp_path / "nginx", [f"{n.host}:{n.port}" for n in nodes])
    try:
        yield balancer, nodes
    finally:
        balancer.stop()


def answered_by(tmp_path: Path, name: str) -> int:
    """How many requests node `name` logged (its access log is written once a second)."""
    log = tmp_path / f"access-{name}.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_two_nodes_behind_the_documented_nginx_serve_one_bucket_and_catalog(
    fleet: tuple[Balancer, list[ServerProcess]], tmp_path: Path
) -> None:
    balancer, (a, b) = fleet
    data = pattern(3 * 1024 * 1024 + 17, 3)
    written = balancer.request("PUT", "/videos/clip.bin", bearer(), data)
    assert written.status == 201, written.body
    # Every node answers the write byte-exact, with the digest the catalog holds.
    for node in (a, b):
        got = node.get("/videos/clip.bin")
        assert got.status == 200 and got.body == data
        assert got.header("repr-digest") == repr_digest(data)
    # Through the balancer: whole, a range, and reads spread over both nodes.
    ranged = balancer.request("GET", "/videos/clip.bin", {"Range": "bytes=1000000-1065535"})
    assert ranged.status == 206 and ranged.body == data[1000000:1065536]
    for _ in range(20):
        got = balancer.request("GET", "/videos/clip.bin", {"Range": "bytes=0-4095"})
        assert got.status == 206 and got.body == data[:4096]
    assert wait_until(lambda: answered_by(tmp_path, "a") >= 5 and answered_by(tmp_path, "b") >= 5)
    # Metrics are for scraping each node, not for the balancer's clients.
    assert balancer.request("GET", "/-/metrics").status == 404


def test_a_node_drained_with_sigterm_is_passed_over_without_a_failed_request(
    fleet: tuple[Balancer, list[ServerProcess]],
) -> None:
    balancer, (a, b) = fleet
    data = pattern(256 * 1024, 9)
    assert balancer.request("PUT", "/doc.bin", bearer(), data).status == 201
    failures: list[str] = []
    stop = threading.Event()

    def read_all_the_time() -> None:
        while not stop.is_set():
            got = balancer.request("GET", "/doc.bin")
            if got.status != 200 or got.body != data:
                failures.append(f"{got.status} {len(got.body)} bytes")

    readers = [threading.Thread(target=read_all_the_time) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        assert a.stop() == 0  # SIGTERM: a drains and exits
        for _ in range(30):
            assert balancer.request("GET", "/doc.bin").body == data
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    assert failures == []
    # Writes go on through the node that is left.
    assert balancer.request("PUT", "/doc.bin", bearer(), b"second").status == 204
    assert b.get("/doc.bin").body == b"second"


def test_the_example_node_settings_are_settings_ferryman_has() -> None:
    known = {option.env for option in OPTIONS}
    settings = {}
    for line in (fleetconf.FLEET_DOCS / "node-a.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name] = value
    ours = {name for name in settings if name.startswith("FERRYMAN_")}
    assert ours - known == set()
    config = build_config({}, {name: settings[name] for name in ours})
    assert config.catalog == settings["FERRYMAN_CATALOG"]
    assert config.source == "s3://archive/files" and config.allow_write
    unit = (fleetconf.FLEET_DOCS / "ferryman@.service").read_text()
    assert "EnvironmentFile=/etc/ferryman/%i.env" in unit and "KillMode=mixed" in unit

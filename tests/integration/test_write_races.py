"""The race harness: writers in several processes hammer one key of a two-worker server.

Each round starts several client processes that each send a request for the
same key (PUTs of different bodies, conditional PUTs, DELETEs), holding back
the last byte of each request until one agreed instant so that the requests
overlap in the server. After every round the harness checks that the bytes on
disk (or in the store), the catalog's record and what the server serves
(body, ETag, Repr-Digest, through several connections so both workers
answer) all describe the same version, and that the answers were right:
one 201 for a key that was absent, at most one winner among writers holding
the same If-Match or If-None-Match: *.

CI runs a short version; FERRYMAN_SLOW=1 runs the long one.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from tests.rawhttp import Conn, request_bytes
from tests.s3server import MotoServer
from tests.serverproc import CI, ServerProcess
from tests.writing import Writable, bearer, catalog_entry, repr_digest, upload_temporaries

SLOW = os.environ.get("FERRYMAN_SLOW") == "1"
ROUNDS = 200 if SLOW else (24 if CI else 40)
CLIENTS = 4
KEY = "race/key.bin"


def body_for(round_no: int, client: int) -> bytes:
    """A distinct body per client and round; sizes differ so size alone tells them apart."""
    seed = f"round {round_no} client {client} ".encode()
    return (seed * (40_000 // len(seed) + client * 97))[: 40_000 + client * 4099]


Answer = tuple[int, str | None]  # status, ETag
Send = tuple[str, dict[str, str], bytes]  # method, headers, body


def send_at(port: int, method: str, headers: dict[str, str], body: bytes, at: float) -> Answer:
    """One request whose last byte leaves at time.monotonic() == at."""
    raw = request_bytes(method, f"/{KEY}", {**bearer(), **headers}, body)
    with Conn(socket.create_connection(("127.0.0.1", port), timeout=60)) as conn:
        conn.send(raw[:-1])
        time.sleep(max(0.0, at - time.monotonic()))
        conn.send(raw[-1:])
        response = conn.read()
    return response.status, response.header("etag")


@pytest.fixture(scope="module")
def clients() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(CLIENTS) as pool:
        yield pool


def race(pool: ProcessPoolExecutor, srv: ServerProcess, requests: list[Send]) -> list[Answer]:
    at = time.monotonic() + 0.3  # every client has connected and sent all but a byte by then
    futures = [pool.submit(send_at, srv.port, m, h, b, at) for m, h, b in requests]
    return [f.result(timeout=120) for f in futures]


def served(srv: ServerProcess, times: int = 4) -> list[tuple[int, bytes, str | None, str | None]]:
    """GET the key on `times` new connections: (status, body, ETag, Repr-Digest) each."""
    seen = []
    for _ in range(times):
        r = srv.get(f"/{KEY}")
        seen.append((r.status, r.body, r.header("etag"), r.header("repr-digest")))
    return seen


def check_agreement(srv: ServerProcess, stored: bytes | None, state: Path) -> bytes | None:
    """Disk (or store), catalog and every answer describe one version; returns its bytes."""
    entry = catalog_entry(state, KEY)
    answers = served(srv)
    if stored is None:
        assert entry is None or entry.deleted, f"catalog says live for a missing key: {entry}"
        assert {a[0] for a in answers} == {404}, answers
        return None
    assert entry is not None and not entry.deleted, "stored but not catalogued"
    assert (entry.size, entry.sha256) == (len(stored), hashlib.sha256(stored).hexdigest()), (
        "the catalog describes other bytes than the stored ones"
    )
    for status, body, etag, digest in answers:
        assert status == 200 and body == stored
        assert etag == entry.etag, "the ETag served is not the catalogued version's"
        assert digest == repr_digest(stored), "Repr-Digest does not match the bytes"
    return stored


def check_round(srv: ServerProcess, read_stored: Callable[[], bytes | None], state: Path,
                round_no: int, pool: ProcessPoolExecutor) -> None:  # fmt: skip
    """One of four kinds of race, by round number, then the agreement check."""
    kind = round_no % 4
    before = read_stored()
    etag = served(srv, 1)[0][2] if before is not None else None
    bodies = [body_for(round_no, c) for c in range(CLIENTS)]
    if kind == 0:  # plain PUTs: one wins, all succeed, one 201 if the key was absent
        results = race(pool, srv, [("PUT", {}, b) for b in bodies])
        statuses = sorted(s for s, _ in results)
        assert set(statuses) <= {201, 204}, statuses
        assert statuses.count(201) == (1 if before is None else 0), statuses
    elif kind == 1:  # If-Match on the version there: exactly one writer wins
        if etag is None:
            return
        results = race(pool, srv, [("PUT", {"If-Match": etag}, b) for b in bodies])
        statuses = sorted(s for s, _ in results)
        assert statuses == [204, 412, 412, 412], statuses
    elif kind == 2:  # PUTs against DELETEs
        requests: list[Send] = [("PUT", {}, bodies[0]), ("DELETE", {}, b""), ("PUT", {}, bodies[1]),
                    ("DELETE", {}, b"")]  # fmt: skip
        results = race(pool, srv, requests)
        assert all(s in (201, 204, 404) for s, _ in results), results
    else:  # create-only on an absent key: exactly one creator
        for status, _ in race(pool, srv, [("DELETE", {}, b"")]):
            assert status in (204, 404)
        results = race(pool, srv, [("PUT", {"If-None-Match": "*"}, b) for b in bodies])
        statuses = sorted(s for s, _ in results)
        assert statuses == [201, 412, 412, 412], statuses
    stored = read_stored()
    if kind in (0, 1, 3):
        winners = [b for b, (s, _) in zip(bodies, results, strict=True) if s in (201, 204)]
        assert stored in winners, "the stored body is none of the winners'"
    check_agreement(srv, stored, state)


def test_one_key_from_several_processes_local(
    writable: Writable, tmp_path: Path, clients: ProcessPoolExecutor
) -> None:
    """With a replica directory too: after every round it holds what SOURCE holds."""
    root, state, mirror = tmp_path / "root", tmp_path / "state", tmp_path / "mirror"
    mirror.mkdir()
    srv = writable("--workers", "2", "--replica", str(mirror))
    path, copy = root / KEY, mirror / KEY

    def read_stored() -> bytes | None:
        stored = path.read_bytes() if path.exists() else None
        replica = copy.read_bytes() if copy.exists() else None
        assert replica == stored, "the replica holds another version than SOURCE"
        return stored

    for round_no in range(ROUNDS):
        check_round(srv, read_stored, state, round_no, clients)
    assert not upload_temporaries(root) and not upload_temporaries(mirror)


def test_one_key_from_several_processes_store(
    writable: Writable, tmp_path: Path, clients: ProcessPoolExecutor, moto_server: MotoServer,
    s3_bucket: str,
) -> None:  # fmt: skip
    srv = writable("--workers", "2", root=f"s3://{s3_bucket}", s3_endpoint=moto_server.url)

    def read_stored() -> bytes | None:
        status, body = moto_server.get_object(s3_bucket, KEY)
        return body if status == 200 else None

    for round_no in range(max(8, ROUNDS // 4)):
        check_round(srv, read_stored, tmp_path / "state", round_no, clients)

"""pytest fixtures for S3: one moto server per test session, a fresh bucket per test.

tests/conftest.py registers them for the whole suite. Fixtures:

- `moto_server`: the session's MotoServer (tests/s3server.py), for setup
  that bypasses ferryman (`put_object`, `get_object`, `request`);
- `moto_endpoint`: its URL, `http://127.0.0.1:PORT`;
- `s3_bucket`: a new empty bucket for this test; its name;
- `s3_env`: the environment a ferryman subprocess needs to reach moto
  (AWS_* credentials and region, FERRYMAN_S3_ENDPOINT);
- `fault_proxy`: a FaultProxy (tests/faultproxy.py) in front of moto, for this test.

The server is started once per process even if these fixtures are
registered twice (a module's import and conftest's).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faultproxy import FaultProxy
from tests.s3server import MotoServer
from tests.s3server import s3_env as environment_for

__all__ = ["fault_proxy", "moto_endpoint", "moto_server", "s3_bucket", "s3_env"]

_shared: list[MotoServer] = []


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    started = not _shared
    if started:
        _shared.append(MotoServer())
    yield _shared[0]
    if started:
        _shared.pop().stop()


@pytest.fixture(scope="session")
def moto_endpoint(moto_server: MotoServer) -> str:
    return moto_server.url


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    return moto_server.create_bucket()


@pytest.fixture
def s3_env(moto_endpoint: str) -> dict[str, str]:
    return environment_for(moto_endpoint)


@pytest.fixture
def fault_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as proxy:
        yield proxy

"""One audit or repair at a time per store: a lease in the catalog, on SQLite (every
process on the machine) and PostgreSQL (every server), let go when its holder dies."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.catalog.api import Catalog, KeyBusy
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.open import open_catalog
from tests.serverproc import wait_until

REPO = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.open import open_catalog
catalog = open_catalog(parse_catalog_url(sys.argv[1]))
with catalog.lease(sys.argv[2]):
    print("held", flush=True)
    time.sleep(300)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'state' / 'catalog.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def stop(holder: subprocess.Popen[str]) -> None:
    holder.kill()  # SIGKILL: nothing is released by the holder itself
    holder.wait()
    if holder.stdout is not None:
        holder.stdout.close()


def holding(url: str, name: str) -> subprocess.Popen[str]:
    """Another process holding the lease `name` of the catalog at `url` until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, name], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def opened(catalog_url: str, tmp_path: Path) -> Iterator[Catalog]:
    (tmp_path / "state").mkdir(exist_ok=True)
    with open_catalog(parse_catalog_url(catalog_url)) as catalog:
        yield catalog


def free(catalog: Catalog, name: str) -> bool:
    try:
        with catalog.lease(name):
            return True
    except KeyBusy:
        return False


def test_a_lease_has_one_holder_until_it_dies(opened: Catalog, catalog_url: str) -> None:
    holder = holding(catalog_url, "run:/srv/files")
    try:
        assert not free(opened, "run:/srv/files")
        assert free(opened, "run:/srv/other")  # another store's lease is its own
    finally:
        stop(holder)
    assert wait_until(lambda: free(opened, "run:/srv/files"), timeout=10)
    with opened.lease("run:/srv/files"):
        second = subprocess.run([sys.executable, "-c", HOLDER, catalog_url, "run:/srv/files"],
                                capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
        assert second.returncode != 0 and "KeyBusy" in second.stderr


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferryman.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)  # fmt: skip


def test_a_second_audit_of_a_store_stops_at_once_and_says_why(
    catalog_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.bin").write_bytes(b"a")
    state = tmp_path / "state"
    flags = ["--state-dir", str(state), "--catalog", catalog_url]
    assert audit("catalog", "scan", str(root), *flags).returncode == 0
    holder = holding(catalog_url, f"run:{os.path.realpath(root)}")
    try:
        for command in ("audit", "repair"):
            done = audit(command, str(root), *flags)
            assert done.returncode == 4, done.stdout + done.stderr
            assert f"another audit or repair of {root} is running" in done.stderr
            assert "Traceback" not in done.stderr
    finally:
        stop(holder)
    done = audit("audit", str(root), *flags)
    assert done.returncode == 0, done.stdout + done.stderr

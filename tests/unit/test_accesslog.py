"""The access log across rotation: reopened at the same path, or kept when it cannot be."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ferryman.server.accesslog import AccessLog

CONN: Any = SimpleNamespace(peer="192.0.2.1")


def test_reopen_follows_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.record_error(CONN, 400, "0123456789ab")
    log.flush()
    path.rename(tmp_path / "access.log.1")
    log.reopen()
    log.record_error(CONN, 408, "0123456789ab")
    log.close()
    assert '"-" 400 0' in (tmp_path / "access.log.1").read_text()
    assert '"-" 408 0' in path.read_text() and "400" not in path.read_text()


def test_a_log_that_cannot_be_reopened_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    path.rename(tmp_path / "access.log.1")
    path.mkdir()  # the new file cannot be opened where the old one was
    log.reopen()
    log.record_error(CONN, 400, "0123456789ab")
    log.flush()  # still writable: no closed file behind it
    log.close()
    assert '"-" 400 0' in (tmp_path / "access.log.1").read_text()

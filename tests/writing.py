"""Helpers for tests that write through a real ferryman: tokens, PUT, DELETE, the catalog.

`writable(ferryman, tmp_path, *flags)` starts a server that accepts writes
with the bearer token WRITE, its state in tmp_path/state (or SOURCE's own
when the flags say so); `put` and `delete` send one request each on a new
connection; `catalog_entry` reads the catalog the way the audit will, from
another process's point of view.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess
from tests.rawhttp import RawResponse

WRITE = "w-token-0123456789"


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"{WRITE} write\n")
    return path


def writable(ferryman: Any, tmp_path: Path, *flags: str, root: Path | str | None = None,
             **kw: Any) -> ServerProcess:  # fmt: skip
    """A server with --allow-write and a token; its state directory is tmp_path/state."""
    if root is None:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
    args = ["--allow-write", "--tokens", str(tokens_file(tmp_path))]
    if "--state-dir" not in flags:
        args += ["--state-dir", str(tmp_path / "state")]
    server: ServerProcess = ferryman(*args, *flags, root=root, **kw)
    return server


def request(srv: ServerProcess, method: str, path: str, data: bytes = b"",
            headers: dict[str, str] | None = None, token: str = WRITE,
            timeout: float = 30.0) -> RawResponse:  # fmt: skip
    all_headers = dict(headers or {})
    if method == "PUT":
        all_headers.setdefault("Content-Length", str(len(data)))
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    lines = [f"{method} {path} HTTP/1.1", "Host: t", *(f"{k}: {v}" for k, v in all_headers.items())]
    with srv.connect(timeout) as conn:
        return conn.request(("\r\n".join(lines) + "\r\n\r\n").encode() + data)[0]


def put(srv: ServerProcess, path: str, data: bytes, headers: dict[str, str] | None = None,
        token: str = WRITE) -> RawResponse:  # fmt: skip
    return request(srv, "PUT", path, data, headers, token)


def delete(srv: ServerProcess, path: str, headers: dict[str, str] | None = None,
           token: str = WRITE) -> RawResponse:  # fmt: skip
    return request(srv, "DELETE", path, b"", headers, token)


def repr_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def catalog_entry(state: Path, path: str) -> Any:
    """The catalog's current entry for `path` (None if never catalogued)."""
    from ferryman.catalog.db import Catalog

    with Catalog(state / "catalog.db") as catalog:
        return catalog.get(path)


def catalog_intents(state: Path) -> list[Any]:
    from ferryman.catalog.db import Catalog

    with Catalog(state / "catalog.db") as catalog:
        return catalog.intents()


def worker_pids(srv: ServerProcess) -> list[int]:
    """The arbiter's children: its workers (and the cache filler, if any)."""
    pid = srv.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(p) for p in handle.read().split()]


def upload_temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob(".ferryman-upload-*"))

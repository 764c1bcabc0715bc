"""Servers that accept writes, and what tests of writes use: tokens, PUT, DELETE, the catalog.

The `writable` fixture (a `Writable`) starts a server with `--allow-write`
and a tokens file granting the bearer token WRITE; its state directory is
tmp_path/state unless told otherwise. Every variant goes through it:

    srv = writable()                                    # SOURCE is tmp_path/root
    srv = writable("--replica", str(mirror), root=root)
    srv = writable(root=f"s3://{bucket}", s3_endpoint=moto_server.url)
    srv = writable("--private", tokens=None, signing_key=signing_key(tmp_path))
    srv = writable(root=root, state=None)               # ferryman chooses (SOURCE/.ferryman)

`write_flags(directory)` is the same --allow-write and tokens file for a
server started some other way. `put` and `delete` send one request each on a
new connection with the token; `catalog_entry` reads the catalog the way the
audit will, from another process's point of view.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from ferryman.catalog.db import CatalogEntry, Intent, SqliteCatalog
from tests.rawhttp import RawResponse
from tests.s3server import s3_env
from tests.serverproc import ServerProcess, Servers

WRITE = "w-token-0123456789"
READ = "r-token-0123456789"
WRITER = f"{WRITE} write\n"  # a tokens file's line: WRITE may write anywhere


def tokens_file(directory: Path, tokens: str = WRITER) -> Path:
    """A tokens file in `directory` with these lines (token, access, optional prefix)."""
    path = directory / "tokens"
    path.write_text(tokens)
    return path


def write_flags(directory: Path, tokens: str = WRITER) -> list[str]:
    """--allow-write with a tokens file in `directory`."""
    return ["--allow-write", "--tokens", str(tokens_file(directory, tokens))]


def signing_key(directory: Path) -> Path:
    """A key file for --signing-key and `ferryman sign`."""
    path = directory / "key"
    path.write_bytes(b"k" * 48)
    return path


class Writable:
    """Starts servers that accept writes; the `writable` fixture is one of these."""

    def __init__(self, ferryman: Servers, tmp_path: Path) -> None:
        self.ferryman = ferryman
        self.tmp_path = tmp_path

    def __call__(
        self,
        *flags: str,
        root: Path | str | None = None,
        tokens: str | None = WRITER,
        signing_key: Path | None = None,
        state: Path | None = Path("state"),
        s3_endpoint: str | None = None,
        env: Mapping[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> ServerProcess:
        """A server with --allow-write and `flags`.

        root: SOURCE, a directory or s3://bucket/prefix; tmp_path/root (made) if None.
        tokens: the tokens file's lines; None for no --tokens (signed URLs only).
        signing_key: a key file for --signing-key.
        state: --state-dir, relative to tmp_path; None lets ferryman choose.
        s3_endpoint: the S3 endpoint of a bucket SOURCE or replica (s3_env's variables).
        """
        if root is None:
            root = self.tmp_path / "root"
            root.mkdir(exist_ok=True)
        args = ["--allow-write"]
        if tokens is not None:
            args += ["--tokens", str(tokens_file(self.tmp_path, tokens))]
        if signing_key is not None:
            args += ["--signing-key", str(signing_key)]
        if state is not None:
            args += ["--state-dir", str(self.tmp_path / state)]
        environment = {**(s3_env(s3_endpoint) if s3_endpoint else {}), **(env or {})}
        return self.ferryman(*args, *flags, root=root, env=environment, wrapper=wrapper)


def bearer(token: str = WRITE) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def put(srv: ServerProcess, target: str, data: bytes, headers: Mapping[str, str] | None = None,
        *, token: str = WRITE) -> RawResponse:  # fmt: skip
    """A PUT on a new connection, with the bearer token (none if `token` is empty)."""
    return srv.request("PUT", target, {**bearer(token), **(headers or {})}, data)


def delete(srv: ServerProcess, target: str, headers: Mapping[str, str] | None = None,
           *, token: str = WRITE) -> RawResponse:  # fmt: skip
    return srv.request("DELETE", target, {**bearer(token), **(headers or {})})


def repr_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def catalog_entry(state: Path, path: str) -> CatalogEntry | None:
    """The catalog's current entry for `path` (None if never catalogued)."""
    with SqliteCatalog(state / "catalog.db") as catalog:
        return catalog.get(path)


def catalogued(state: Path, path: str) -> bool:
    """Whether the catalog under `state` has a live entry for `path`."""
    entry = catalog_entry(state, path)
    return entry is not None and not entry.deleted


def catalog_intents(state: Path) -> list[Intent]:
    with SqliteCatalog(state / "catalog.db") as catalog:
        return catalog.intents()


def upload_temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob(".ferryman-upload-*"))

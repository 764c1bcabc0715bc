"""The server's id: names the intents it records, so that it settles its own and no other's.

A random id kept in STATE/server-id, made at the first start and read at
every later one: stable while the state directory is (a new host with the
same state directory is the same server; a second server needs a state
directory of its own, as it does for its lock file and spools anyway). Not
the host name: two servers on one host, or a host renamed, would be
confused. The workers of one server read one file, so they share the id;
two starting at once agree, because the file is made by a hard link that
only the first one gets to make.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE = "server-id"


def server_id(state: Path) -> str:
    """The id in `state`/server-id, made first if missing (OSError when it cannot be)."""
    path = state / FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    draft = state / f".{FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    draft.write_text(secrets.token_hex(12) + "\n")
    try:
        os.link(draft, path)  # fails if another worker made it first: theirs stands
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return _read(path)


def _read(path: Path) -> str:
    text = path.read_text().strip()
    if not text or len(text) > 64 or not text.isprintable():
        raise OSError(f"{path} holds no valid server id (remove it: a new one is made)")
    return text

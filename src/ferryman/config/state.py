"""Where a server keeps its state (catalog, spool, cache key) when --state-dir is not given."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def choose_state_dir(
    state_dir: str | None, source: str, *, remote: bool, allow_write: bool
) -> tuple[Path, str]:
    """The state directory, and why it is that one (logged at start).

    --state-dir, if given. For a store: a directory per bucket and prefix
    under XDG_STATE_HOME. For a directory: SOURCE/.ferryman when this user
    may write there (it exists and is writable, or SOURCE is), and always
    with --allow-write (a writing server keeps its catalog where it was,
    and fails at start if it cannot open it); otherwise, a read-only
    SOURCE, a directory per SOURCE under XDG_STATE_HOME. Writable is
    asked of the kernel (access(2) with the effective ids): a read-only
    mount says no even to root.
    """
    if state_dir:
        return Path(state_dir).resolve(), "--state-dir"
    if remote:
        return user_state(source, source.removeprefix("s3://")), "per user: a store"
    root = Path(source).resolve()
    inside = root / ".ferryman"
    if allow_write:
        return inside, "in SOURCE: writes are allowed"
    if _writable(inside if inside.is_dir() else root):
        return inside, "in SOURCE"
    return user_state(str(root), str(root)), "per user: SOURCE is not writable"


def user_state(source: str, readable: str) -> Path:
    """XDG_STATE_HOME/ferryman/<readable>-<digest> (~/.local/state when unset).

    A name readable as the source, and a digest of the exact source so that
    two sources never share a catalog (s3://m/a_b and s3://m/a/b read alike).
    """
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", readable).strip("_")
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    return Path(base).resolve() / "ferryman" / f"{name}-{digest}"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK, effective_ids=True)


GITIGNORE = "# ferryman's state (catalog, spool, locks): never part of the tree it serves\n*\n"


def make_state_dir(path: Path) -> None:
    """Create the state directory (mode 0700) with a .gitignore of everything in it, so a
    served checkout never shows the catalog or the spool as changes. A directory that
    exists already is left as it is. OSError if it cannot be made; a .gitignore that
    cannot be written is left out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return
    try:
        (path / ".gitignore").write_text(GITIGNORE)
    except OSError:
        pass  # a full or read-only state directory: the rest of the start says so

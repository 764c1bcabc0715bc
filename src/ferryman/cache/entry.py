"""The cache directory: where entries live, how they are made, dropped and recovered.

    CACHE_DIR/
      entries/ab/<id>/   one directory per object version (entryfiles.py has its files)
      tmp/               entries being created; emptied by `recover`
      trash/             entries being deleted; emptied by `recover`

`id` is SHA-256 of (namespace, key), or HMAC-SHA256 under the cache key when
encrypted, so that names reveal no key (decision 0012).

Who does what: the filler is the only writer. It calls `recover` once at
start, then `create`, `open_writer`, `drop`, and (through the evictor)
`entries` and `drop_if_unused`. Workers only call `open_reader`. Every change
of the tree is a rename: an entry is built whole in tmp/ and renamed into
place (an entry without valid meta never exists under entries/), and is
dropped by renaming it into trash/ before deleting it, so a reader holding its
descriptors keeps reading the version it pinned.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ferryman.cache.crypto import BlockCipher, fsync_dir, load_or_create_key, plain_entry_id
from ferryman.cache.entryfiles import (
    DATA,
    MAP,
    META,
    USED,
    BadEntry,
    EntryMeta,
    EntryReader,
    EntryWriter,
    data_length,
    encode_meta,
    read_meta,
)
from ferryman.cache.segments import SEGMENT_SIZE
from ferryman.config import Config
from ferryman.errors import ConfigError

__all__ = ["CacheDir", "EntryMeta", "EntryReader", "EntryUsage", "EntryWriter"]

log = logging.getLogger("ferryman.cache")

_ID = re.compile(r"[0-9a-f]{64}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
PROBE_BYTES = 4096  # written and synced by `probe`


@dataclass(frozen=True)
class EntryUsage:
    """One entry as the evictor sees it (no key: encrypted entries do not reveal it)."""

    id: str
    path: Path
    size_bytes: int  # allocated on disk: data's blocks plus the small files
    last_used: float  # Unix time: mtime of `used`
    in_use: bool  # a reader or the writer held a lock on it when it was scanned


class CacheDir:
    """A cache directory for one source (`namespace`), plain or encrypted (`cipher`).

    ConfigError if the directory cannot be made or used.
    """

    def __init__(
        self,
        path: Path,
        *,
        namespace: str,
        cipher: BlockCipher | None,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        self.path = path
        self.namespace = namespace
        self.cipher = cipher
        self.segment_size = segment_size  # of the entries it makes, when encrypted
        self.entries_dir = path / "entries"
        self.tmp_dir = path / "tmp"
        self.trash_dir = path / "trash"
        for directory in (path, self.entries_dir, self.tmp_dir, self.trash_dir):
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cache directory {directory}: {exc.strerror}") from None
        self._identity = _identity(path)  # a directory made again in its place is another

    @classmethod
    def of(cls, config: Config) -> CacheDir:
        """The cache directory of --cache-dir, with the cache key when --cache-encrypt
        (created if missing: the filler and workers race to it safely)."""
        if not config.cache_dir:
            raise ConfigError("the block cache needs --cache-dir")
        cipher = None
        if config.cache_encrypt:
            cipher = BlockCipher(load_or_create_key(config.cache_key_path))
        return cls(Path(config.cache_dir), namespace=config.source, cipher=cipher)

    @property
    def encrypted(self) -> bool:
        return self.cipher is not None

    def entry_id(self, key: str) -> str:
        if self.cipher is not None:
            return self.cipher.entry_id(self.namespace, key)
        return plain_entry_id(self.namespace, key)

    def entry_path(self, key: str) -> Path:
        return self._id_path(self.entry_id(key))

    def _id_path(self, entry_id: str) -> Path:
        return self.entries_dir / entry_id[:2] / entry_id

    # -- filler side -------------------------------------------------------------

    def recover(self) -> None:
        """At filler start: finish interrupted creations and deletions, drop broken entries.

        An entry goes if its meta is unreadable, was written in the other mode
        (plain vs encrypted), under another key or in the encrypted layout
        before sealed segments, belongs to another source
        (its id does not match its key), or its files are incomplete.
        """
        for directory in (self.tmp_dir, self.trash_dir):
            for child in list(os.scandir(directory)):
                _remove(Path(child.path))
        dropped = 0
        for prefix in list(os.scandir(self.entries_dir)):
            if not (prefix.is_dir(follow_symlinks=False) and len(prefix.name) == 2):
                _remove(Path(prefix.path))
                continue
            for item in list(os.scandir(prefix.path)):
                problem = self._check_entry(Path(item.path), prefix.name)
                if problem is not None:
                    log.warning("cache: dropping entry %s: %s", item.name, problem)
                    self._drop_path(Path(item.path))
                    dropped += 1
        if dropped:
            log.info("cache: recovery dropped %d broken or foreign entries", dropped)

    def _check_entry(self, path: Path, prefix: str) -> str | None:
        """Why the entry at `path` cannot be used, or None if it is sound."""
        entry_id = path.name
        if not (_ID.fullmatch(entry_id) and entry_id.startswith(prefix)):
            return "not an entry name"
        try:
            dir_fd = os.open(path, _DIR_FLAGS)
        except OSError as exc:
            return f"cannot open it ({exc.strerror})"
        try:
            meta, _ = read_meta(dir_fd, entry_id, self.cipher)
            if self.entry_id(meta.key) != entry_id:
                return "it belongs to another source"
            if os.stat(MAP, dir_fd=dir_fd, follow_symlinks=False).st_size != meta.block_count():
                return "its map has the wrong length"
            for name in (DATA, USED):
                os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except BadEntry as exc:  # torn, foreign, the other mode, or an older layout
            return str(exc).partition(": ")[2]  # what is wrong, without the entry's name
        except OSError as exc:
            return f"incomplete ({exc.filename or ''} {exc.strerror})"
        finally:
            os.close(dir_fd)
        return None

    def create(self, meta: EntryMeta) -> EntryWriter:
        """A new, empty entry for `meta`, replacing any entry of the same key.

        Built in tmp/ (meta fsynced, empty data and map) and renamed into place.
        The writer's meta names the segment size when the cache is encrypted.
        """
        meta = replace(meta, segment_size=self.segment_size if self.encrypted else 0)
        entry_id = self.entry_id(meta.key)
        self.drop(meta.key)
        draft = self.tmp_dir / f"{entry_id}.{secrets.token_hex(4)}"
        os.mkdir(draft, 0o700)
        dir_fd = os.open(draft, _DIR_FLAGS)
        try:
            _new_file(dir_fd, META, encode_meta(meta, entry_id, self.cipher))
            _new_file(dir_fd, DATA, size=data_length(meta))
            _new_file(dir_fd, MAP, size=meta.block_count())
            _new_file(dir_fd, USED)
            os.fsync(dir_fd)
            final = self._id_path(entry_id)
            final.parent.mkdir(mode=0o700, exist_ok=True)
            os.rename(draft, final)
            fsync_dir(final.parent)
        except BaseException:
            os.close(dir_fd)
            _remove(draft)
            raise
        return EntryWriter(dir_fd, entry_id, meta, self.cipher)

    def open_writer(self, key: str) -> EntryWriter | None:
        """The existing entry for `key`, or None (a broken one is dropped)."""
        entry_id = self.entry_id(key)
        path = self._id_path(entry_id)
        try:
            dir_fd = os.open(path, _DIR_FLAGS)
        except FileNotFoundError:
            return None
        try:
            try:
                meta, _ = read_meta(dir_fd, entry_id, self.cipher)
            except BaseException:
                os.close(dir_fd)
                raise
            if meta.key != key:
                os.close(dir_fd)
                raise BadEntry(f"entry {entry_id} holds another key")
            return EntryWriter(dir_fd, entry_id, meta, self.cipher)  # owns dir_fd now
        except (BadEntry, FileNotFoundError) as exc:
            log.warning("cache: dropping entry %s: %s", entry_id, exc)
            self._drop_path(path)
            return None

    def drop(self, key: str) -> None:
        """Remove the entry for `key` (renamed into trash/, then deleted); no-op if absent."""
        self._drop_path(self.entry_path(key))

    def drop_if_unused(self, entry: EntryUsage) -> bool:
        """Remove `entry` unless a reader or the writer holds it; True if it was removed.

        The exclusive lock is held across the rename, so a reader that locks the
        entry meanwhile finds it gone (EntryReader.acquire) or keeps it. An
        entry whose `used` is newer than the scan was used or made again since:
        it stays. (Its inode number cannot tell: a new entry may reuse it.)
        """
        try:
            fd = os.open(entry.path / DATA, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if _used_since(entry):
                return False  # used, or cached again, since the scan: no longer a victim
            parked = self._park(entry.path)
        finally:
            os.close(fd)
        if parked is None:
            return False
        _remove(parked)
        return True

    def probe(self, space: int) -> None:
        """Raise the OSError that shows why the directory cannot take a block now, if any.

        For a degraded cache disk (health.py): the directories are there (the
        cache directory itself the one this process started with, not one made
        again in its place: its socket and lock went with the old one), at
        least `space` bytes are free, and a small file can be written, synced
        and removed in tmp/.
        """
        if _identity(self.path) != self._identity:
            raise FileNotFoundError(errno.ENOENT, "not the directory it was", str(self.path))
        for directory in (self.entries_dir, self.tmp_dir, self.trash_dir):
            if not directory.is_dir():
                raise FileNotFoundError(errno.ENOENT, "no such directory", str(directory))
        st = os.statvfs(self.tmp_dir)
        if st.f_bavail * st.f_frsize < space:
            raise OSError(errno.ENOSPC, f"less than {space} bytes free", str(self.path))
        probe = self.tmp_dir / f"probe.{secrets.token_hex(4)}"
        fd = os.open(probe, _NEW_FILE, 0o600)
        try:
            os.write(fd, bytes(PROBE_BYTES))
            os.fdatasync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)

    def entries(self) -> Iterator[EntryUsage]:
        """Every entry under entries/ with its disk usage, last use and in-use state."""
        for prefix in os.scandir(self.entries_dir):
            if not prefix.is_dir(follow_symlinks=False):
                continue
            for item in os.scandir(prefix.path):
                try:
                    yield _usage(Path(item.path))
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                        raise  # ENOENT: dropped while we looked

    def _drop_path(self, path: Path) -> None:
        parked = self._park(path)
        if parked is not None:
            _remove(parked)

    def _park(self, path: Path) -> Path | None:
        """Rename an entry into trash/; None if it was not there."""
        parked = self.trash_dir / f"{path.name}.{secrets.token_hex(4)}"
        try:
            os.rename(path, parked)
        except FileNotFoundError:
            return None
        return parked

    # -- worker side -------------------------------------------------------------

    def open_reader(self, key: str) -> EntryReader | None:
        """The entry for `key`, or None: not cached, vanished meanwhile, or unreadable.

        A disk that fails to read is a miss here: the filler, asked next,
        reports the condition and the store answers.
        """
        entry_id = self.entry_id(key)
        path = self._id_path(entry_id)
        try:
            dir_fd = os.open(path, _DIR_FLAGS)
        except OSError:
            return None
        try:
            reader = EntryReader(dir_fd, str(path), entry_id, self.cipher)
        except (BadEntry, OSError):
            return None  # the filler's recovery deals with broken entries
        if reader.meta.key != key:
            reader.close()
            return None
        return reader


def _usage(path: Path) -> EntryUsage:
    dir_fd = os.open(path, _DIR_FLAGS)
    try:
        allocated = os.fstat(dir_fd).st_blocks * 512
        for name in (META, MAP, USED):
            allocated += os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_blocks * 512
        last_used = os.stat(USED, dir_fd=dir_fd, follow_symlinks=False).st_mtime
        data_fd = os.open(DATA, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            allocated += os.fstat(data_fd).st_blocks * 512
            try:
                fcntl.flock(data_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                in_use = False
            except BlockingIOError:
                in_use = True
        finally:
            os.close(data_fd)  # releases the test lock
    finally:
        os.close(dir_fd)
    return EntryUsage(path.name, path, allocated, last_used, in_use)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _used_since(entry: EntryUsage) -> bool:
    try:
        return os.stat(entry.path / USED, follow_symlinks=False).st_mtime > entry.last_used
    except FileNotFoundError:
        return False


def _new_file(dir_fd: int, name: str, content: bytes = b"", *, size: int = 0) -> None:
    fd = os.open(name, _NEW_FILE, 0o600, dir_fd=dir_fd)
    try:
        if content:
            os.write(fd, content)
        if size:
            os.ftruncate(fd, size)  # sparse: no block is allocated until written
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Delete a file or a directory tree; already gone is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass

"""The cache key, sealing of cache blocks, and entry names that reveal nothing.

With `--cache-encrypt` every block (as a run of segments: segments.py) and
every entry's metadata is sealed with AES-256-GCM under a 32-byte key kept
in a file of its own (mode 0600). Entry directory names are HMAC-SHA256 of
(source, object key) under that key, so the cache directory holds no object
key, ETag or plaintext byte. Without encryption, names are plain SHA-256
(`plain_entry_id`).

Two subkeys are derived from the key file (one for sealing, one for names),
so that the same secret is never used by two algorithms.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ferryman.errors import ConfigError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


class BadBlock(Exception):
    """A sealed block (or sealed metadata) failed its check: torn, moved or tampered with."""


def plain_entry_id(namespace: str, key: str) -> str:
    """An entry's name without encryption: SHA-256 hex of the source and the object key."""
    return hashlib.sha256(f"{namespace}\0{key}".encode()).hexdigest()


class BlockCipher:
    """AES-256-GCM sealing of blocks; HMAC-SHA256 entry names. Thread-safe."""

    OVERHEAD = NONCE_BYTES + TAG_BYTES  # 28: what sealing adds to each block

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the cache key must be {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(_subkey(key, b"ferryman cache blocks"))
        self._name_key = _subkey(key, b"ferryman cache names")

    def seal(self, plain: bytes | memoryview, aad: bytes) -> bytes:
        """nonce (12 random bytes) + ciphertext + tag (16 bytes)."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def open(self, sealed: bytes | memoryview, aad: bytes) -> bytes:
        """The plaintext of `sealed`; BadBlock if it was not sealed by this key with `aad`."""
        if len(sealed) < self.OVERHEAD:
            raise BadBlock(f"sealed block too short ({len(sealed)} bytes)")
        try:
            # memoryview: slicing bytes would copy the block (measured 9x slower for 1 MiB)
            view = memoryview(sealed)
            return self._aead.decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], aad)
        except InvalidTag:
            raise BadBlock("sealed block failed its check") from None

    def entry_id(self, namespace: str, key: str) -> str:
        """An entry's name: HMAC-SHA256 hex of the source and the object key."""
        message = f"{namespace}\0{key}".encode()
        return hmac.new(self._name_key, message, hashlib.sha256).hexdigest()


def _subkey(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, purpose, hashlib.sha256).digest()


# -- the key file --------------------------------------------------------------


def load_or_create_key(path: Path) -> bytes:
    """The 32-byte key in `path`, created (random, mode 0600) if the file is missing.

    Creation is atomic: the key is written and fsynced under a unique name and
    then hard-linked to `path`, which fails if the name exists. Two processes
    racing to create it therefore both end with the one key that won, and no
    process ever reads a half-written key.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    _create_key(path)
    return _read_key(path)


# What an operator can do about a key file that is there but wrong.
_REPLACE = (
    "restore the right key file, or move it away to have a new key made (the cache"
    " then starts empty: what it holds cannot be read without the old key)"
)


def _read_key(path: Path) -> bytes:
    """ConfigError, naming the file and what to do, for any key that cannot be used."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                f"cache key {path} is a symbolic link; give --cache-key-file the file itself"
            ) from None
        raise ConfigError(
            f"cache key {path}: cannot open it ({exc.strerror}); check --cache-key-file"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"cache key {path} is not a regular file; {_REPLACE}")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"cache key {path}: group or others may access it "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 on it"
            )
        if st.st_size != KEY_BYTES:
            raise ConfigError(
                f"cache key {path} holds {st.st_size} bytes, a cache key is {KEY_BYTES} bytes;"
                f" {_REPLACE}"
            )
        data = os.read(fd, KEY_BYTES)
    except OSError as exc:
        raise ConfigError(f"cache key {path}: cannot read it ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        raise ConfigError(f"cache key {path}: could read only {len(data)} bytes of it; {_REPLACE}")
    return data


def _create_key(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cache key {path}: cannot create {parent} ({exc.strerror});"
            " give --cache-key-file a path in a directory ferryman may write in"
        ) from None
    draft = parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(draft, path)
        except FileExistsError:
            return  # another process created it first: its key is the key
        fsync_dir(parent)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return
        raise ConfigError(
            f"cache key {path}: cannot create it ({exc.strerror});"
            " give --cache-key-file a path in a directory ferryman may write in"
        ) from None
    finally:
        try:
            os.unlink(draft)
        except FileNotFoundError:
            pass


def fsync_dir(path: Path) -> None:
    """Make a rename or link into directory `path` durable (the cache directory uses it too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

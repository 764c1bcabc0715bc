"""The cache key file and block sealing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.cache.crypto import (
    KEY_BYTES,
    BadBlock,
    BlockCipher,
    load_or_create_key,
    plain_entry_id,
)
from ferryman.errors import ConfigError

KEY = bytes(range(32))


def test_key_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sub" / "cache.key"
    key = load_or_create_key(path)
    assert len(key) == KEY_BYTES
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_key(path) == key
    assert sorted(p.name for p in path.parent.iterdir()) == ["cache.key"]  # no draft left


def test_two_caches_get_different_keys(tmp_path: Path) -> None:
    assert load_or_create_key(tmp_path / "a") != load_or_create_key(tmp_path / "b")


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_wrong_length_is_a_config_error(tmp_path: Path, length: int) -> None:
    path = tmp_path / "cache.key"
    path.write_bytes(b"k" * length)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=f"holds {length} bytes"):
        load_or_create_key(path)
    assert path.read_bytes() == b"k" * length  # never replaced


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o660])
def test_key_others_can_access_is_a_config_error(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "cache.key"
    path.write_bytes(KEY)
    path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_key(path)


def test_key_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cache.key"
    path.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=r"cache key .* is not a regular file; .*move it away"):
        load_or_create_key(path)


def test_key_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "cache.key"
    os.mkfifo(path, 0o600)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_or_create_key(path)


def test_key_that_is_a_symlink_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "real.key").write_bytes(KEY)
    (tmp_path / "real.key").chmod(0o600)
    path = tmp_path / "cache.key"
    path.symlink_to(tmp_path / "real.key")
    with pytest.raises(ConfigError, match="is a symbolic link; give --cache-key-file the file"):
        load_or_create_key(path)


RACER = """
import sys, pathlib
from ferryman.cache.crypto import load_or_create_key
sys.stdin.readline()  # start together
print(load_or_create_key(pathlib.Path(sys.argv[1])).hex())
"""


def test_processes_racing_to_create_the_key_agree(tmp_path: Path) -> None:
    for round_ in range(3):
        path = tmp_path / f"round{round_}" / "cache.key"
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, str(path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        keys = {racer.communicate(timeout=60)[0].strip() for racer in racers}
        assert all(racer.returncode == 0 for racer in racers)
        assert keys == {path.read_bytes().hex()}
        assert [p.name for p in path.parent.iterdir()] == ["cache.key"]


@given(st.binary(max_size=3000), st.binary(max_size=80))
def test_seal_then_open_round_trips(plain: bytes, aad: bytes) -> None:
    cipher = BlockCipher(KEY)
    sealed = cipher.seal(plain, aad)
    assert len(sealed) == len(plain) + BlockCipher.OVERHEAD == len(plain) + 28
    assert cipher.open(sealed, aad) == plain


def test_sealing_twice_gives_different_bytes() -> None:
    cipher = BlockCipher(KEY)
    plain = b"the same block" * 10
    assert cipher.seal(plain, b"a") != cipher.seal(plain, b"a")


@given(st.binary(min_size=1, max_size=300), st.data())
def test_any_flipped_bit_is_a_bad_block(plain: bytes, data: st.DataObject) -> None:
    cipher = BlockCipher(KEY)
    sealed = bytearray(cipher.seal(plain, b"aad"))
    position = data.draw(st.integers(0, len(sealed) - 1))
    sealed[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(BadBlock):
        cipher.open(bytes(sealed), b"aad")


def test_wrong_aad_key_or_length_is_a_bad_block() -> None:
    cipher = BlockCipher(KEY)
    sealed = cipher.seal(b"block 7 of version 1", b"id\0etag1\0007")
    with pytest.raises(BadBlock):
        cipher.open(sealed, b"id\0etag1\0008")  # moved to another position
    with pytest.raises(BadBlock):
        cipher.open(sealed, b"id\0etag2\0007")  # moved to another version
    with pytest.raises(BadBlock):
        BlockCipher(bytes(32)).open(sealed, b"id\0etag1\0007")  # another key
    with pytest.raises(BadBlock):
        cipher.open(sealed[:27], b"id\0etag1\0007")  # shorter than nonce + tag
    with pytest.raises(BadBlock):
        cipher.open(sealed[:-1], b"id\0etag1\0007")  # cut


def test_cipher_needs_a_32_byte_key() -> None:
    with pytest.raises(ValueError):
        BlockCipher(b"short")


def test_entry_ids_are_stable_and_separate_sources_keys_and_cache_keys() -> None:
    cipher = BlockCipher(KEY)
    one = cipher.entry_id("s3://bucket", "a/b.txt")
    assert one == BlockCipher(KEY).entry_id("s3://bucket", "a/b.txt")
    assert len(one) == 64 and int(one, 16) >= 0
    others = {
        cipher.entry_id("s3://bucket", "a/b.txt2"),
        cipher.entry_id("s3://other", "a/b.txt"),
        cipher.entry_id("s3://bucket/a", "b.txt"),
        BlockCipher(bytes(32)).entry_id("s3://bucket", "a/b.txt"),
        plain_entry_id("s3://bucket", "a/b.txt"),
    }
    assert one not in others and len(others) == 5


def test_plain_entry_id_is_sha256_of_source_and_key() -> None:
    import hashlib

    expected = hashlib.sha256(b"s3://bucket\0a/b.txt").hexdigest()
    assert plain_entry_id("s3://bucket", "a/b.txt") == expected


def test_key_file_mode_is_checked_even_when_umask_is_loose(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "loose" / "cache.key"
        load_or_create_key(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

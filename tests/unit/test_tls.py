"""The TLS certificate and key as the boot step and SIGHUP check them (server/tls.py)."""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ferryman.config import Config, check_combinations
from ferryman.errors import ConfigError
from ferryman.server.tls import Certificates, context_from_fds
from tests.tlscerts import Pair, make_pair


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return make_pair(tmp_path / "good", "good")


def refused(cert: Path, key: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        Certificates.load(str(cert), str(key))
    return str(caught.value)


def test_a_good_pair_is_held_in_sealed_memory_files(pair: Pair) -> None:
    held = Certificates.load(str(pair.cert), str(pair.key))
    try:
        assert held.subject == "CN=good"
        for fd, path in zip(held.fds, (pair.cert, pair.key), strict=True):
            assert os.pread(fd, 1 << 20, 0) == path.read_bytes()
            with pytest.raises(PermissionError):  # sealed: nobody changes what workers load
                os.pwrite(fd, b"x", 0)
    finally:
        held.close()


def test_a_worker_context_comes_from_the_memory_files_and_closes_them(pair: Pair) -> None:
    held = Certificates.load(str(pair.cert), str(pair.key))
    cert_fd, key_fd = (os.dup(fd) for fd in held.fds)
    held.close()
    context = context_from_fds(cert_fd, key_fd)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION
    for fd in (cert_fd, key_fd):
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_chain_is_read_leaf_first(tmp_path: Path, pair: Pair) -> None:
    issuer = make_pair(tmp_path / "issuer", "issuer")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pair.cert.read_bytes() + issuer.cert.read_bytes())
    held = Certificates.load(str(chain), str(pair.key))
    held.close()
    assert "does not belong" in refused(chain, issuer.key)  # the key of the leaf, not another


def test_a_missing_file_is_named_with_its_flag(tmp_path: Path, pair: Pair) -> None:
    line = refused(tmp_path / "nothing.crt", pair.key)
    assert f"TLS certificate {tmp_path / 'nothing.crt'} (--tls-cert): cannot read it" in line
    assert "No such file" in line
    assert "(--tls-key): cannot read it" in refused(pair.cert, tmp_path / "nothing.key")


def test_a_directory_is_not_a_key(tmp_path: Path, pair: Pair) -> None:
    assert "(--tls-key) is not a regular file" in refused(pair.cert, tmp_path)


def test_an_empty_file_or_one_without_a_certificate(tmp_path: Path, pair: Pair) -> None:
    empty = tmp_path / "empty.crt"
    empty.write_bytes(b"")
    assert "(--tls-cert) is empty" in refused(empty, pair.key)
    assert "holds no PEM certificate" in refused(pair.key, pair.key)  # the files swapped
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    assert "(--tls-key) holds no private key" in refused(pair.cert, garbage)


def test_a_key_of_another_certificate_is_refused(tmp_path: Path, pair: Pair) -> None:
    other = make_pair(tmp_path / "other", "other")
    line = refused(pair.cert, other.key)
    assert f"TLS key {other.key} (--tls-key) does not belong to TLS certificate {pair.cert}" in line


def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path, pair: Pair) -> None:
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    assert "is encrypted with a passphrase" in refused(pair.cert, locked)


def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = make_pair(tmp_path, "old", not_before=now - timedelta(days=60),
                    not_after=now - timedelta(days=1))  # fmt: skip
    line = refused(old.cert, old.key)
    assert "(CN=old) expired on" in line and "renew it" in line


def test_a_certificate_near_its_end_or_not_yet_valid_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    soon = make_pair(tmp_path / "soon", "soon", not_after=now + timedelta(days=3))
    later = make_pair(tmp_path / "later", "later", not_before=now + timedelta(days=1))
    with caplog.at_level(logging.WARNING, logger="ferryman.tls"):
        for pair in (soon, later):
            Certificates.load(str(pair.cert), str(pair.key)).close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("(CN=soon) expires on" in m for m in messages), messages
    assert any("(CN=later) is not valid before" in m for m in messages), messages


@pytest.mark.parametrize("given", ["tls_cert", "tls_key"])
def test_a_certificate_needs_its_key_and_the_key_its_certificate(
    tmp_path: Path, given: str
) -> None:
    base = Config(source=str(tmp_path))
    config = (
        replace(base, tls_cert="/etc/some.pem")
        if given == "tls_cert"
        else replace(base, tls_key="/etc/some.pem")
    )
    with pytest.raises(ConfigError, match=r"--tls-(cert|key) needs --tls-(key|cert)"):
        check_combinations(config)

"""TLS: the certificate and key, checked once and held; the server's SSLContext.

With --tls-cert and --tls-key, every worker serves HTTPS on the shared
listening socket (decisions/0030). The arbiter reads both files once
(`Certificates.load`): they must parse, the key must belong to the
certificate, the certificate must not have expired. The bytes it checked
are kept in two sealed memory files (memfd), which every worker it starts
inherits and builds its SSLContext from (`server_context`), never from the
paths. So a worker started later, a crash's replacement or a rolling
restart's successor, serves exactly the pair the arbiter last checked,
whatever happened to the files since: a certificate half written by a
renewal job cannot stop the server.

On SIGHUP the arbiter loads the files again. A good pair replaces the held
one before the rolling restart starts its new workers, so once the restart
is done every new connection gets it; connections already open keep theirs
until they end. A bad pair is logged and the held one stays.

The context: TLS 1.2 at least, ALPN `http/1.1` only, no renegotiation, and
Python's default ciphers over OpenSSL's TLS 1.3 suites (forward-secret
AEAD and SHA-2 suites; no RSA key exchange, no SHA-1, no 3DES or RC4).

This module imports neither asyncio nor the event loop: the arbiter uses it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import ssl
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ferryman.errors import ConfigError

log = logging.getLogger("ferryman.tls")

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
ALPN_PROTOCOLS = ("http/1.1",)
EXPIRY_WARNING = timedelta(days=14)  # a certificate closer than this to its end is logged
_MAX_PEM = 1024 * 1024  # a certificate chain or key file larger than this is not one
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """The SSLContext every TLS connection of a worker is served with.

    ssl.SSLError when the files cannot be used; `Certificates.load` has
    checked them, and says why in words, before any worker calls this.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    # Client-initiated renegotiation costs the server a handshake per request of it.
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
    return context


def context_from_fds(cert_fd: int, key_fd: int) -> ssl.SSLContext:
    """A worker's SSLContext, from the memory files its arbiter passed down (then closed).

    A ConfigError (the worker's boot fails, status 2) if they cannot be used,
    which would be a bug: the arbiter built the same context from them.
    """
    try:
        return server_context(_fd_path(cert_fd), _fd_path(key_fd))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"the TLS pair passed by the arbiter cannot be used: {exc}") from None
    finally:
        os.close(cert_fd)
        os.close(key_fd)


def _no_passphrase() -> bytes:
    # Without a callback, OpenSSL would prompt on the terminal for an encrypted key.
    raise ValueError("the key is encrypted")


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


@dataclass
class Certificates:
    """A checked certificate chain and key, held in two sealed memory files."""

    cert_fd: int
    key_fd: int
    subject: str
    not_after: datetime

    @classmethod
    def load(cls, cert_path: str, key_path: str, now: datetime | None = None) -> Certificates:
        """Read and check the pair; a ConfigError names the file and what is wrong."""
        cert_pem = _read_pem(cert_path, "TLS certificate", "--tls-cert")
        key_pem = _read_pem(key_path, "TLS key", "--tls-key")
        subject, not_after = _check_pair(cert_path, cert_pem, key_path, key_pem, now)
        try:
            cert_fd = _sealed_memfd("ferryman-tls-cert", cert_pem)
            try:
                key_fd = _sealed_memfd("ferryman-tls-key", key_pem)
            except BaseException:
                os.close(cert_fd)
                raise
        except OSError as exc:  # out of descriptors or memory
            raise ConfigError(
                f"TLS certificate {cert_path} (--tls-cert): cannot hold it in memory"
                f" ({exc.strerror}); free descriptors or memory, then try again"
            ) from None
        held = cls(cert_fd, key_fd, subject, not_after)
        try:
            server_context(_fd_path(cert_fd), _fd_path(key_fd))
        except (OSError, ValueError) as exc:
            held.close()
            raise ConfigError(
                f"TLS certificate {cert_path} (--tls-cert) and key {key_path} (--tls-key):"
                f" OpenSSL refuses them ({exc}); give a PEM certificate chain and its"
                " unencrypted PEM key"
            ) from None
        return held

    @property
    def fds(self) -> tuple[int, int]:
        """What a worker inherits: (certificate chain, key)."""
        return self.cert_fd, self.key_fd

    def describe(self) -> str:
        return f"{self.subject}, valid until {self.not_after:%Y-%m-%d %H:%M} UTC"

    def close(self) -> None:
        for fd in (self.cert_fd, self.key_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.cert_fd = self.key_fd = -1


def _read_pem(path: str, what: str, flag: str) -> bytes:
    named = f"{what} {path} ({flag})"
    fix = f"give {flag} a PEM file ferryman may read"
    try:
        # O_NONBLOCK: a FIFO named by mistake must not hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{named}: cannot read it ({exc.strerror}); {fix}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{named} is not a regular file; {fix}")
        if info.st_size > _MAX_PEM:
            raise ConfigError(f"{named} holds {info.st_size} bytes, more than a PEM file; {fix}")
        data = os.read(fd, _MAX_PEM + 1)
    except OSError as exc:
        raise ConfigError(f"{named}: cannot read it ({exc.strerror}); {fix}") from None
    finally:
        os.close(fd)
    if not data.strip():
        raise ConfigError(f"{named} is empty; {fix}")
    return data


def _check_pair(
    cert_path: str, cert_pem: bytes, key_path: str, key_pem: bytes, now: datetime | None
) -> tuple[str, datetime]:
    """The leaf certificate's subject and end of validity, once the pair is known to fit."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    cert_named = f"TLS certificate {cert_path} (--tls-cert)"
    key_named = f"TLS key {key_path} (--tls-key)"
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ConfigError(
            f"{cert_named} holds no PEM certificate (-----BEGIN CERTIFICATE-----);"
            " give the certificate, then its intermediates, in PEM"
        ) from None
    leaf = chain[0]
    if b"ENCRYPTED" in key_pem:
        raise ConfigError(
            f"{key_named} is encrypted with a passphrase, which ferryman cannot ask for;"
            " store it decrypted (openssl pkey -in KEY -out PLAIN), readable only by"
            " ferryman's user"
        )
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{key_named} holds no private key ferryman can read (-----BEGIN PRIVATE KEY-----);"
            " give the certificate's key in PEM"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    try:
        leaf_public = leaf.public_key().public_bytes(der, public)
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{cert_named}: its public key is of a kind ferryman cannot read;"
            " use an RSA, ECDSA or Ed25519 certificate"
        ) from None
    if key.public_key().public_bytes(der, public) != leaf_public:
        raise ConfigError(
            f"{key_named} does not belong to {cert_named} (the first certificate in the file);"
            " give the key the certificate was issued for"
        )
    now = now or datetime.now(UTC)
    not_after = leaf.not_valid_after_utc
    subject = leaf.subject.rfc4514_string() or "(no subject)"
    if not_after < now:
        raise ConfigError(
            f"{cert_named} ({subject}) expired on {not_after:%Y-%m-%d %H:%M} UTC;"
            " renew it, then start again (or send SIGHUP to a running server)"
        )
    if leaf.not_valid_before_utc > now:
        log.warning("%s (%s) is not valid before %s UTC: clients refuse it until then",
                    cert_named, subject, f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M}")  # fmt: skip
    elif not_after - now < EXPIRY_WARNING:
        log.warning("%s (%s) expires on %s UTC: renew it, then send SIGHUP",
                    cert_named, subject, f"{not_after:%Y-%m-%d %H:%M}")  # fmt: skip
    return subject, not_after


def _sealed_memfd(name: str, data: bytes) -> int:
    """A memory file holding `data`, sealed so that nobody can change it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd

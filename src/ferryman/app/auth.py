"""Access control: bearer tokens, signed URLs, and the rule that joins them.

Who may do what (docs/decisions/0008-tokens-and-signed-urls.md):

* READ is open unless `private`; WRITE needs `allow_write` and either a token
  with write scope whose prefix covers the path, or a valid signature for this
  exact method and raw path.
* A signature that is valid for another method (GET, HEAD, PUT, DELETE) is
  told apart from a forged one by trying the MAC of each: "this URL is signed
  for GET, not PUT". The method is not in the URL, so URLs signed before this
  check still verify.
* Once tokens or a signing key are configured, credentials that are present
  are always checked: an unknown token or a bad signature is 403 even for a
  public read. Missing credentials where they are needed are 401 with a
  `WWW-Authenticate: Bearer` challenge.

Secrets stay out of sight: the token table keeps only SHA-256 digests of the
tokens and compares them with `hmac.compare_digest`, every entry every time;
no error message, repr or log line carries a token or a line of the file.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from ferryman.app.paths import resolve
from ferryman.config import parse_duration
from ferryman.errors import ConfigError, HttpError
from ferryman.http.parser import Request

SIGNABLE_METHODS = ("GET", "HEAD", "PUT", "DELETE")  # what ferryman answers
EXPIRES_PARAM = "ferryman-expires"
SIGNATURE_PARAM = "ferryman-signature"
ONCE_PARAM = "ferryman-once"  # "1": the URL allows one write (recorded in the catalog)
_PARAMS = frozenset((EXPIRES_PARAM, SIGNATURE_PARAM, ONCE_PARAM))
MIN_KEY_BYTES = 32
REALM = 'Bearer realm="ferryman"'

# RFC 6750 2.1 b64token; a token outside it could not be sent as a Bearer credential.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2 token
_EXPIRES = re.compile(rb"[0-9]{1,15}")
_EXPIRES_NAME, _SIGNATURE_NAME = EXPIRES_PARAM.encode(), SIGNATURE_PARAM.encode()
_ONCE_NAME = ONCE_PARAM.encode()
ONCE_METHODS = ("PUT", "DELETE")  # a read is often many requests (ranges, resumes)
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"  # RFC 3986 pchar and "/"; "%" keeps existing escapes


class Access(enum.Enum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Grant:
    scope: Access
    prefix: str  # normalised, always ends with "/": "/photos/" or "/"

    def covers(self, access: Access, path: str) -> bool:
        """Scope allows `access` (write implies read) and `path` is under the prefix.

        Whole segments only: "/photos/" covers "/photos", "/photos/" and
        "/photos/a.jpg", never "/photos-private/x".
        """
        if access is Access.WRITE and self.scope is not Access.WRITE:
            return False
        if self.prefix == "/":
            return True
        return path == self.prefix[:-1] or path.startswith(self.prefix)


class TokenTable:
    """`TOKEN SCOPE [PATH-PREFIX]` lines; only digests of the tokens are kept."""

    __slots__ = ("_entries",)

    def __init__(self, entries: list[tuple[bytes, Grant]]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def load(cls, path: str) -> TokenTable:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read tokens file {path}: {exc.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"tokens file {path} is not UTF-8 text") from None
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, source: str = "<tokens>") -> TokenTable:
        """Blank lines and lines starting with "#" are skipped. Errors name the
        line number and never quote the line: any field of it may be a token."""
        entries: list[tuple[bytes, Grant]] = []
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            where = f"{source}, line {number}"
            if len(fields) not in (2, 3):
                raise ConfigError(f"{where}: expected TOKEN SCOPE [PATH-PREFIX]")
            if not _B64TOKEN.fullmatch(fields[0]):
                raise ConfigError(f"{where}: the token has characters a Bearer token cannot carry")
            try:
                scope = Access(fields[1])
            except ValueError:
                raise ConfigError(f"{where}: the scope must be 'read' or 'write'") from None
            prefix = _normalise_prefix(fields[2] if len(fields) == 3 else "/", where)
            entries.append((_digest(fields[0]), Grant(scope, prefix)))
        return cls(entries)

    def lookup(self, token: str) -> list[Grant]:
        """Every grant of `token`, [] if unknown. Each stored digest is compared,
        in constant time, whatever matched before."""
        wanted = _digest(token)
        grants: list[Grant] = []
        for digest, grant in self._entries:
            if hmac.compare_digest(digest, wanted):
                grants.append(grant)
        return grants

    def __repr__(self) -> str:
        return f"<TokenTable: {len(self._entries)} entries, tokens hidden>"


class Verdict(NamedTuple):
    """A signature checked: valid, or the reason it is not (the detail of the 403)."""

    valid: bool
    problem: str = ""
    once: SingleUse | None = None  # a valid single-use URL: what the write must consume


class SingleUse(NamedTuple):
    """A single-use signed URL, as the catalog records its use (never the signature itself)."""

    digest: str  # hex SHA-256 of the signature
    expires_at: int  # after this the URL is refused anyway: the record can go


class SigningKey:
    """HMAC-SHA256 signatures over f"{METHOD}\\n{raw path}\\n{expires_at}", with a
    last line "once" for a single-use URL (so the parameter cannot be dropped)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"signing key has {len(key)} bytes, at least {MIN_KEY_BYTES} needed")
        self._key = key

    @classmethod
    def load(cls, path: str) -> SigningKey:
        try:
            with open(path, "rb") as handle:
                key = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read signing key file {path}: {exc.strerror}") from None
        if key.endswith(b"\r\n"):
            key = key[:-2]
        elif key.endswith(b"\n"):
            key = key[:-1]
        try:
            return cls(key)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def sign(self, method: str, path: str, expires_at: int, *, once: bool = False) -> str:
        """Lower-case hex. `path` is the raw path as the client sends it (UTF-8 if not ASCII)."""
        return self._sign(_method(method), path.encode("utf-8"), expires_at, once)

    def sign_url(self, url: str, method: str, expires_at: int, *, once: bool = False) -> str:
        """`url` with expiry and signature appended to its query (earlier ones replaced).

        Characters a client would percent-encode are encoded first, so the URL
        returned is exactly what is signed and what the client will send. A
        method ferryman never answers is a ConfigError: such a URL could not work."""
        if method.upper() not in SIGNABLE_METHODS:
            raise ConfigError(
                f"method {method!r}: a signed URL may allow {', '.join(SIGNABLE_METHODS)}"
            )
        if once and method.upper() not in ONCE_METHODS:
            raise ConfigError(
                f"--once: only a {' or '.join(ONCE_METHODS)} URL can be single-use "
                "(a read is often several requests: ranges, resumed downloads)"
            )
        parts = urlsplit(url)
        path = quote(parts.path or "/", safe=_PATH_SAFE)
        kept = [p for p in parts.query.split("&") if p and p.partition("=")[0] not in _PARAMS]
        signature = self.sign(method, path, expires_at, once=once)
        if once:
            kept.append(f"{ONCE_PARAM}=1")
        kept += [f"{EXPIRES_PARAM}={expires_at}", f"{SIGNATURE_PARAM}={signature}"]
        return urlunsplit((parts.scheme, parts.netloc, path, "&".join(kept), parts.fragment))

    def verify(self, method: str, raw_path: bytes, raw_query: bytes, now: int) -> bool | None:
        """None: no signature parameters. False: present but malformed, altered,
        for another method or expired (now > expires_at). True: valid for this
        method and raw path."""
        verdict = self.check(method, raw_path, raw_query, now)
        return None if verdict is None else verdict.valid

    def check(
        self, method: str, raw_path: bytes, raw_query: bytes, now: int, *, also: str = ""
    ) -> Verdict | None:
        """Like verify, saying why not: None without signature parameters, else a Verdict.

        Valid for `method` (or for `also`, when given). A MAC that matches
        another of SIGNABLE_METHODS is reported as such, not as a forgery.
        """
        found = _signature_params(raw_query)
        if found is None:
            return None
        if found is False:
            return Verdict(False, f"malformed {EXPIRES_PARAM}, {SIGNATURE_PARAM} or {ONCE_PARAM}")
        if not _METHOD.fullmatch(method):
            return Verdict(False, "invalid signature")
        expires_at, given, once = found
        wanted = (method.upper(), also) if also else (method.upper(),)
        others = tuple(m for m in SIGNABLE_METHODS if m not in wanted)
        for candidate in wanted + others:  # the request's own method first: one MAC if valid
            expected = self._sign(candidate, raw_path, expires_at, once).encode("ascii")
            if hmac.compare_digest(expected, given):
                break
        else:
            return Verdict(False, "invalid signature")
        if candidate not in wanted:
            return Verdict(False, f"this URL is signed for {candidate}, not {method.upper()}")
        if now > expires_at:
            return Verdict(False, "this signed URL has expired")
        if not once:
            return Verdict(True)
        if candidate not in ONCE_METHODS:  # never signed so by ferryman sign
            return Verdict(False, f"a {candidate} URL cannot be single-use")
        return Verdict(True, once=SingleUse(hashlib.sha256(given).hexdigest(), expires_at))

    def _sign(self, method: str, path: bytes, expires_at: int, once: bool = False) -> str:
        message = b"%s\n%s\n%d" % (method.encode("ascii"), path, expires_at)
        if once:
            message += b"\nonce"
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "<SigningKey: hidden>"


def check_signable_url(url: str) -> None:
    """ConfigError unless `url` is absolute http(s) with a host: what `ferryman sign`
    prints is handed to someone who has nothing else to resolve it against."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{url!r} is not an absolute URL: give the scheme and host, "
            "e.g. http://host:8000/path/file"
        )


def _signature_params(raw_query: bytes) -> tuple[int, bytes, bool] | Literal[False] | None:
    """(expires_at, signature, single-use) from a raw query; None if neither the
    expiry nor the signature is there; False if they are malformed, repeated or
    only one is present, or the single-use mark is anything but one "=1"."""
    expires: list[bytes] = []
    signature: list[bytes] = []
    once: list[bytes] = []
    for pair in raw_query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == _EXPIRES_NAME:
            expires.append(value)
        elif name == _SIGNATURE_NAME:
            signature.append(value)
        elif name == _ONCE_NAME:
            once.append(value)
    if not expires and not signature:
        return None
    if len(expires) != 1 or len(signature) != 1 or not _EXPIRES.fullmatch(expires[0]):
        return False
    if once not in ([], [b"1"]):
        return False
    return int(expires[0]), signature[0], bool(once)


def signed_expiry(raw_query: bytes) -> int | None:
    """The expiry a signed URL's query carries (checked or not); None when it has none."""
    found = _signature_params(raw_query)
    return found[0] if found else None


def expires_in(text: str, now: int) -> int:
    """'1h', '30m', '7d', '3600' (seconds) from `now` -> an absolute epoch time."""
    seconds = parse_duration(text)
    if seconds < 1:
        raise ConfigError(f"expiry {text!r} is not in the future (examples: 30m, 1h, 7d)")
    return now + int(seconds)


class Authorizer:
    """Decides one request; the router calls `check` before doing anything."""

    def __init__(
        self,
        *,
        tokens: TokenTable | None,
        signing_key: SigningKey | None,
        private: bool,
        allow_write: bool,
    ) -> None:
        if (allow_write or private) and tokens is None and signing_key is None:
            flag = "--allow-write" if allow_write else "--private"
            raise ConfigError(f"{flag} needs --tokens or --signing-key")
        self.tokens = tokens
        self.signing_key = signing_key
        self.private = private
        self.allow_write = allow_write

    def check(self, request: Request, access: Access, path: str, now: int) -> SingleUse | None:
        """Return if allowed, else raise HttpError 401 or 403. `path` is the
        normalised path (RequestPath.url()) the request targets.

        Returns the single-use URL this request came with, if any: the write
        must record its use (and refuse it if it was used already).
        """
        if access is Access.WRITE and not self.allow_write:
            raise HttpError(403, "forbidden", "writes are disabled (--allow-write)")
        if self.tokens is None and self.signing_key is None:
            return None  # a plain public server: credentials mean nothing, none are checked
        token = _bearer_token(request.headers.get("authorization"))
        signed = self._verify_signature(request, access, now)
        if token is None and signed is None:
            if access is Access.READ and not self.private:
                return None
            raise HttpError(401, "unauthorized", "credentials are needed", (_CHALLENGE,))
        allowed = False
        if token is not None:
            grants = self.tokens.lookup(token) if self.tokens is not None else []
            if not grants:
                raise HttpError(403, "forbidden", "unknown token")
            allowed = any(grant.covers(access, path) for grant in grants)
        if signed is not None:
            if not signed.valid:
                raise HttpError(403, "forbidden", signed.problem)
            allowed = True
        if not allowed and (access is Access.WRITE or self.private):
            verb = "write" if access is Access.WRITE else "read"
            raise HttpError(403, "forbidden", f"the token may not {verb} {path}")
        return signed.once if signed is not None else None

    def _verify_signature(self, request: Request, access: Access, now: int) -> Verdict | None:
        if self.signing_key is None:  # parameters present but nothing to check them with
            if _signature_params(request.query) is None:
                return None
            return Verdict(False, "this server checks no signed URLs (no --signing-key)")
        # a URL signed for GET also answers HEAD, which shows less
        also = "GET" if access is Access.READ and request.method == "HEAD" else ""
        return self.signing_key.check(request.method, request.path, request.query, now, also=also)


_CHALLENGE = ("WWW-Authenticate", REALM)
_INVALID_REQUEST = ("WWW-Authenticate", f'{REALM}, error="invalid_request"')


def _bearer_token(header: str | None) -> str | None:
    """The token of `Authorization: Bearer TOKEN`; None when absent or another
    scheme (browsers send Basic on their own); 401 invalid_request if malformed."""
    if header is None:
        return None
    fields = header.split()
    if fields and fields[0].lower() != "bearer":
        return None
    if len(fields) != 2 or not _B64TOKEN.fullmatch(fields[1]):
        detail = "malformed Authorization header: expected 'Bearer TOKEN'"
        raise HttpError(401, "unauthorized", detail, (_INVALID_REQUEST,))
    return fields[1]


def _normalise_prefix(text: str, where: str) -> str:
    if not text.startswith("/"):
        raise ConfigError(f"{where}: the path prefix must start with '/'")
    try:
        return resolve(text.encode("utf-8")).url(slash=True)
    except HttpError:
        raise ConfigError(f"{where}: the path prefix climbs above the root or is hidden") from None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _method(method: str) -> str:
    if not _METHOD.fullmatch(method):
        raise ConfigError(f"invalid method {method!r}")
    return method.upper()

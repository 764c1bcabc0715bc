"""What a `--catalog` URL names, and the URL as messages may show it (pure).

    sqlite:///ABSOLUTE/PATH                       a SQLite file
    postgresql://[USER[:PASSWORD]@][HOST][:PORT]/DB[?PARAM=VALUE...]

A PostgreSQL URL goes to libpq as it is: ferryman never takes it apart to
connect, so libpq's environment variables (PGHOST, PGPASSWORD...) and
~/.pgpass fill in what it leaves out. `redact` is the one place a URL is
made fit for a message: every message and log line shows that form, never
the password (in the user part or as `?password=`).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Literal

from ferryman.errors import ConfigError

Kind = Literal["sqlite", "postgresql"]
SQLITE: Kind = "sqlite"
POSTGRESQL: Kind = "postgresql"
_SCHEMES: dict[str, Kind] = {"sqlite": SQLITE, "postgresql": POSTGRESQL, "postgres": POSTGRESQL}

# password=... as a query parameter (libpq's key).
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)[^&#]*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CatalogLocation:
    kind: Kind
    target: str  # the file's path, or the URL as given (with its password, for libpq)

    @property
    def shown(self) -> str:
        """What messages say: the path, or the URL without its password."""
        return self.target if self.kind == SQLITE else redact(self.target)


def redact(url: str) -> str:
    """`url` with any password replaced by `***`.

    The user part is taken to end at the URL's last `@`, so a password holding
    `/`, `?`, `@` or `:` unencoded is hidden whole too (an `@` in the query
    hides more than the password: never less).
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        userinfo, at, after = rest.rpartition("@")
        if at and ":" in userinfo:
            url = f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{after}"
    return _QUERY_PASSWORD.sub(lambda m: f"{m['key']}***", url)


def scrub(text: str, url: str) -> str:
    """`text` (a message from libpq, which may quote a piece of the URL it could not
    parse) with the URL's password, as written and percent-decoded, replaced by `***`."""
    secrets = set()
    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    if at and ":" in userinfo:
        secrets.add(userinfo.partition(":")[2])
    secrets.update(m[1] for m in re.finditer(r"[?&]password=([^&#]*)", url, re.IGNORECASE))
    for secret in sorted(secrets | {urllib.parse.unquote(s) for s in secrets}, key=len)[::-1]:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_catalog_url(url: str) -> CatalogLocation:
    """The backend and target `url` names; ConfigError saying what is wrong (redacted)."""
    scheme, sep, rest = url.partition("://")
    kind = _SCHEMES.get(scheme.lower()) if sep else None
    if kind is None:
        raise ConfigError(
            f"--catalog {redact(url)!r} is not a catalog URL: give sqlite:///ABSOLUTE/PATH or"
            " postgresql://[USER@]HOST[:PORT]/DATABASE"
        )
    if kind == SQLITE:
        if not rest.startswith("/") or "?" in rest or "#" in rest or "\x00" in rest:
            raise ConfigError(
                f"--catalog {url!r}: a SQLite catalog is sqlite:///ABSOLUTE/PATH (three"
                " slashes, then the file's absolute path)"
            )
        return CatalogLocation(SQLITE, rest)
    if "\x00" in rest:
        raise ConfigError(f"--catalog {redact(url)!r} holds a NUL")
    return CatalogLocation(POSTGRESQL, url)

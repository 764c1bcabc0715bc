"""The boot step: every resource the server needs, opened and checked before anyone is served.

`check_resources` runs in the arbiter (supervisor/arbiter.serve) before it
binds the port, `check_store` just after, and only then does the first
worker start. Every failure is a ConfigError, so `ferryman serve` logs one
line, `cannot start: <resource> <path>: <what is wrong>; <what to do>`, and
exits with status 2: no traceback, no worker started, nothing half made.

The order puts the cheapest and most likely mistakes first, so the message
an operator gets is the one to fix first:

1. settings that do not go together (config.check_combinations; no I/O);
2. SOURCE: a readable directory, or a well-formed s3:// URL and endpoint;
3. the credential files (--tokens, --signing-key), read and parsed, and the
   TLS certificate and key (--tls-cert, --tls-key): readable, matching, not
   expired (server/tls.py);
4. --access-log, opened for appending;
5. the state directory, when something will write in it (made if missing);
6. the catalog: opened (made when writes are allowed); one that exists
   but cannot be used stops the start, in both modes; then the server's id
   in the state directory when writes are allowed (serverid.py);
7. the cache directory (made if missing, written in) and the cache key;
8. each --replica: a directory that exists and can be written, not inside
   SOURCE nor holding it, or an s3:// URL other than SOURCE;
9. (after the port is bound) the stores: see `check_store`.

Workers open the same resources again when they start (they are separate
processes), through the same functions where there is one (`check_source`,
`open_catalog`); whatever changed in between is a ConfigError there too,
reported to the arbiter as boot-failed (exit status 2).
The TLS pair is the exception: the workers get the bytes the arbiter
checked, not the paths (server/tls.py says why).

The store is checked in a short-lived child process (`python -m
ferryman.boot --check-store`), because the S3 client costs the arbiter
~0.3 s and ~25 MiB that it would keep for its whole life; decisions/0019
says why an unreachable store does not stop the start.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ferryman.cache.noticenames import server_origin
from ferryman.catalog.api import Catalog, CatalogError
from ferryman.catalog.location import SQLITE
from ferryman.catalog.open import open_catalog as open_catalog_at
from ferryman.config import Config, check_combinations
from ferryman.config.state import make_state_dir
from ferryman.errors import ConfigError
from ferryman.serverid import FILE as SERVER_ID_FILE
from ferryman.serverid import server_id
from ferryman.stores.s3source import parse_source

if TYPE_CHECKING:
    from ferryman.server.tls import Certificates

log = logging.getLogger("ferryman.boot")

CATALOG_NAME = "catalog.db"
STORE_CHECK_TIMEOUT = 10.0  # one attempt to reach the store at start, connection included
# The child imports the S3 client before its attempt: give a busy machine room.
_STORE_CHECK_MARGIN = 20.0
_CHECK_STORE_FLAG = "--check-store"
_FULL = (errno.ENOSPC, errno.EDQUOT)

PG_FIX = "check --catalog, and that the PostgreSQL server runs and lets ferryman's user in"
CATALOG_FIX = (
    "restore it from a backup, or move it away (a new, empty catalog is made when"
    " writes are allowed), or point --state-dir elsewhere"
)


def check_resources(config: Config) -> Certificates | None:
    """Steps 1 to 7 of the module docstring; a ConfigError names the first failure.

    Returns the TLS certificate and key it checked, for the arbiter to hold
    and hand to its workers (None without --tls-cert).
    """
    check_combinations(config)
    check_source(config)
    _check_credentials(config)
    certificates = load_tls(config)
    try:
        _check_access_log(config)
        _check_state_directory(config)
        catalog = open_catalog(config)
        if catalog is not None:
            catalog.close()
        _make_server_id(config)  # after the catalog: a start it stops leaves nothing made
        _check_cache(config)
        _check_replicas(config)
    except BaseException:
        if certificates is not None:
            certificates.close()
        raise
    return certificates


# -- SOURCE --------------------------------------------------------------------------


def check_source(config: Config) -> None:
    """A local SOURCE is a directory ferryman may list and read; a store's URL and
    --s3-endpoint are well formed (the store itself is `check_store`'s)."""
    if config.is_remote:
        from ferryman.stores.s3source import check_endpoint, parse_source

        parse_source(config.source)
        check_endpoint(config.s3_endpoint)
        return
    root = config.root
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        raise ConfigError(
            f"SOURCE {config.source!r} is not a readable directory;"
            " give a directory ferryman may list and read"
        )


# -- files named by flags ---------------------------------------------------------------


def _check_credentials(config: Config) -> None:
    """What the workers' authorizer will load, loaded once here (errors name the file)."""
    from ferryman.app.auth import Authorizer, SigningKey, TokenTable

    Authorizer(
        tokens=TokenTable.load(config.tokens) if config.tokens else None,
        signing_key=SigningKey.load(config.signing_key) if config.signing_key else None,
        private=config.private,
        allow_write=config.allow_write,
    )


def load_tls(config: Config) -> Certificates | None:
    """--tls-cert and --tls-key read and checked (server/tls.py); None without them."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    from ferryman.server.tls import Certificates

    return Certificates.load(config.tls_cert, config.tls_key)


def _check_access_log(config: Config) -> None:
    from ferryman.server.accesslog import AccessLog

    AccessLog(config.access_log, config.access_log_format).close()


# -- directories ----------------------------------------------------------------------


def _check_state_directory(config: Config) -> None:
    """Needed when writes are allowed (catalog, spool) or when the cache key lives in it.

    A read-only server whose state directory cannot be made still starts: it
    has no catalog, and extracting an archive member answers an error then.
    """
    key_inside = config.cache_encrypt and not config.cache_key_file
    if config.allow_write or key_inside:
        writable_directory(config.state_path, "state directory", "--state-dir",
                           make=make_state_dir)  # fmt: skip


def _make_server_id(config: Config) -> None:
    """The id each write intent names (serverid.py): made now, so the workers only read it."""
    if not config.allow_write:
        return
    try:
        server_id(config.state_path)
    except OSError as exc:
        raise ConfigError(
            f"state directory {config.state_path} (--state-dir): cannot keep the server's"
            f" id in it ({exc}); remove {config.state_path / SERVER_ID_FILE} if it is damaged"
        ) from None


def writable_directory(
    path: Path, what: str, flag: str, *, make: Callable[[Path], None] | None = None
) -> None:
    """`path` made if missing (mode 0700, or by `make`), and a file can be created in it.

    A full filesystem is only a warning: the server can still serve, and its
    writes say 507 until space is freed.
    """
    named = f"{what} {path} ({flag})"
    fix = f"give {flag} a directory ferryman may write in"
    try:
        if make is not None:
            make(path)
        else:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{named} is not a directory; {fix}") from None
    except OSError as exc:
        raise ConfigError(f"{named}: cannot create it ({exc.strerror}); {fix}") from None
    if not path.is_dir():
        raise ConfigError(f"{named} is not a directory; {fix}")
    probe = path / f".ferryman-boot-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        if exc.errno in _FULL:
            log.warning("%s is full (%s): starting anyway", named, exc.strerror)
            return
        raise ConfigError(f"{named}: cannot write in it ({exc.strerror}); {fix}") from None
    try:
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{named}: cannot remove a file in it ({exc.strerror}); {fix}") from None


# -- the catalog ----------------------------------------------------------------------


def open_catalog(config: Config, *, reach: bool = True) -> Catalog | None:
    """The catalog --catalog names, or the one in the state directory: made when writes
    are allowed, else used if present (a PostgreSQL catalog is always used).

    A catalog that exists but cannot be used (empty, unreadable, not a
    catalog, too new, on a filesystem SQLite cannot lock, a server that does
    not answer) stops the start whether or not writes are allowed: serving on
    without it would drop Repr-Digest quietly, and a writer must record what
    it writes. `reach=False` (a worker's start, after the boot step reached
    it): a PostgreSQL catalog that does not answer is opened down instead,
    and writes answer 503 until it answers.
    """
    location = config.catalog_location
    if location.kind == SQLITE:
        path = Path(location.target)
        if not config.allow_write and not _exists(path):
            return None
        if config.allow_write and config.catalog is None:
            state = config.state_path
            try:
                make_state_dir(state)
            except OSError as exc:
                raise ConfigError(
                    f"state directory {state} (--state-dir): cannot create it ({exc.strerror});"
                    " give --state-dir a directory ferryman may write in"
                ) from None
    try:
        return open_catalog_at(
            location, pool_size=config.catalog_pool_size,
            connect_timeout=config.catalog_connect_timeout,
            statement_timeout=config.catalog_statement_timeout, reach=reach,
            origin=server_origin(config),
        )  # fmt: skip
    except CatalogError as exc:
        fix = CATALOG_FIX if location.kind == SQLITE else PG_FIX
        raise ConfigError(f"{exc}; {fix}") from None


def _exists(path: Path) -> bool:
    """Whether there is anything at `path`: only a clear "no" counts as missing."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # there may be something: Catalog says what is wrong with it
    return True


# -- the block cache ------------------------------------------------------------------------


def _check_cache(config: Config) -> None:
    """The cache directory can be written, and the key (with --cache-encrypt) is made or read.

    The key is made here, once, before any process reads it.
    """
    if not config.cache_dir:
        return
    writable_directory(Path(config.cache_dir), "cache directory", "--cache-dir")
    if config.cache_encrypt:
        from ferryman.cache.crypto import load_or_create_key

        load_or_create_key(config.cache_key_path)


# -- replicas -------------------------------------------------------------------------


def _check_replicas(config: Config) -> None:
    source = None if config.is_remote else os.path.realpath(config.root)
    for location in config.replica:
        named = f"replica {location} (--replica)"
        if location.startswith("s3://"):
            try:
                parse_source(location)
            except ConfigError as exc:
                raise ConfigError(f"{named}: {exc}") from None
            if location.rstrip("/") == config.source.rstrip("/"):
                raise ConfigError(f"{named} is SOURCE itself; name another store")
            continue
        path = Path(location)
        if not path.is_dir():
            raise ConfigError(f"{named} is not a directory; create it, or fix the path")
        writable_directory(path, "replica", "--replica")
        real = os.path.realpath(path)
        if source is not None and (_inside(real, source) or _inside(source, real)):
            raise ConfigError(
                f"{named} and SOURCE {source} contain one another: a copy would be served,"
                " or written over the original; use a directory outside SOURCE"
            )


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# -- the store ----------------------------------------------------------------------------------


def check_store(config: Config) -> None:
    """Each s3:// store (SOURCE, replicas): the bucket exists, the credentials are accepted.

    ConfigError (exit status 2) when a store says the bucket is missing or
    refuses the credentials. A store that cannot be reached, or answers with
    a server error or "slow down", is logged and the start goes on
    (decisions/0019): each request tries the store again and answers 502 or
    503 until it answers, and the workers log when it does.
    """
    urls = [config.source] if config.is_remote else []
    urls += [r for r in config.replica if r.startswith("s3://")]
    for url in urls:
        _check_one_store(config, url)


def _check_one_store(config: Config, url: str) -> None:
    from ferryman.supervisor.process import CONFIG_ENV

    config = dataclasses.replace(config, source=url)  # how the messages name it
    env = {**os.environ, CONFIG_ENV: json.dumps(dataclasses.asdict(config))}
    argv = [sys.executable, "-m", "ferryman.boot", _CHECK_STORE_FLAG]
    try:
        done = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=STORE_CHECK_TIMEOUT + _STORE_CHECK_MARGIN,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        _store_unreachable(config, f"no answer within {STORE_CHECK_TIMEOUT:g}s")
        return
    except OSError as exc:
        log.warning("the store was not checked: cannot start the check (%s)", exc.strerror)
        return
    verdict, _, text = done.stdout.strip().partition(" ")
    if done.returncode != 0 or verdict not in _VERDICTS:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning("the store was not checked: the check failed (status %s: %s)",
                    done.returncode, last)  # fmt: skip
        return
    _VERDICTS[verdict](config, text)


def _where(config: Config) -> str:
    source = config.source.removeprefix("s3://")
    bucket = source.partition("/")[0]
    endpoint = config.s3_endpoint or "AWS S3"
    return f"store {config.source} (bucket {bucket} at {endpoint})"


def _store_ok(config: Config, text: str) -> None:
    log.info("%s answers", _where(config))


def _bucket_missing(config: Config, text: str) -> None:
    raise ConfigError(
        f"{_where(config)}: the bucket does not exist ({text}); create it, or fix SOURCE"
        " or --s3-endpoint"
    )


def _credentials_refused(config: Config, text: str) -> None:
    raise ConfigError(
        f"{_where(config)}: the credentials were refused ({text}); check AWS_ACCESS_KEY_ID,"
        " AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), and that they may list the bucket"
    )


def _store_unreachable(config: Config, text: str) -> None:
    log.warning(
        "%s cannot be reached (%s); starting anyway: requests answer 502 until it answers,"
        " each one trying it again",
        _where(config), text,
    )  # fmt: skip


def _store_busy(config: Config, text: str) -> None:
    log.warning("%s asks to slow down (%s); starting anyway", _where(config), text)


_VERDICTS = {
    "ok": _store_ok,
    "missing": _bucket_missing,
    "denied": _credentials_refused,
    "unreachable": _store_unreachable,
    "throttled": _store_busy,
}


def _check_store_child() -> int:
    """`python -m ferryman.boot --check-store`: one attempt; prints `VERDICT detail`."""
    import asyncio  # in this child only: the arbiter imports boot.py and runs no event loop

    from ferryman.stores.base import AccessDenied, NotFound, StoreError, Throttled, Unavailable
    from ferryman.stores.s3 import S3Store
    from ferryman.supervisor.process import config_from_environ

    config = config_from_environ(os.environ)

    async def attempt() -> None:
        store = S3Store.from_config(config)
        try:
            async with asyncio.timeout(STORE_CHECK_TIMEOUT):
                await store.check()
        except TimeoutError:
            raise Unavailable(f"no answer within {STORE_CHECK_TIMEOUT:g}s") from None
        finally:
            await store.close()

    verdict = "ok"
    detail = ""
    try:
        asyncio.run(attempt())
    except NotFound as exc:
        verdict, detail = "missing", exc.detail
    except AccessDenied as exc:
        verdict, detail = "denied", exc.detail
    except Throttled as exc:
        verdict, detail = "throttled", exc.detail
    except StoreError as exc:
        verdict, detail = "unreachable", exc.detail
    print(verdict, " ".join(detail.split()), flush=True)
    return 0


if __name__ == "__main__" and sys.argv[1:] == [_CHECK_STORE_FLAG]:
    sys.exit(_check_store_child())

"""Settings: one table of options, read from defaults, TOML, environment and flags.

Precedence, lowest first: built-in default, `--config FILE` (TOML), the
environment (`FERRYMAN_<FLAG>`, dashes as underscores), the command line.
The same table builds the argument parser and docs/configuration.md is
checked against it by a test, so a new option cannot go undocumented.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ferryman.errors import ConfigError

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1000, "kib": 1024,
    "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip
_MAX_WORKERS = 1024  # far above any useful count; catches a typo like 40000
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(text: str | int) -> int:
    """'64KiB', '8k', '1M', '100' -> bytes (k/m/g without 'B' are binary, as in nginx)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return int(_non_negative(text, "size"))
    if not isinstance(text, str):
        raise ConfigError(f"invalid size {text!r} (examples: 512, 64KiB, 8k, 1M, 2GB)")
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ConfigError(f"invalid size {text!r} (examples: 512, 64KiB, 8k, 1M, 2GB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_duration(text: str | int | float) -> float:
    """'30s', '500ms', '1h', '2.5' -> seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(_non_negative(text, "duration"))
    if not isinstance(text, str):
        raise ConfigError(f"invalid duration {text!r} (examples: 30s, 500ms, 5m, 1h)")
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        raise ConfigError(f"invalid duration {text!r} (examples: 30s, 500ms, 5m, 1h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    if not isinstance(text, str):
        raise ConfigError(f"invalid boolean {text!r} (use on/off, true/false)")
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"invalid boolean {text!r} (use on/off, true/false)")


def _whole_number(text: str | int) -> int:
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(text)
    return int(text)


def parse_port(text: str | int) -> int:
    try:
        port = _whole_number(text)
    except ValueError:
        raise ConfigError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} out of range 0-65535")
    return port


def _at_least(text: str | int, minimum: int) -> int:
    try:
        value = _whole_number(text)
    except ValueError:
        raise ConfigError(f"invalid number {text!r}") from None
    if value < minimum:
        raise ConfigError(f"{value} must be at least {minimum}")
    return value


def parse_positive_int(text: str | int) -> int:
    return _at_least(text, 1)


def parse_count(text: str | int) -> int:
    """A whole number of at least 0 (for --max-restarts, where 0 means "never restart")."""
    return _at_least(text, 0)


def parse_workers(text: str | int) -> int:
    """A number of worker processes, or 'auto': one per CPU this process may run on."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        value = _whole_number(text)
    except ValueError:
        raise ConfigError(f"invalid number of workers {text!r} (a number or 'auto')") from None
    if not 1 <= value <= _MAX_WORKERS:
        raise ConfigError(f"{value} workers: use 1 to {_MAX_WORKERS}, or 'auto'")
    return value


def parse_positive_duration(text: str | int | float) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ConfigError(f"a duration above zero is needed, not {text!r}")
    return value


def _non_negative(value: Any, what: str) -> Any:
    if value < 0:
        raise ConfigError(f"a {what} cannot be negative: {value}")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ConfigError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

    return parse


@dataclass(frozen=True)
class Option:
    """One setting: its flag, parser, default and the sentence that documents it."""

    name: str  # the flag without dashes, e.g. "header-timeout"
    parse: Callable[[Any], Any]
    default: Any
    help: str
    flag_takes_value: bool = True  # False: a bare switch (--follow-symlinks)
    repeatable: bool = False  # the flag may be given several times (--replica)

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "FERRYMAN_" + self.attr.upper()


def parse_locations(value: Any) -> tuple[str, ...]:
    """Directories or s3:// URLs: a list (flags, TOML), or one string of several
    separated by whitespace (the environment)."""
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"expected directories or s3:// URLs, not {value!r}")
    return tuple(item for item in items if item)


def _text(value: Any) -> str:
    return str(value)


def _optional_text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


OPTIONS: tuple[Option, ...] = (
    Option("host", _text, "127.0.0.1", "address to listen on"),
    Option("port", parse_port, 8000, "port to listen on; 0 picks a free port"),
    Option("state-dir", _optional_text, None,
           "catalog, cache index and spools, never served (none: SOURCE/.ferryman)"),
    Option("access-log", _text, "off", "'-' for standard output, a file path, or 'off'"),
    Option("access-log-format", _choice("combined", "json"), "combined",
           "'combined' (Apache/nginx style) or 'json' (one JSON object per line)"),
    Option("follow-symlinks", parse_bool, False,
           "serve symlinks that resolve outside SOURCE (off: they answer 404)",
           flag_takes_value=False),
    Option("cache-control", _optional_text, None,
           "Cache-Control value sent with files and listings (default: none sent)"),
    Option("sendfile", parse_bool, True,
           "zero-copy sendfile for file bodies (off: buffered reads)"),
    Option("loop", _choice("auto", "uvloop", "asyncio"), "auto",
           "event loop: uvloop when installed ('auto'), or force one"),
    Option("max-request-line", parse_size, 8192, "longest request line, else 414"),
    Option("max-header-count", parse_positive_int, 100, "most header fields, else 431"),
    Option("max-header-bytes", parse_size, 32768, "largest header section, else 431"),
    Option("max-ranges", parse_positive_int, 100,
           "most ranges in one Range header; more are ignored (200)"),
    Option("max-connections", parse_positive_int, 10000,
           "open connections per process; at the limit ferryman stops accepting"),
    Option("header-timeout", parse_duration, 20.0,
           "time allowed to receive a whole request head (slowloris guard); 408 after"),
    Option("keepalive-timeout", parse_duration, 75.0,
           "how long an idle keep-alive connection is kept open"),
    Option("send-timeout", parse_duration, 60.0,
           "a client that accepts no bytes for this long is disconnected"),
    Option("grace-period", parse_duration, 30.0,
           "on SIGTERM/SIGINT, how long in-flight transfers may take to finish"),
    Option("small-body", parse_size, 16384,
           "file bodies up to this size are read and sent with the head in one write"),
    Option("allow-write", parse_bool, False,
           "enable PUT and DELETE (needs --tokens or --signing-key)", flag_takes_value=False),
    Option("private", parse_bool, False,
           "reads need a token or a signed URL too", flag_takes_value=False),
    Option("tokens", _optional_text, None,
           "file of 'TOKEN SCOPE [PATH-PREFIX]' lines, SCOPE read|write (Bearer tokens)"),
    Option("signing-key", _optional_text, None, "file holding the HMAC key for signed URLs"),
    Option("verify-writes", _choice("full", "size"), "full",
           "after a write, read back size and SHA-256 ('full') or the size only"),
    Option("body-timeout", parse_duration, 60.0,
           "a client that sends no request-body bytes for this long gets 408"),
    Option("max-upload-size", parse_size, 16 * 1024**3,
           "largest request body (upload), else 413; 0: no limit"),
    Option("max-member-size", parse_size, 4 * 1024**3,
           "largest compressed-archive member extracted to serve it; larger: 507"),
    Option("file-cache", parse_size, 32 * 1024 * 1024,
           "memory for small answers (files up to --small-body, cached objects up to 16 KiB) "
           "kept between requests and revalidated on each use; 0: off"),
    Option("open-files", parse_count, 256,
           "descriptors of recently served files kept open between requests, revalidated "
           "by a stat() on each use and closed after --open-files-idle unused; 0: off"),
    Option("open-files-idle", parse_positive_duration, 10.0,
           "a kept descriptor unused for this long is closed (a deleted file's space is freed)"),
    Option("workers", parse_workers, 1,
           "worker processes under the arbiter; 'auto' is one per CPU"),
    Option("heartbeat-timeout", parse_positive_duration, 30.0,
           "a worker whose event loop has not answered for this long is killed and replaced"),
    Option("max-restarts", parse_count, 5,
           "more worker restarts than this within --restart-window stops the server (status 3)"),
    Option("restart-window", parse_positive_duration, 10.0,
           "the sliding window, a duration, over which --max-restarts is counted"),
    Option("s3-endpoint", _optional_text, None,
           "S3-compatible endpoint URL for an s3:// SOURCE (none: AWS S3 in AWS_REGION)"),
    Option("s3-multipart-threshold", parse_size, 64 * 1024**2,
           "uploads to S3 larger than this go up in parts"),
    Option("s3-part-size", parse_size, 16 * 1024**2,
           "size of each part of a multipart upload to S3 (at least 5MiB)"),
    Option("upload-attempts", parse_positive_int, 3,
           "tries of an upload to a store that does not verify before 502"),
    Option("replica", parse_locations, (),
           "another store every write also goes to, verified the same way: a directory or "
           "s3://bucket[/prefix] (repeat the flag for several)", repeatable=True),
    Option("lock-timeout", parse_positive_duration, 30.0,
           "a write waits this long for another write of the same path to finish, else 503"),
    Option("cache-dir", _optional_text, None,
           "cache remote objects block by block in this directory (none: no cache)"),
    Option("cache-block-size", parse_size, 1024**2,
           "the unit the cache fetches, stores and marks present"),
    Option("cache-max-size", parse_size, 10 * 1024**3,
           "the most bytes of blocks the cache holds; least recently used go first"),
    Option("cache-max-age", parse_positive_duration, 7 * 86400.0,
           "cache entries unused for this long are evicted"),
    Option("cache-min-free", parse_size, 1024**3,
           "free space the cache leaves on its filesystem, evicting to keep it"),
    Option("cache-revalidate", parse_duration, 60.0,
           "a cached object is checked against the store when its check is this old"),
    Option("cache-readahead", parse_count, 4,
           "blocks fetched ahead of a sequential reader"),
    Option("cache-encrypt", parse_bool, False,
           "encrypt cached blocks with AES-256-GCM", flag_takes_value=False),
    Option("cache-key-file", _optional_text, None,
           "the 32-byte cache key, created with mode 0600 if missing "
           "(none: STATE-DIR/cache.key)"),
    Option("spool-max-size", parse_size, 8 * 1024**3,
           "most bytes of spool files (extracted .tar.gz members, upload bodies) for the "
           "server; an extraction that would pass it answers 503"),
    Option("spool-keep", parse_duration, 10.0,
           "an extracted .tar.gz member no transfer uses is kept this long for the next "
           "request; 0: removed when its last transfer ends"),
    Option("max-name-bytes", parse_positive_int, 255,
           "longest path segment, in bytes once decoded, else 400 (at most what SOURCE holds)"),
    Option("max-path-bytes", parse_positive_int, 4096,
           "longest request path, in bytes once decoded, else 414 (at most what SOURCE holds)"),
)  # fmt: skip
OPTIONS_BY_ATTR = {option.attr: option for option in OPTIONS}


@dataclass(frozen=True)
class Config:
    """Every setting, resolved and typed. Field names match Option.attr."""

    source: str = "."
    host: str = "127.0.0.1"
    port: int = 8000
    state_dir: str | None = None
    access_log: str = "off"
    access_log_format: str = "combined"
    follow_symlinks: bool = False
    cache_control: str | None = None
    sendfile: bool = True
    loop: str = "auto"
    max_request_line: int = 8192
    max_header_count: int = 100
    max_header_bytes: int = 32768
    max_ranges: int = 100
    max_connections: int = 10000
    header_timeout: float = 20.0
    keepalive_timeout: float = 75.0
    send_timeout: float = 60.0
    grace_period: float = 30.0
    small_body: int = 16384
    workers: int = 1
    heartbeat_timeout: float = 30.0
    max_restarts: int = 5
    restart_window: float = 10.0
    file_cache: int = 32 * 1024 * 1024
    open_files: int = 256
    open_files_idle: float = 10.0
    body_timeout: float = 60.0
    allow_write: bool = False
    private: bool = False
    tokens: str | None = None
    signing_key: str | None = None
    verify_writes: str = "full"
    max_upload_size: int = 16 * 1024**3
    max_member_size: int = 4 * 1024**3
    s3_endpoint: str | None = None
    s3_multipart_threshold: int = 64 * 1024**2
    s3_part_size: int = 16 * 1024**2
    upload_attempts: int = 3
    lock_timeout: float = 30.0
    replica: tuple[str, ...] = ()
    cache_dir: str | None = None
    cache_block_size: int = 1024**2
    cache_max_size: int = 10 * 1024**3
    cache_max_age: float = 7 * 86400.0
    cache_min_free: int = 1024**3
    cache_revalidate: float = 60.0
    cache_readahead: int = 4
    cache_encrypt: bool = False
    cache_key_file: str | None = None
    spool_max_size: int = 8 * 1024**3
    spool_keep: float = 10.0
    max_name_bytes: int = 255
    max_path_bytes: int = 4096
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_remote(self) -> bool:
        """The source is an object store URL (s3://bucket/prefix), not a directory."""
        return self.source.startswith("s3://")

    @property
    def root(self) -> Path:
        return Path(self.source).resolve()

    @property
    def state_path(self) -> Path:
        """Where the catalog, the spool and the cache key live; see `state_choice`."""
        return self.state_choice[0]

    @property
    def state_choice(self) -> tuple[Path, str]:
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
        if self.state_dir:
            return Path(self.state_dir).resolve(), "--state-dir"
        if self.is_remote:
            return _user_state(self.source, self.source.removeprefix("s3://")), "per user: a store"
        inside = self.root / ".ferryman"
        if self.allow_write:
            return inside, "in SOURCE: writes are allowed"
        if _writable(inside if inside.is_dir() else self.root):
            return inside, "in SOURCE"
        return _user_state(str(self.root), str(self.root)), "per user: SOURCE is not writable"

    @property
    def cache_key_path(self) -> Path:
        return Path(self.cache_key_file) if self.cache_key_file else self.state_path / "cache.key"


def _user_state(source: str, readable: str) -> Path:
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


MIN_BLOCK, MAX_BLOCK = 64 * 1024, 64 * 1024**2
MIN_PART = 5 * 1024**2  # S3 refuses smaller parts (but the last)


def check_combinations(config: Config) -> None:
    """Settings that are valid alone but not together; a ConfigError says which.

    The first step of the boot (ferryman/boot.py), which checks the files,
    directories and store the settings name.
    """
    if not config.is_remote:
        if config.cache_dir:
            raise ConfigError("--cache-dir needs a store as SOURCE (s3://bucket[/prefix])")
        if config.s3_endpoint and not any(r.startswith("s3://") for r in config.replica):
            raise ConfigError(
                "--s3-endpoint needs a store as SOURCE or --replica (s3://bucket[/prefix])"
            )
    if config.replica and not config.allow_write:
        raise ConfigError("--replica needs --allow-write: replicas receive writes")
    if config.cache_encrypt and not config.cache_dir:
        raise ConfigError("--cache-encrypt needs --cache-dir")
    if not MIN_BLOCK <= config.cache_block_size <= MAX_BLOCK:
        raise ConfigError(f"--cache-block-size: use {MIN_BLOCK // 1024}KiB to {MAX_BLOCK >> 20}MiB")
    if config.s3_part_size < MIN_PART:
        raise ConfigError("--s3-part-size: S3 needs parts of at least 5MiB")


def load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    serve = data.pop("serve", {})
    flat = {**data, **serve} if isinstance(serve, dict) else data
    return {key.replace("-", "_"): value for key, value in flat.items()}


def build_config(
    cli: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge defaults < TOML (`config` key of cli or env) < environment < cli."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = cli.get("config") or environ.get("FERRYMAN_CONFIG")
    if config_file:
        from_file = load_toml(config_file)
        unknown = sorted(set(from_file) - set(OPTIONS_BY_ATTR) - {"source"})
        if unknown:
            raise ConfigError(f"unknown setting(s) in {config_file}: {', '.join(unknown)}")
        values.update(from_file)
    for option in OPTIONS:
        if option.env in environ:
            values[option.attr] = environ[option.env]
    if "FERRYMAN_SOURCE" in environ:
        values["source"] = environ["FERRYMAN_SOURCE"]
    values.update({key: value for key, value in cli.items() if value is not None})
    values.pop("config", None)
    resolved: dict[str, Any] = {}
    known = {f.name for f in fields(Config)}
    for key, value in values.items():
        if key not in known:
            continue
        known_option = OPTIONS_BY_ATTR.get(key)
        try:
            resolved[key] = known_option.parse(value) if known_option else str(value)
        except ConfigError as exc:
            raise ConfigError(f"--{key.replace('_', '-')}: {exc}") from None
    return Config(**resolved)

"""Every setting of ferryman, each defined once: the `Config` dataclass is the table.

A field is one option: its name (the flag is `--` and the name with dashes),
its type, its default, its kind (parser, and how values are shown), the
sentence `--help` prints, and the rest of what docs/configuration.md says
of it. The environment variable is `FERRYMAN_` and the name in upper case.
`OPTIONS` lists them in this order, and from it come the command line
(config/flags.py), the TOML and environment readers (config/load.py) and
the doc's tables (tools/config_doc.py, checked by a test).

Text in `help` and `more` is markdown; `--help` shows `code` as 'code'.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from ferryman.catalog.location import SQLITE, CatalogLocation, parse_catalog_url
from ferryman.config.parse import (
    CODING_LIST,
    COUNT,
    DURATION,
    LOCATIONS,
    ORIGINS,
    PORT,
    POSITIVE,
    POSITIVE_DURATION,
    SIZE,
    SWITCH,
    TEXT,
    WORKERS,
    Kind,
    one_of,
    optional,
)
from ferryman.config.state import choose_state_dir

T = TypeVar("T")
Section = Literal["serve", "store"]  # which table of docs/configuration.md shows it
_SPEC = "ferryman.option"


@dataclass(frozen=True)
class Option:
    """One setting as the command line, the environment, TOML and the docs see it."""

    name: str  # the flag without dashes, e.g. "header-timeout"
    kind: Kind[Any]
    default: Any
    help: str  # one line, markdown: what --help prints and the doc's row begins with
    more: str = ""  # the rest of the doc's row, markdown
    switch: bool = False  # a bare flag (--follow-symlinks): the command line can only turn it on
    metavar: str | None = None  # what the flag's value is called (FILE), when not VALUE
    positional: bool = False  # SOURCE: an argument, not a flag
    section: Section = "serve"

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "FERRYMAN_" + self.attr.upper()

    @property
    def flag(self) -> str:
        return self.name.upper() if self.positional else f"--{self.name}"

    @property
    def shown_default(self) -> str:
        return str(self.kind.show(self.default))


def option(
    default: T,
    kind: Kind[T],
    help: str,
    more: str = "",
    *,
    switch: bool = False,
    metavar: str | None = None,
    positional: bool = False,
    section: Section = "serve",
) -> T:
    """A field of Config that is an option. Typed as its default, so that mypy checks
    default, kind and the field's annotation against each other."""
    spec = Option("", kind, default, help, more, switch, metavar, positional, section)
    return field(default=default, metadata={_SPEC: spec})


# fmt: off
@dataclass(frozen=True)
class Config:
    """Every setting, resolved and typed; each field is the definition of its option."""

    source: str = option(
        ".", TEXT, "the directory to serve, or `s3://bucket[/prefix]`",
        "A directory must exist and be a directory, or ferryman exits with status 2; a "
        "store is described [below](#serving-from-an-object-store-and-the-cache).",
        positional=True)
    host: str = option(
        "127.0.0.1", TEXT, "address to listen on",
        "A name is resolved and the first address is used; `0.0.0.0` or `::` listen on "
        "every interface.")
    port: int = option(
        8000, PORT, "port to listen on; `0` picks a free port",
        "The readiness line shows the real one.")
    state_dir: str | None = option(
        None, optional("a directory"),
        "where the catalog, the spool and the cache key live; never served or listed (none: "
        "`SOURCE/.ferryman`, or per user for a read-only SOURCE)",
        "Keep it outside SOURCE, or inside it under a name that starts with a dot (request "
        "paths naming a dot-named entry are always refused); `--follow-symlinks` lifts the "
        "protection of a non-dot state directory. Without it: `SOURCE/.ferryman` when "
        "ferryman's user may write there (it exists and is writable, or SOURCE is "
        "writable), and always with `--allow-write` (a server that writes keeps its catalog "
        "where it was); otherwise (a read-only SOURCE: a read-only mount, a snapshot, "
        "another user's files) `$XDG_STATE_HOME/ferryman/PATH-DIGEST` (`~/.local/state/...`; "
        "PATH is SOURCE's absolute path made one readable name, `/srv/pub` as `srv_pub`; "
        "DIGEST is 8 hex digits of its SHA-256), so `.tar.gz` members can still be "
        "extracted. The arbiter logs the choice at start: `state directory /var/lib/... "
        "(per user: SOURCE is not writable)`.", metavar="DIR")
    access_log: str = option(
        "off", TEXT, "`-` for standard output, a file path (opened for appending), or `off`")
    access_log_format: str = option(
        "combined", one_of("combined", "json"),
        "`combined` (Apache/nginx style) or `json` (one JSON object per line)",
        "Examples are in [operations.md](operations.md#access-log).")
    metrics: bool = option(
        True, SWITCH,
        "serve `/-/metrics` (Prometheus text format, every worker added up); off: it "
        "answers `404` and nothing is counted",
        "Counted in each process and written once a second to files in "
        "`STATE/metrics/<pid>/` (the arbiter's pid), which a scrape of any worker reads. "
        "Takes a value: `--metrics off`. See "
        "[operations.md](operations.md#health-readiness-and-metrics).")
    metrics_token: str | None = option(
        None, optional("a token"),
        "bearer token a scraper on another host must send to `/-/metrics` "
        "(`Authorization: Bearer TOKEN`); without it, only loopback clients may scrape",
        "Loopback clients never need it. Compared in constant time. Prefer the environment "
        "(`FERRYMAN_METRICS_TOKEN`) or the TOML file to the command line, which other users "
        "of the machine can read.", metavar="TOKEN")
    ready_timeout: float = option(
        2.0, POSITIVE_DURATION,
        "how long each check of `/-/ready` (store, catalog, cache) may take before it "
        "counts as failed",
        "A check that takes longer makes `/-/ready` answer `503` naming it. Results are "
        "kept for a second, so a flood of probes costs one round of checks a second.")
    follow_symlinks: bool = option(
        False, SWITCH, "serve symlinks that resolve outside SOURCE (off: they answer `404`)",
        "Off, every opened file is checked after the open: if it really lies outside "
        "SOURCE, under a dot-named directory or in the state directory, the answer is "
        "`404`. On, that check is skipped entirely, so symlinks that point outside SOURCE "
        "are served, and so are symlinks to dotfiles and a state directory inside SOURCE "
        "whose name does not start with a dot. Request paths naming a dotfile are refused "
        "either way.", switch=True)
    cache_control: str | None = option(
        None, optional("text"),
        "`Cache-Control` value sent with files, listings and `304`s (none: none sent)",
        "For example `public, max-age=3600`. Error responses always carry "
        "`Cache-Control: no-store`.")
    sendfile: bool = option(
        True, SWITCH, "zero-copy `sendfile()` for file bodies (off: buffered reads)",
        "Off, file bodies are read in 256 KiB pieces and written through the event loop. "
        "Takes a value: `--sendfile off`.")
    loop: str = option(
        "auto", one_of("auto", "uvloop", "asyncio"),
        "event loop: uvloop when installed (`auto`), or force one",
        "Forcing `uvloop` when it is not installed stops the start (exit status 2).")
    max_request_line: int = option(
        8192, SIZE, "longest request line (method, target and version), else `414`")
    max_header_count: int = option(100, POSITIVE, "most header fields, else `431`")
    max_header_bytes: int = option(
        32768, SIZE, "largest header section (every header line together), else `431`")
    max_ranges: int = option(
        100, POSITIVE,
        "most ranges in one `Range` header; with more it is ignored and the whole file is "
        "sent (`200`)")
    max_connections: int = option(
        10000, POSITIVE,
        "open connections per process; at the limit ferryman stops accepting",
        "New clients then wait in the kernel's listen backlog (1024) until a connection "
        "closes. At startup the soft descriptor limit is raised toward "
        "`3 * max-connections + 64` (every connection transferring at once) as far as the "
        "hard limit allows; the limit is lowered, with a warning, only if fewer than "
        "`max-connections + 1088` descriptors can be had (one per connection, 1024 kept "
        "for files being sent).")
    header_timeout: float = option(
        20.0, DURATION,
        "time allowed to receive a whole request head (slowloris guard); `408` after",
        "Counted from its first byte (or from the connection's opening) and never "
        "extended. After it: `408` and close, or a silent close if no byte arrived.")
    keepalive_timeout: float = option(
        75.0, DURATION, "how long an idle keep-alive connection is kept open")
    send_timeout: float = option(
        60.0, DURATION, "a client that accepts no bytes for this long is disconnected",
        "See [operations.md](operations.md#slow-and-stalled-clients) for what \"accept\" "
        "means.")
    grace_period: float = option(
        30.0, DURATION, "on SIGTERM/SIGINT, how long in-flight transfers may take to finish",
        "Then they are aborted.")
    pipeline_buffer: int = option(
        256 * 1024, SIZE,
        "unparsed request bytes a connection holds while it answers before it stops reading",
        "Pipelined requests, or a body its handler reads slowly; reading resumes when the "
        "connection wants the bytes. Bounds a client that sends and never reads.")
    write_buffer: int = option(
        256 * 1024, SIZE, "bytes buffered for a client before ferryman waits for it to read")
    small_body: int = option(
        16384, SIZE,
        "file bodies up to this size are read and sent with the head in one write",
        "Only when the file's data is already in the page cache; then no task or thread is "
        "needed. With `0` only empty bodies take this path.")
    file_cache: int = option(
        32 * 1024**2, SIZE,
        "memory for small answers (files and members of a .tar up to `--small-body`, cached "
        "objects up to 16 KiB) kept between requests and revalidated on each use; `0`: off",
        "A local file (a member: its archive) is revalidated by one `stat()`, a cached "
        "object by its cache entry (still in place, version confirmed within "
        "`--cache-revalidate`). A changed file, "
        "or an object written through ferryman, is never served stale. Only plain GET and "
        "HEAD (no Range, no `If-*`) are answered from it.")
    open_files: int = option(
        256, COUNT,
        "descriptors of recently served files, archives and precompressed sidecars kept open "
        "between requests, revalidated by a `stat()` on each use and closed after "
        "`--open-files-idle` unused; "
        "`0`: off",
        "The next request of the same path skips the open, its `/proc` confinement check "
        "and the close. A file whose device, inode, size, mtime or ctime changed "
        "(rewritten, replaced, removed, renamed away and reached through a symlink) is "
        "opened afresh with every check. A descriptor in use by a transfer is never closed "
        "under it.")
    open_files_idle: float = option(
        10.0, POSITIVE_DURATION,
        "a kept descriptor unused for this long is closed (a deleted file's space is freed)",
        "The worker looks once a second. Shorter frees a deleted or replaced file's disk "
        "space sooner; longer keeps rarely asked files open between requests.")
    workers: int = option(
        1, WORKERS, "worker processes under the arbiter; `auto` is one per CPU",
        "`auto` counts the CPUs ferryman may run on (its CPU affinity, which respects "
        "`taskset` and cgroup cpusets). Even with `1`, the worker runs under the arbiter, "
        "which replaces it if it dies. How to choose: "
        "[operations.md](operations.md#sizing---workers).")
    heartbeat_timeout: float = option(
        30.0, POSITIVE_DURATION,
        "a worker whose event loop has not answered for this long is killed and replaced",
        "Workers send a heartbeat every second; the kill is a SIGKILL and counts as a "
        "restart. A worker that is not ready within this long, or 30 s if that is longer, "
        "is killed the same way.")
    max_restarts: int = option(
        5, COUNT,
        "more worker restarts than this within `--restart-window` stops the server "
        "(status 3)",
        "The arbiter then stops every worker. `0` means the first crash stops the server.")
    restart_window: float = option(
        10.0, POSITIVE_DURATION,
        "the sliding window over which `--max-restarts` is counted",
        "A restart exactly this old still counts.")
    allow_write: bool = option(
        False, SWITCH, "enable PUT and DELETE (needs `--tokens` or `--signing-key`)",
        "Refused at start without them: writes always need credentials.", switch=True)
    private: bool = option(
        False, SWITCH, "reads need a token or a signed URL too",
        "Without it, reads are open. Needs `--tokens` or `--signing-key`.", switch=True)
    tokens: str | None = option(
        None, optional("a file"),
        "file of `TOKEN SCOPE [PATH-PREFIX]` lines, SCOPE `read` or `write` (Bearer tokens)",
        "Write implies read; a token is sent as `Authorization: Bearer TOKEN`. `#` lines and "
        "blank lines are skipped. A prefix covers whole path segments: `/photos` covers "
        "`/photos/a.jpg`, not `/photos-old/`.", metavar="FILE")
    signing_key: str | None = option(
        None, optional("a file"), "file holding the HMAC key for signed URLs",
        "The HMAC-SHA256 key (at least 32 bytes) that `ferryman sign` URLs are checked "
        "against.", metavar="FILE")
    verify_writes: str = option(
        "full", one_of("full", "size"),
        "after a write, read back size and SHA-256 (`full`) or the size only",
        "Done after the upload is fsynced and before it replaces anything.")
    replica: tuple[str, ...] = option(
        (), LOCATIONS,
        "another store every write also goes to, verified the same way: a directory or "
        "`s3://bucket[/prefix]` (repeat the flag for several)",
        "With the same `AWS_*` environment and `--s3-*` settings as an S3 SOURCE. In the "
        "environment, separate several with whitespace; in TOML, "
        "`replica = [\"/mnt/copy\", \"s3://backup/files\"]`. The answer is `201`/`204` only "
        "when every store holds a verified copy, else `502` naming the store that failed. "
        "Needs `--allow-write`.", metavar="TARGET")
    lock_timeout: float = option(
        30.0, POSITIVE_DURATION,
        "a write waits this long for another write of the same path to finish, else `503`",
        "In any worker; the `503` carries `Retry-After: 1`. Reads never wait.")
    settle_after: float = option(
        600.0, POSITIVE_DURATION,
        "another server's interrupted write (its intent in a shared catalog) is settled by "
        "this one at start once it is this old and nobody holds its lock",
        "Each server settles its own interrupted writes when it starts; one that never comes "
        "back leaves them to the others after this long. A write still in progress holds its "
        "lock and is never settled, however old. See "
        "[operations.md](operations.md#several-servers-on-one-store).")
    catalog: str | None = option(
        None, optional("a URL"),
        "where the record of every write is kept: `sqlite:///PATH` or "
        "`postgresql://[USER@]HOST[:PORT]/DB` (none: `STATE-DIR/catalog.db`)",
        "Several servers in front of one store share one PostgreSQL catalog and see each "
        "other's writes. libpq's `PG*` environment variables and `~/.pgpass` fill in what the "
        "URL leaves out; a password in it is never shown (messages print `***`). PostgreSQL "
        "needs `pip install 'ferryman[postgresql]'`. `audit`, `repair` and `catalog` take it "
        "too. See [operations.md](operations.md#the-catalog-sqlite-or-postgresql).",
        metavar="URL")
    catalog_pool_size: int = option(
        4, POSITIVE, "connections to a PostgreSQL catalog each worker keeps, at most",
        "A server holds up to this many per worker, plus one at start.")
    catalog_connect_timeout: float = option(
        5.0, POSITIVE_DURATION,
        "how long to wait for a connection to a PostgreSQL catalog before it counts as down",
        "While it is down, PUT and DELETE answer `503 catalog_unavailable` with "
        "`Retry-After` at once, reads go on, and a probe every second brings writes back "
        "when it answers.")
    catalog_statement_timeout: float = option(
        5.0, POSITIVE_DURATION,
        "how long one statement may run on a PostgreSQL catalog (lock waits included)",
        "A write whose statement runs out answers `503 catalog_busy`.")
    max_member_size: int = option(
        4 * 1024**3, SIZE,
        "largest compressed-archive member extracted to serve it; larger: `507`",
        "Members of `.tar.gz` and `.tgz` archives are extracted to a temporary file; a "
        "larger one gets `507` (`member_too_large`) before anything is written. Members of "
        "plain `.tar` files are served in place and have no such limit.")
    max_upload_size: int = option(
        16 * 1024**3, SIZE, "largest request body (upload), else `413`; `0`: no limit",
        "Refused before `100 Continue` when the size is announced.")
    body_timeout: float = option(
        60.0, DURATION, "a client that sends no request-body bytes for this long gets `408`",
        "Nothing is stored.")
    spool_max_size: int = option(
        8 * 1024**3, SIZE,
        "most bytes of spool files (extracted `.tar.gz` members, upload bodies) for the "
        "server; an extraction that would pass it answers `503`",
        "The spool is `STATE_DIR/spool`, for all workers together; upload bodies on their "
        "way to a store are counted, not refused. The `503` (`spool_full`) carries "
        "`Retry-After: 5` and nothing is written; a member larger than the limit itself "
        "gets `507` (`member_too_large`). Each extraction reserves its member's whole size "
        "on disk before it starts.")
    spool_keep: float = option(
        10.0, DURATION,
        "an extracted `.tar.gz` member no transfer uses is kept this long for the next "
        "request; `0`: removed when its last transfer ends",
        "At most 16 per worker; dropped sooner when an extraction needs the room.")
    max_name_bytes: int = option(
        255, POSITIVE,
        "longest path segment, in bytes once decoded, else `400` (at most what SOURCE holds)",
        "For reads and writes (`bad_path`). With a directory, its file system's longest name "
        "(`statvfs`, 255 on ext4, xfs, btrfs, tmpfs) holds it down, so a larger value "
        "changes nothing there; a store has no such limit of its own, so raise it to serve "
        "keys with longer segments.")
    max_path_bytes: int = option(
        4096, POSITIVE,
        "longest request path, in bytes once decoded, else `414` (at most what SOURCE holds)",
        "For reads and writes (`uri_too_long`), counted once percent-decoded and resolved, "
        "from its leading `/` (a trailing `/` is not counted). With a directory, the "
        "absolute path (SOURCE, the path and a NUL) must fit Linux's `PATH_MAX` of 4096 "
        "bytes; with a store, the key (prefix, `/`, path) must fit S3's 1024 bytes.")
    tls_cert: str | None = option(
        None, optional("a file"),
        "serve HTTPS with this PEM certificate chain (the certificate, then its "
        "intermediates); needs `--tls-key` (none: plain HTTP)",
        "Checked at start with the key: readable, matching, not expired, else exit status 2. "
        "Read again on SIGHUP; a pair that fails the same checks then is logged and the one "
        "in use is kept. TLS 1.2 and 1.3, ALPN `http/1.1`; file bodies are sent with "
        "buffered writes (`--sendfile` applies to plain HTTP only). See "
        "[operations.md](operations.md#tls).", metavar="FILE")
    tls_key: str | None = option(
        None, optional("a file"),
        "the private key of `--tls-cert`, in PEM, unencrypted; needs `--tls-cert`",
        "Keep it readable only by ferryman's user. An encrypted key stops the start: "
        "ferryman does not ask for passphrases.", metavar="FILE")
    cors_origin: tuple[str, ...] = option(
        (), ORIGINS,
        "a web origin whose pages may read ferryman's answers (CORS), or `*` for any; "
        "repeat the flag for several",
        "Checked at start: `scheme://host[:port]`, no path (not even a final `/`), the "
        "default port dropped as browsers do. An origin named here gets itself in "
        "`Access-Control-Allow-Origin`; with `*`, others get `*` (their own origin when the "
        "request carries credentials). Preflights (`OPTIONS`) are answered, and every answer "
        "to an allowed origin exposes `Content-Range`, `ETag`, the digests and "
        "`X-Request-Id`. Other origins get no CORS headers. In the environment, separate "
        "several with whitespace; in TOML, `cors-origin = [\"https://player.example\"]`. See "
        "[operations.md](operations.md#cors-pages-of-other-origins).", metavar="ORIGIN")
    cors_max_age: float = option(
        7200.0, DURATION,
        "how long a browser may reuse a preflight's answer (`Access-Control-Max-Age`)",
        "Whole seconds are sent. Chromium keeps one at most 2 h, Firefox 24 h; `0`: every "
        "request that needs a preflight gets one.")
    cors_credentials: bool = option(
        False, SWITCH,
        "answers to an origin named by `--cors-origin` carry "
        "`Access-Control-Allow-Credentials: true`",
        "For pages that fetch with `credentials: \"include\"` (cookies or HTTP "
        "authentication a proxy in front of ferryman checks). Never sent beside `*`, and "
        "not needed for a bearer token or a signed URL. Needs `--cors-origin` naming an "
        "origin.", switch=True)
    compress: tuple[str, ...] = option(
        ("zstd", "br", "gzip"), CODING_LIST,
        "codings applied on the fly to compressible types (text, JSON, JavaScript, CSS, SVG, "
        "XML, wasm...), as the client's `Accept-Encoding` allows; `none`: off",
        "For example `--compress zstd,gzip`. Among codings the client wants equally, zstd, "
        "then br, then gzip. A coding whose library is not installed (`zstandard` for zstd, "
        "`brotli` for br) is not offered; the start logs it. Never applied to images, video, "
        "audio, archives or woff fonts. Ranges are answered from the uncoded file. See "
        "[operations.md](operations.md#compression).")
    compress_min_size: int = option(
        1024, SIZE, "smaller bodies are not coded on the fly (the gain is not worth the CPU)",
        "Unless the client refuses an uncoded answer (`identity;q=0`).")
    compress_buffer: int = option(
        1024**2, SIZE,
        "bodies up to this size are coded whole (with a `Content-Length`); larger ones are "
        "coded as they are sent (chunked)",
        "Coding runs in worker threads either way; a streamed one holds at most 256 KiB of "
        "input at a time.")
    compress_cache: int = option(
        32 * 1024**2, SIZE,
        "memory for bodies coded whole, kept for the next request of the same version and "
        "coding; `0`: off",
        "Per worker. Keyed by the coded ETag, which names the file's version: a changed "
        "file is never answered from it. One body takes at most an eighth of it.")
    precompressed: tuple[str, ...] = option(
        ("zstd", "br", "gzip"), CODING_LIST,
        "serve `X.zst`, `X.br`, `X.gz` beside a compressible file `X` for a request of `X`, "
        "as the client's `Accept-Encoding` allows; `none`: off",
        "Zero-copy, with exact byte ranges of the sidecar. A sidecar older than `X` is "
        "ignored. Among codings the client wants equally, a sidecar comes before coding on "
        "the fly. `X.gz` asked for by its own name is an ordinary download.")
    listing_cache: int = option(
        8 * 1024**2, SIZE,
        "memory for listing pages kept between requests (each worker); `0`: off",
        "A page is answered again only for the same request and while its directory's "
        "entries are unchanged (an entry added, removed or renamed shows at once), for at "
        "most `--listing-cache-age`: a flood of requests for one listing builds its page "
        "about once a second. Pages with signed links (`--private`) are never kept.")
    listing_cache_age: float = option(
        1.0, DURATION,
        "how long a kept listing page is answered again; what the directory's own times do "
        "not show (a listed file growing) shows after this")
    listing_page_size: int = option(
        1000, POSITIVE,
        "entries on one page of a listing, the browse page and JSON alike (`?page=N`)",
        "Each request reads the directory (or the archive's index, or the store's prefix "
        "up to 10,000 keys), orders it and renders one page: a larger page costs every "
        "request more to render and send. The page links to the others (`rel=next`, "
        "`rel=prev`); JSON carries `next` and `prev` URLs. See "
        "[operations.md](operations.md#the-browse-page).")
    s3_endpoint: str | None = option(
        None, optional("a URL"),
        "S3-compatible endpoint URL for an `s3://` SOURCE (none: AWS S3 in `AWS_REGION`)",
        "MinIO, Ceph, moto: `http://127.0.0.1:9000`. It serves `s3://` replicas too.",
        metavar="URL", section="store")
    upload_sweep_interval: float = option(
        10.0, POSITIVE_DURATION,
        "how often each worker aborts the multipart uploads to S3 that a killed process left",
        "Every worker writing to S3 sweeps at start and then this often: an upload whose "
        "process is gone (its lease in the catalog is free) is aborted and its record dropped. "
        "See [operations.md](operations.md#multipart-uploads-a-killed-process-left).",
        section="store")
    s3_multipart_threshold: int = option(
        64 * 1024**2, SIZE, "uploads to S3 larger than this go up in parts",
        section="store")
    s3_part_size: int = option(
        16 * 1024**2, SIZE, "size of each part of a multipart upload to S3 (at least 5MiB)",
        section="store")
    upload_attempts: int = option(
        3, POSITIVE, "tries of an upload to a store that does not verify before `502`",
        "With backoff between them.", section="store")
    cache_dir: str | None = option(
        None, optional("a directory"),
        "cache remote objects block by block in this directory (none: no cache)",
        "Without it every request reads from the store.", metavar="DIR", section="store")
    cache_block_size: int = option(
        1024**2, SIZE, "the unit the cache fetches, stores and marks present",
        "From 64KiB to 64MiB.", section="store")
    cache_max_size: int = option(
        10 * 1024**3, SIZE,
        "the most bytes of blocks the cache holds; least recently used go first",
        "Entries being sent count toward it and are never cut.", section="store")
    cache_max_age: float = option(
        7 * 86400.0, POSITIVE_DURATION, "cache entries unused for this long are evicted",
        section="store")
    cache_min_free: int = option(
        1024**3, SIZE, "free space the cache leaves on its filesystem, evicting to keep it",
        section="store")
    cache_revalidate: float = option(
        60.0, DURATION,
        "a cached object is checked against the store when its check is this old",
        "The check is a HEAD, made before the object is served. `0`: every request checks. "
        "With a PostgreSQL catalog, a write or delete through another server of the fleet is "
        "seen at once instead; see "
        "[operations.md](operations.md#a-fleet-what-each-server-learns-of-the-others-writes).",
        section="store")
    cache_readahead: int = option(
        4, COUNT, "blocks fetched ahead of a sequential reader", "`0`: none.",
        section="store")
    cache_encrypt: bool = option(
        False, SWITCH, "encrypt cached blocks with AES-256-GCM",
        "The cache directory then holds no plaintext. Needs `--cache-dir`.",
        switch=True, section="store")
    cache_key_file: str | None = option(
        None, optional("a file"),
        "the 32-byte cache key, created with mode 0600 if missing "
        "(none: `STATE-DIR/cache.key`)",
        "Keep it out of the cache directory.", metavar="FILE", section="store")
    # fmt: on

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
        """The state directory, and why it is that one (config/state.py)."""
        return choose_state_dir(
            self.state_dir, self.source, remote=self.is_remote, allow_write=self.allow_write
        )

    @property
    def catalog_location(self) -> CatalogLocation:
        """What --catalog names; without it, the SQLite file in the state directory."""
        if self.catalog is not None:
            return parse_catalog_url(self.catalog)
        return CatalogLocation(SQLITE, str(self.state_path / "catalog.db"))

    @property
    def cache_key_path(self) -> Path:
        return Path(self.cache_key_file) if self.cache_key_file else self.state_path / "cache.key"


def _named(spec: Field[Any]) -> Option:
    option: Option = spec.metadata[_SPEC]
    return replace(option, name=spec.name.replace("_", "-"))


OPTIONS: tuple[Option, ...] = tuple(_named(spec) for spec in fields(Config))
OPTIONS_BY_ATTR = {option.attr: option for option in OPTIONS}

# The file of settings is read before them all, so it is not one of them.
CONFIG_FILE = Option(
    "config", optional("a file"), None,
    "a TOML file of settings; the environment and flags override it",
    "See [the TOML file](#the-toml-file).", metavar="FILE",
)  # fmt: skip

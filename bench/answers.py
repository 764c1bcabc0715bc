"""The fixed-request workloads: one small request, the same every time, and its answer.

Each is defined once, as a FixedRequest: the request, the answer it must get
(status, body, headers), and the load generator. From that definition come
the check before timing (one exchange on a raw connection, bench/answercheck.py)
and the timed run:

- small        GET of the 1 KiB file on kept-alive connections: 200, the file's bytes
- notfound     GET of a missing file: 404 (any body, framed right)
- notmodified  GET with If-None-Match: the ETag the server gave the file: 304, no body,
               the same ETag
- head         HEAD of the 1 KiB file: 200, Content-Length 1024, no body (driven by ab:
               wrk cannot read a HEAD answer, bench/abrun.py)
- close        GET of the 1 KiB file with Connection: close: a new connection per request
- listing      GET of a directory of 1,000 files asking for HTML: 200, every name on the page

After each kept-alive answer the check asks for the 1 KiB file again on the
same connection: a body where none belongs, or a connection left unusable,
shows there. A status other than the expected one makes the workload
"unsupported" for that server; wrong bytes or headers flag its figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from abrun import AbResult, run_ab
from answercheck import Answer, Connection, ExchangeError
from measure import Measured, measure, measure_wrk, measured_outcome
from outcome import ANSWERS, Context, Metric, Outcome, Workload
from servers import Server
from testfiles import LISTING_DIR, LISTING_NAMES, SMALL_NAME, SMALL_SIZE
from wrkrun import WrkResult

SMALL_PATH = "/" + SMALL_NAME
MISSING_PATH = "/missing-" + SMALL_NAME


@dataclass(frozen=True)
class FixedRequest:
    key: str
    title: str  # may name settings fields: {small_connections}
    method: str
    path: str
    status: int  # the answer's status
    # "file": the 1 KiB file's bytes (or `content`); "none": no body; "any": an error page;
    # "listing": a page naming every file of the listed directory
    body: str
    conditional: bool = False  # If-None-Match with the ETag of the file's 200
    close: bool = False  # Connection: close: a new connection per request
    tool: str = "wrk"  # or "ab" (HEAD)
    accept: str = ""  # an Accept header, when the answer depends on it
    content: bytes | None = None  # the "file" body when it is not the 1 KiB file's

    def expected(self, file_bytes: bytes) -> bytes:
        """The bytes a "file" answer must carry, given the 1 KiB file's."""
        return file_bytes if self.content is None else self.content

    def headers(self, etag: str | None) -> tuple[str, ...]:
        found = [f"Accept: {self.accept}"] if self.accept else []
        if self.conditional:
            found.append(f"If-None-Match: {etag}")
        if self.close:
            found.append("Connection: close")
        return tuple(found)


FIXED_REQUESTS = (
    FixedRequest(
        "small", "1 KiB file, keep-alive, {small_connections} connections",
        "GET", SMALL_PATH, 200, "file",
    ),
    FixedRequest(
        "notfound", "404 for a missing file, keep-alive, {small_connections} connections",
        "GET", MISSING_PATH, 404, "any",
    ),
    FixedRequest(
        "notmodified",
        "304 for If-None-Match with the 1 KiB file's ETag, {small_connections} connections",
        "GET", SMALL_PATH, 304, "none", conditional=True,
    ),
    FixedRequest(
        "head", "HEAD of the 1 KiB file, {small_connections} connections (ab, HTTP/1.0 keep-alive)",
        "HEAD", SMALL_PATH, 200, "none", tool="ab",
    ),
    FixedRequest(
        "close", "1 KiB file with Connection: close, a new connection per request, "
        "{small_connections} at a time",
        "GET", SMALL_PATH, 200, "file", close=True,
    ),
    FixedRequest(
        "listing", "HTML listing of a directory of 1,000 files, {small_connections} connections",
        "GET", f"/{LISTING_DIR}/", 200, "listing", accept="text/html",
    ),
)  # fmt: skip


@dataclass
class Check:
    """What the exchange before timing found: unsupported (why), problems, the ETag."""

    unsupported: str = ""
    problems: tuple[str, ...] = ()
    etag: str | None = None


def check(spec: FixedRequest, port: int, file_bytes: bytes, tls: bool = False) -> Check:
    try:
        return _check(spec, port, file_bytes, tls)
    except (OSError, ExchangeError) as exc:
        return Check(problems=(f"check: {exc}",))


def _check(spec: FixedRequest, port: int, file_bytes: bytes, tls: bool) -> Check:
    with Connection(port, tls) as conn:
        plain = conn.ask("GET", SMALL_PATH)
    etag = plain.header("etag")
    if spec.conditional and etag is None:
        return Check(unsupported="no ETag on the 1 KiB file's 200")
    with Connection(port, tls) as conn:
        answer = conn.ask(spec.method, spec.path, spec.headers(etag))
        if answer.status != spec.status:
            return Check(unsupported=f"answers {answer.status}, not {spec.status}")
        problems = _answer_problems(spec, answer, file_bytes, plain.header("etag"))
        if spec.close:
            conn.sock.settimeout(3)
            if not answer.closes:
                problems.append("the answer to Connection: close does not say close")
            elif not conn.closed_by_server():
                problems.append("the connection stayed open after Connection: close")
        elif answer.closes:
            problems.append("the server closed the connection after the answer")
        else:
            problems += _follow_up_problems(conn, file_bytes)
    return Check(problems=tuple(f"check: {p}" for p in problems), etag=etag)


def _answer_problems(
    spec: FixedRequest, answer: Answer, file_bytes: bytes, etag: str | None
) -> list[str]:
    problems = []
    if spec.body == "listing":
        page = answer.body.decode("utf-8", "replace")
        unnamed = [name for name in LISTING_NAMES if name not in page]
        if unnamed:
            problems.append(f"the listing leaves out {len(unnamed)} of {len(LISTING_NAMES)} files")
    expected = spec.expected(file_bytes)
    if spec.body == "file" and answer.body != expected:
        problems.append(f"{len(answer.body)} bytes that are not the {len(expected)} expected")
    if spec.method == "HEAD" and answer.header("content-length") != str(len(file_bytes)):
        problems.append(f"HEAD says Content-Length {answer.header('content-length')}")
    if spec.body == "none" and etag is not None and answer.header("etag") != etag:
        problems.append(f"ETag {answer.header('etag')} where the 200 said {etag}")
    return problems


def _follow_up_problems(conn: Connection, file_bytes: bytes) -> list[str]:
    """The same connection must carry a second request, right after the answer."""
    try:
        again = conn.ask("GET", SMALL_PATH)
    except (OSError, ExchangeError) as exc:
        return [f"the connection was not usable after the answer ({exc})"]
    if again.status != 200 or again.body != file_bytes:
        return [f"the next request on the connection got {again.status}, {len(again.body)} bytes"]
    return []


def _size_problem(spec: FixedRequest, measured: Measured) -> str:
    """Bytes per answer in the timed run must match the kind: a head alone (under
    1 KiB) where no body belongs, a head and the file where it does."""
    load = measured.load
    if spec.body in ("any", "listing") or not load.requests:
        return ""
    if isinstance(load, AbResult):
        return f"{load.body_bytes} body bytes in answers without one" if load.body_bytes else ""
    per_answer = load.bytes / load.requests
    size = SMALL_SIZE if spec.content is None else len(spec.content)
    low = size if spec.body == "file" else 0
    if not low <= per_answer < low + 1024:
        return f"{per_answer:.0f} bytes per answer where a {spec.body} body is expected"
    return ""


def run_fixed(spec: FixedRequest, server: Server, ctx: Context) -> Outcome:
    if server.tls and spec.tool == "ab":
        return Outcome("unsupported", note="ab is run over plain HTTP only")
    file_bytes = (ctx.files.root / SMALL_NAME).read_bytes()
    found = check(spec, server.port, file_bytes, server.tls)
    if found.unsupported:
        return Outcome("unsupported", note=found.unsupported)
    connections = ctx.settings.small_connections
    if spec.tool == "ab":
        url = server.url(spec.path)
        measured = measure(ctx, server, lambda s: run_ab(ctx.settings, url, connections, s))
    else:
        headers = spec.headers(found.etag)
        measured = measure_wrk(ctx, server, connections, "plain", (), spec.path, headers)
    problems = list(found.problems)
    problems += measured.load.problems(error_statuses=spec.status >= 400)
    problems += filter(None, [_size_problem(spec, measured)])
    metrics = {"rps": measured.load.requests_per_s, "p99_ms": _p99_ms(measured)}
    return measured_outcome(measured, metrics, ("rps", "p99_ms"), problems)


def _p99_ms(measured: Measured) -> float:
    load = measured.load
    return load.latency_us["p99"] / 1000 if isinstance(load, WrkResult) else load.p99_ms


def fixed_workload(spec: FixedRequest, metrics: tuple[Metric, ...] = ANSWERS) -> Workload:
    return Workload(spec.key, spec.title, metrics, partial(run_fixed, spec))


WORKLOADS = [fixed_workload(spec) for spec in FIXED_REQUESTS]

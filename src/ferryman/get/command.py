"""`ferryman get URL [-o PATH]`: download to PATH.part, resume it, verify it, rename it.

    ferryman get URL [-o PATH] [--connections N] [--retries N] [--sha256 HEX]
                 [--token-file FILE] [--timeout 30s] [--limit-rate RATE] [-q]

A run either continues what PATH.part.json records (same URL but for the
query, and the .part file of the recorded size) or starts over: the first
GET (`Range: bytes=0-`) gives the version (validator, size, digest), the
.part file is made that size at once, and the bytes still missing are
split into --connections segments, each fetched by its own thread. The
main thread draws the progress and saves the sidecar every
CHECKPOINT_EVERY seconds, after syncing the file's data. When every segment
is complete the file is synced, read back and hashed, and renamed to PATH
only if every digest known for it matches.

Exit status: 0 saved (verified, or said to be unverified), 1 a digest did not
match (nothing renamed, nothing kept), 2 usage or PATH cannot be written,
3 a network or HTTP failure (one line: status and URL; the .part file is
kept for the next run), 130 interrupted (kept for the next run).
"""

from __future__ import annotations

import os
import signal
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ferryman.audit.progress import Progress, format_size
from ferryman.config.parse import parse_positive_duration, parse_size
from ferryman.errors import ConfigError
from ferryman.get import sidecar
from ferryman.get.arguments import MAX_CONNECTIONS
from ferryman.get.digests import (
    Expected,
    UnreadableDigest,
    file_digests,
    mismatches,
    server_digests,
    sha256_option,
)
from ferryman.get.naming import output_path, shown_url
from ferryman.get.partfile import open_locked, prepare
from ferryman.get.ratelimit import RateLimit
from ferryman.get.request import Answer, FatalError, Source, check_url
from ferryman.get.segment import (
    Changed,
    Download,
    HttpFailure,
    LocalFailure,
    fetch_segment,
)
from ferryman.get.segments import Segment, plan, whole, written
from ferryman.get.sidecar import PartState
from ferryman.get.start import first_answer, one_connection, version_of

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_NETWORK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MAX_RESTARTS = 3  # a file that changes this often while it is fetched is not fetched
CHECKPOINT_EVERY = 1.0  # seconds between sidecar saves: what a kill -9 can cost


def get_command(args: dict[str, Any]) -> int:
    run = GetRun(args)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run.main()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class GetRun:
    def __init__(self, args: dict[str, Any]) -> None:
        url = str(args["url"])
        check_url(url)
        self.connections = int(args["connections"])
        if not 1 <= self.connections <= MAX_CONNECTIONS:
            raise ConfigError(f"--connections {self.connections}: 1 to {MAX_CONNECTIONS}")
        self.retries = int(args["retries"])
        if self.retries < 0:
            raise ConfigError(f"--retries {self.retries}: 0 or more")
        timeout = parse_positive_duration(args["timeout"])
        self.rate = parse_size(args["limit_rate"]) if args["limit_rate"] else None
        if self.rate == 0:
            raise ConfigError("--limit-rate 0 would never finish; leave it out for no limit")
        self.wanted = [sha256_option(args["sha256"])] if args["sha256"] else []
        context = ssl.create_default_context() if url.lower().startswith("https:") else None
        self.source = Source(url, _token(args["token_file"]), timeout, context)
        self.path = output_path(url, args["output"])
        self.part = self.path.with_name(self.path.name + ".part")
        self.sidecar = sidecar.sidecar_path(self.part)
        self.quiet = bool(args["quiet"])
        self.fd = -1
        self.state: PartState | None = None  # what this run is fetching, once known

    # -- the run --------------------------------------------------------------------------

    def main(self) -> int:
        existed = self.part.exists()
        self.fd = open_locked(self.part)
        try:
            self.state = self._resumable(existed)
            for _ in range(MAX_RESTARTS + 1):
                try:
                    self._fetch()
                    assert self.state is not None
                    return self._finish(self.state)
                except Changed as exc:
                    self._say(f"{shown_url(self.source.url)} changed on the server ({exc}):"
                              " starting over")  # fmt: skip
                    self.state = None
            self._say(f"{shown_url(self.source.url)} kept changing while it was fetched; try later")
            return EXIT_NETWORK
        except (HttpFailure, FatalError) as exc:
            self._say(str(exc))
            self._leave(existed)
            return EXIT_NETWORK
        except LocalFailure as exc:
            self._say(f"{self.part}: {exc}")
            self._leave(existed)
            return EXIT_USAGE
        except KeyboardInterrupt:
            if self._leave(existed):
                self._say(f"interrupted: {self.part} kept; the same command continues it")
            else:
                self._say("interrupted before any byte arrived")
            return EXIT_INTERRUPTED
        finally:
            if self.fd >= 0:
                os.close(self.fd)

    def _resumable(self, existed: bool) -> PartState | None:
        """The recorded state, if it describes this URL and this .part file."""
        state = sidecar.load(self.sidecar)
        size = os.fstat(self.fd).st_size
        why = "it has no record of what it holds for this URL"
        if state is not None and state.url == sidecar.identity(self.source.url):
            why = "the server gave no validator (ETag or Last-Modified) to resume it with"
            if state.validator is not None:
                why = "its size is not the one recorded"
                if state.size is None or size == state.size:
                    if not self.quiet:
                        have = format_size(written(state.segments))
                        self._say(f"continuing {self.part}: {have} already here")
                    return state
        if existed and size:
            self._say(f"{self.part}: {why}: starting over")
        return None

    def _fetch(self) -> None:
        """Every segment of self.state complete (or an exception): the .part file holds
        the version."""
        first: Answer | None = None
        if self.state is None:
            state, first = self._start()
            state.segments = plan(state.segments, self._connections_for(state, first))
        else:
            state = self.state
            state.segments = plan(state.segments, self.connections)
        self.state = state
        download = Download(self.source, self.fd, state, self.retries)
        if self.rate is not None:
            download.limit = RateLimit(self.rate, download.stop.wait)
        try:
            self._run_segments(download, first)
        finally:
            self._checkpoint(state)

    def _start(self) -> tuple[PartState, Answer]:
        """The first GET of a fresh download: the version it describes, the file sized."""
        answer = first_answer(self.source, self.retries)
        try:
            state = version_of(answer, self.source.url)
            prepare(self.fd, state.size)
            state.segments = whole(state.size)
            self._checkpoint(state)
        except BaseException:
            answer.close()
            raise
        return state, answer

    def _connections_for(self, state: PartState, first: Answer) -> int:
        why = None if self.connections == 1 else one_connection(state, first)
        if why is None:
            return self.connections
        self._say(f"one connection: {why}")
        return 1

    def _run_segments(self, download: Download, first: Answer | None) -> None:
        """Threads fetch the incomplete segments; this thread shows progress and saves the
        sidecar until they are done, then raises the first failure any of them met."""
        state = download.state
        queue = [s for s in state.segments if not s.complete]
        handed = {0: first} if first is not None else {}
        failures: list[tuple[type[Exception], str]] = []  # what each thread met, not kept
        lock = threading.Lock()

        def work() -> None:
            while not download.stop.is_set():
                with lock:
                    if not queue:
                        return
                    seg = queue.pop(0)
                    opened = handed.pop(seg.start, None)
                try:
                    fetch_segment(download, seg, opened)
                except Exception as exc:  # told to the main thread, which raises its own
                    with lock:
                        failures.append((type(exc), str(exc)))
                    download.abort()

        threads = [threading.Thread(target=work, daemon=True, name=f"get-{n}")
                   for n in range(min(self.connections, len(queue)))]  # fmt: skip
        for thread in threads:
            thread.start()
        progress = self._progress("get", state.size, written(state.segments))
        try:
            saved = time.monotonic()
            while alive := [t for t in threads if t.is_alive()]:
                alive[0].join(0.1)
                if progress is not None:
                    progress.advance(nbytes=written(state.segments) - progress.bytes)
                if time.monotonic() - saved >= CHECKPOINT_EVERY:
                    self._checkpoint(state)
                    saved = time.monotonic()
        finally:
            download.abort()
            if progress is not None:
                progress.close()
            for answer in handed.values():
                if answer is not None:
                    answer.close()
            for thread in threads:  # none may write into the file once this run is over
                thread.join(self.source.timeout + 5)
            if any(t.is_alive() for t in threads):
                raise LocalFailure("a connection did not stop in time after the others")
        for kind in (LocalFailure, HttpFailure, FatalError, Changed):
            for met, text in failures:
                if issubclass(met, kind):
                    raise kind(text)
        if failures:  # a bug in a segment's thread
            met, text = failures[0]
            raise RuntimeError(f"a connection failed: {met.__name__}: {text}")

    def _checkpoint(self, state: PartState) -> None:
        """Sync the file's data, then record what it holds: the record never runs ahead."""
        snapshot = [Segment(s.start, s.end, s.done) for s in state.segments]
        try:
            os.fdatasync(self.fd)
            recorded = PartState(state.url, state.validator, state.size, state.digest_field,
                                 state.digest_value, snapshot)  # fmt: skip
            sidecar.save(self.sidecar, recorded)
        except OSError as exc:
            raise LocalFailure(
                f"cannot record progress in {self.sidecar}: {exc.strerror}"
            ) from None

    # -- the end ----------------------------------------------------------------------------

    def _finish(self, state: PartState) -> int:
        """Verify the complete .part file, then rename it into place (or remove it)."""
        size = state.segments[-1].end if state.size is None else state.size
        assert size is not None
        try:
            os.ftruncate(self.fd, size)
            os.fsync(self.fd)
        except OSError as exc:
            raise LocalFailure(f"cannot sync it: {exc.strerror}") from None
        expected = self._expected(state)
        if expected:
            progress = self._progress("verify", size, 0)
            advance = progress.advance if progress is not None else _ignore
            try:
                actual = file_digests(self.fd, {e.algorithm for e in expected},
                                      lambda n: advance(0, n))  # fmt: skip
            finally:
                if progress is not None:
                    progress.close()
            bad = mismatches(expected, actual)
            if bad:
                self._discard()
                for each in bad:
                    self._say(_mismatch_line(self.path, each, actual[each.algorithm]))
                self._say(f"nothing saved and {self.part} removed; " + _what_to_do(bad))
                return EXIT_MISMATCH
        self._place()
        line = f"saved {self.path} ({format_size(size)})"
        if expected:
            checked = ", ".join(sorted({e.source for e in expected}))
            if not self.quiet:
                self._say(f"{line}: SHA-256 verified against {checked}")
        else:
            self._say(f"{line}, unverified: the server sent no Repr-Digest;"
                      " --sha256 HEX checks it against a known digest")  # fmt: skip
        return EXIT_OK

    def _expected(self, state: PartState) -> list[Expected]:
        expected = list(self.wanted)
        if state.digest_field is not None and state.digest_value is not None:
            try:
                expected += server_digests(state.digest_field, state.digest_value)
            except UnreadableDigest as exc:
                self._say(f"the server's {state.digest_field} cannot be read ({exc}): not used")
        return expected

    def _place(self) -> None:
        """PATH is the verified file, durably: rename, sync the directory, drop the record."""
        try:
            os.replace(self.part, self.path)
            sidecar.sync_directory(self.path.parent)
            sidecar.remove(self.sidecar)
        except OSError as exc:
            raise LocalFailure(f"cannot rename it to {self.path}: {exc.strerror}") from None

    def _discard(self) -> None:
        for each in (self.part,):
            try:
                os.unlink(each)
            except FileNotFoundError:
                pass
        sidecar.remove(self.sidecar)

    def _leave(self, existed: bool) -> bool:
        """After a failure: a .part this run made and wrote nothing to goes (False); any
        other stays for the next run (True)."""
        if not existed and (self.state is None or written(self.state.segments) == 0):
            self._discard()
            return False
        return True

    # -- output -----------------------------------------------------------------------------

    def _progress(self, label: str, total: int | None, done: int) -> Progress | None:
        if self.quiet or not sys.stderr.isatty():
            return None
        return Progress(f"{label} {self.path.name}", bytes_total=total, stream=sys.stderr,
                        counts_objects=False, bytes_done=done)  # fmt: skip

    def _say(self, line: str) -> None:
        print(f"ferryman get: {line}", file=sys.stderr, flush=True)


# -- helpers ----------------------------------------------------------------------------------


def _token(token_file: str | None) -> str | None:
    if token_file is None:
        return os.environ.get("FERRYMAN_TOKEN") or None
    try:
        with open(token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--token-file {token_file}: cannot read it ({exc})") from None
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"--token-file {token_file}: one token on one line is expected")
    return token


def _mismatch_line(path: Path, expected: Expected, actual: bytes) -> str:
    return (f"{path}: {expected.algorithm} does not match {expected.source}: expected"
            f" {expected.digest.hex()}, got {actual.hex()}")  # fmt: skip


def _what_to_do(bad: list[Expected]) -> str:
    if all(e.source == "--sha256" for e in bad):
        return "check the --sha256 value; if it is right, the server's copy is not that file"
    return ("download it again; a second mismatch means the server's copy (or something"
            " between) is damaged: tell whoever runs the server")  # fmt: skip


def _ignore(*_: object) -> None:
    """No progress to show."""

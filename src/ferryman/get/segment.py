"""One segment fetched into the .part file: ranged GETs, each byte written at its offset.

Every request for a segment asks for the bytes it still lacks,
`Range: bytes=NEXT-LAST` with `If-Range` (the version's validator), and
every answer is checked to be of the same version before a byte of it is
written: a 206 whose Content-Range starts at NEXT and whose total is the
size, with the same ETag (or Last-Modified) and Repr-Digest when it sends
them. A 200 (If-Range did not match), a 416 or a different total means the
file changed: the download starts over (`Changed`). Bytes are written with
pwrite at their offset, and the segment's `done` grows only after its
bytes are written, so a sidecar saved from it never claims a byte that is
not in the file.
"""

from __future__ import annotations

import http.client
import os
import random
import threading
import time
from dataclasses import dataclass, field

from ferryman.get.naming import shown_url
from ferryman.get.ratelimit import RateLimit
from ferryman.get.request import Answer, NetworkError, Source, describe, get
from ferryman.get.retry import RetryBudget, retry_after, retryable_status
from ferryman.get.segments import Segment
from ferryman.get.sidecar import PartState
from ferryman.http.spans import parse_content_range

CHUNK = 256 * 1024


class Changed(Exception):
    """The file on the server is not the version being fetched; the message says how."""


class HttpFailure(Exception):
    """An answer no retry can mend (404, 403, ...), or retries spent on answers that say
    "later"; the message is the one line a user sees."""


class LocalFailure(Exception):
    """The .part file could not be written."""


class Later(Exception):
    """An answer that asks to try again (408, 429, 5xx)."""

    def __init__(self, text: str, asked: float | None) -> None:
        super().__init__(text)
        self.asked = asked


@dataclass
class Download:
    """What the segments of one run share."""

    source: Source
    fd: int
    state: PartState
    retries: int
    stop: threading.Event = field(default_factory=threading.Event)
    limit: RateLimit | None = None
    rng: random.Random = field(default_factory=random.Random)
    _open: set[Answer] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def opened(self, answer: Answer) -> bool:
        """Track `answer` so that `abort` can cut it; False (and closed) if stopping."""
        with self._lock:
            if self.stop.is_set():
                answer.close()
                return False
            self._open.add(answer)
            return True

    def closed(self, answer: Answer) -> None:
        with self._lock:
            self._open.discard(answer)
        answer.close()

    def abort(self) -> None:
        """Stop every segment now: a thread blocked reading an answer gets an error at once,
        so that no byte of this run is written after the caller moved on."""
        with self._lock:
            self.stop.set()
            answers = list(self._open)
        for answer in answers:
            answer.abort()


def fetch_segment(download: Download, seg: Segment, first: Answer | None = None) -> None:
    """Fetch the rest of `seg` (starting with `first`, an answer already open for it).

    Returns when the segment is complete or the download stops; raises
    Changed, HttpFailure or LocalFailure.
    """
    budget = RetryBudget(download.retries, download.rng)
    while not seg.complete and not download.stop.is_set():
        before = seg.next
        try:
            answer = first if first is not None else get(download.source, _headers(download, seg))
            first = None
            if not download.opened(answer):
                return
            try:
                _check(download, seg, answer)
                if _receive(download, seg, answer):
                    return
            finally:
                download.closed(answer)
            if seg.next == before:
                raise NetworkError("an answer with no bytes")
        except (NetworkError, Later) as exc:
            asked = exc.asked if isinstance(exc, Later) else None
            wait = budget.wait(seg.next > before, asked)
            if wait is None:
                raise HttpFailure(gave_up(download.source.url, exc, budget, asked)) from None
            download.stop.wait(wait)


def _headers(download: Download, seg: Segment) -> dict[str, str]:
    last = "" if seg.end is None else str(seg.end - 1)
    headers = {"Range": f"bytes={seg.next}-{last}"}
    if download.state.validator is not None:
        headers["If-Range"] = download.state.validator.value
    return headers


def check_status(answer: Answer, url: str) -> None:
    """Nothing for 200 and 206; Later for an answer to retry; HttpFailure for the rest."""
    status = answer.status
    if status in (200, 206):
        return
    if retryable_status(status):
        raise Later(f"HTTP {status} {answer.reason}",
                    retry_after(answer.header("Retry-After"), time.time()))  # fmt: skip
    if status != 416:
        raise HttpFailure(f"HTTP {status} {answer.reason}: {shown_url(url)}")


def _check(download: Download, seg: Segment, answer: Answer) -> None:
    """The answer is this segment's bytes of this version, or an exception says why not."""
    state = download.state
    check_status(answer, download.source.url)
    if answer.status == 416:
        raise Changed("the server has fewer bytes than before")
    _same_version(state, answer)
    if answer.status == 200:
        length = answer.header("Content-Length")
        whole = state.size is None or (length is not None and length == str(state.size))
        if seg.next != 0 or not whole:
            raise Changed("the server sent the whole file instead of the rest (If-Range)")
        return
    parsed = parse_content_range(answer.header("Content-Range") or "")
    if parsed is None:
        raise HttpFailure(f"a 206 without a Content-Range of one range: {shown_url(answer.url)}")
    span, total = parsed
    if state.size is not None and total != state.size:
        raise Changed(f"its size is now {total} bytes, not {state.size}")
    if span.start != seg.next:  # a longer range than asked is fine: reading stops at the end
        raise HttpFailure(f"asked for bytes from {seg.next}, got {span.start}-{span.end - 1}:"
                          f" {shown_url(answer.url)}")  # fmt: skip


def _same_version(state: PartState, answer: Answer) -> None:
    validator = state.validator
    if validator is not None:
        name = "ETag" if validator.kind == "etag" else "Last-Modified"
        sent = answer.header(name)
        if sent is not None and sent.strip() != validator.value:
            raise Changed(f"its {name} is now {sent.strip()}")
    if state.digest_field == "Repr-Digest":
        digest = answer.header("Repr-Digest")
        if digest is not None and digest.strip() != state.digest_value:
            raise Changed("its Repr-Digest changed")


def _receive(download: Download, seg: Segment, answer: Answer) -> bool:
    """Write the answer's body at the segment's offsets; True when the segment is done
    (for a segment with no end: the body ended cleanly)."""
    buffer = memoryview(bytearray(CHUNK))
    response = answer.response
    while not download.stop.is_set():
        want = CHUNK if seg.end is None else min(CHUNK, seg.end - seg.next)
        if want <= 0:
            return True
        try:
            got = response.readinto(buffer[:want])
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise NetworkError(describe(exc)) from None
        if download.stop.is_set():
            return False  # aborted: the bytes read are not written
        if got == 0:
            if seg.end is None:
                seg.end = seg.next  # the whole body of unknown size has arrived
                return True
            return False  # a shorter range than asked: ask for the rest
        _write(download.fd, buffer[:got], seg.next)
        seg.done += got
        if download.limit is not None:
            download.limit.take(got)
    return False


def _write(fd: int, data: memoryview, offset: int) -> None:
    while data:
        try:
            written = os.pwrite(fd, data, offset)
        except OSError as exc:
            raise LocalFailure(f"cannot write at byte {offset}: {exc.strerror}") from None
        data = data[written:]
        offset += written


def gave_up(url: str, exc: Exception, budget: RetryBudget, asked: float | None) -> str:
    """The one line of a download given up: the last failure, and why no more tries."""
    if asked is not None and budget.failures <= budget.retries:
        return f"{exc}: the server asks to wait {asked:.0f}s; try again later: {shown_url(url)}"
    return f"{exc} ({budget.failures} tries in a row failed): {shown_url(url)}"

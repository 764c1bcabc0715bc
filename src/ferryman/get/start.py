"""A fresh download's first GET, and the version it describes.

The first request asks for `Range: bytes=0-`: a server that takes ranges
answers 206 with the size in its Content-Range, one that does not answers
200 with the whole body; either way the body starts at byte 0, and the
first segment reads it. Its ETag (strong only: a weak one cannot go in
If-Range), else its Last-Modified, is the validator every later request
sends; its Repr-Digest (or a 200's Content-Digest, the same bytes when no
content coding applies) is what the finished file is checked against.
"""

from __future__ import annotations

import random
import time

from ferryman.get import sidecar
from ferryman.get.naming import shown_url
from ferryman.get.request import Answer, NetworkError, Source, get
from ferryman.get.retry import RetryBudget
from ferryman.get.segment import HttpFailure, Later, check_status, gave_up
from ferryman.get.sidecar import PartState, Validator
from ferryman.http.spans import parse_content_range


def first_answer(source: Source, retries: int) -> Answer:
    """The open answer to the first GET (200 or 206), retried as every request is."""
    budget = RetryBudget(retries, random.Random())
    headers = {"Range": "bytes=0-"}
    while True:
        try:
            answer = get(source, headers)
            try:
                check_status(answer, source.url)
            except BaseException:
                answer.close()
                raise
            if answer.status != 416:
                return answer
            answer.close()  # an empty file: "bytes=0-" names no byte of it
            headers = {}
        except (NetworkError, Later) as exc:
            asked = exc.asked if isinstance(exc, Later) else None
            wait = budget.wait(False, asked)
            if wait is None:
                raise HttpFailure(gave_up(source.url, exc, budget, asked)) from None
            time.sleep(wait)


def version_of(answer: Answer, url: str) -> PartState:
    """The version the first answer describes: validator, size, digest."""
    size: int | None = None
    if answer.status == 206:
        parsed = parse_content_range(answer.header("Content-Range") or "")
        if parsed is None or parsed[0].start != 0:
            answer.close()
            raise HttpFailure(f"a 206 for bytes=0- that does not start at 0: {shown_url(url)}")
        size = parsed[1]
    else:
        size = answer.response.length
    etag = (answer.header("ETag") or "").strip()
    modified = (answer.header("Last-Modified") or "").strip()
    validator = (Validator("etag", etag) if etag.startswith('"')
                 else Validator("last-modified", modified) if modified else None)  # fmt: skip
    state = PartState(sidecar.identity(url), validator, size)
    repr_digest = answer.header("Repr-Digest")
    content_digest = answer.header("Content-Digest")
    if repr_digest is not None:
        state.digest_field, state.digest_value = "Repr-Digest", repr_digest.strip()
    elif (
        content_digest is not None
        and answer.status == 200
        and not answer.header("Content-Encoding")
    ):
        state.digest_field, state.digest_value = "Content-Digest", content_digest.strip()
    return state


def one_connection(state: PartState, first: Answer) -> str | None:
    """Why this download cannot be split across connections, or None when it can."""
    ranges = first.status == 206 or "bytes" in (first.header("Accept-Ranges") or "")
    if not ranges:
        return "the server does not take ranges"
    if state.validator is None:
        return "the server gives no ETag or Last-Modified"
    if state.size is None:
        return "its size is not known"
    return None

"""Response framing: one place decides Content-Length, chunked, close and no-body."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.http.body import Body, FileRegion
from ferryman.http.response import Framing, Response, error_response, frame_head

DATE = "Sat, 21 Nov 2026 12:00:00 GMT"
DATE_LINE = f"Date: {DATE}\r\n".encode()


async def _stream() -> AsyncIterator[bytes]:
    yield b"x"


def head_lines(framing: Framing) -> list[str]:
    return framing.head.decode().split("\r\n")


def frame(
    response: Response, method: str = "GET", http11: bool = True, keep_alive: bool = True
) -> Framing:
    return frame_head(response, method=method, http11=http11, keep_alive=keep_alive, date=DATE_LINE)


def test_known_length() -> None:
    body = Body((b"abc", FileRegion(3, 0, 10)))
    framing = frame(Response(200, [("ETag", '"x"')], body))
    lines = head_lines(framing)
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Content-Length: 13" in lines and f"Date: {DATE}" in lines
    assert framing.send_body and framing.keep_alive and not framing.chunked
    assert framing.head.endswith(b"\r\n\r\n")


def test_head_keeps_content_length_but_sends_no_body() -> None:
    framing = frame(Response(200, [], Body((b"abcdef",))), method="HEAD")
    assert "Content-Length: 6" in head_lines(framing) and not framing.send_body


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    framing = frame(Response(status))
    assert not framing.send_body
    assert not any(line.startswith("Content-Length") for line in head_lines(framing))


def test_unknown_length_is_chunked_on_11_and_closes_on_10() -> None:
    body = Body(stream=_stream())
    framing = frame(Response(200, [], body))
    assert framing.chunked and "Transfer-Encoding: chunked" in head_lines(framing)
    framing = frame(Response(200, [], Body(stream=_stream())), http11=False)
    assert not framing.chunked and not framing.keep_alive
    assert "Connection: close" in head_lines(framing)


def test_http10_keep_alive_is_announced() -> None:
    framing = frame(Response(200, [], Body((b"a",))), http11=False)
    assert "Connection: keep-alive" in head_lines(framing)


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x", "a\nb", "a\rb"])
def test_header_injection_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        frame(Response(301, [("Location", value)]))


def payload(response: Response) -> bytes:
    return b"".join(part for part in response.body.parts if isinstance(part, bytes))


def test_error_bodies() -> None:
    api = error_response(404, "not_found", "no such file", accept="*/*")
    assert json.loads(payload(api)) == {"error": "not_found", "detail": "no such file"}
    text = error_response(404, "not_found", "no such file", accept="text/plain")
    assert payload(text).startswith(b"404 Not Found")
    assert ("Content-Type", "text/plain; charset=utf-8") in text.headers


@given(st.text(), st.text())
def test_a_json_error_body_is_what_json_dumps_writes(error: str, detail: str) -> None:
    # Any string: quotes, backslashes, control characters, non-ASCII, lone surrogates.
    api = error_response(400, error, detail, accept="application/json")
    expected = json.dumps({"error": error, "detail": detail}).encode("utf-8") + b"\n"
    assert payload(api) == expected


def test_error_answers_are_kept_encoded_and_the_table_stays_bounded() -> None:
    from ferryman.http import response as module

    first = frame(error_response(404, "not_found", "no such file"))
    again = error_response(404, "not_found", "no such file")
    assert again.head_block is not None  # framed from the kept block
    assert (
        frame(again).head == first.head
        and payload(again) == b'{"error": "not_found", "detail": "no such file"}\n'
    )
    for n in range(3 * module.MAX_KEPT_ERRORS):  # details a client could vary
        error_response(400, "bad_request", f"bad path /{n}")
    assert len(module._kept_errors) <= module.MAX_KEPT_ERRORS
    # A header value holding CR LF is never kept, and framing still refuses it.
    with pytest.raises(ValueError):
        frame(error_response(405, "method_not_allowed", "", (("Allow", "GET\r\nX: y"),)))


def test_a_browser_gets_a_small_html_page_with_a_way_back() -> None:
    hostile = '<script>alert(1)</script> & "quotes"'
    page = error_response(403, "forbidden", hostile, accept="text/html,application/xhtml+xml")
    body = payload(page).decode("utf-8")
    assert ("Content-Type", "text/html; charset=utf-8") in page.headers
    assert "<title>403 Forbidden</title>" in body and '<a href="/">' in body
    assert "<script" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    policy = dict(page.headers)["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'") and "script-src" not in policy


def test_body_release_runs_once() -> None:
    calls: list[int] = []
    body = Body((b"x",), cleanup=lambda: calls.append(1))
    body.release()
    body.release()
    assert calls == [1]

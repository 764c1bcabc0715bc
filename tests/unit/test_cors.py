"""CORS decisions (http/cors.py): which origins are configured, and what each answer gets.

The properties: no Access-Control-* header ever reaches an origin that is not
allowed; `*` never goes with credentials (a request that carries them, or
Access-Control-Allow-Credentials); Vary names Origin on every answer that
depended on it; a preflight grants only headers that were asked for and that
ferryman reads.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.app import paths
from ferryman.app.application import Application
from ferryman.config import Config, build_config, check_combinations
from ferryman.errors import ConfigError, HttpError
from ferryman.http.cors import ANY, REQUEST_HEADERS, Cors, normal_origin, requested_headers
from ferryman.http.parser import Request
from ferryman.http.response import Response
from tests.builders import request as parsed_request

METHODS = "GET, HEAD, OPTIONS"


@pytest.mark.parametrize(
    ("given", "normal"),
    [("https://player.example", "https://player.example"),
     ("HTTPS://Player.Example", "https://player.example"),
     ("https://player.example:443", "https://player.example"),
     ("http://player.example:80", "http://player.example"),
     ("http://player.example:443", "http://player.example:443"),
     ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
     ("http://[0:0:0:0:0:0:0:1]:9000", "http://[::1]:9000"),
     ("http://xn--bcher-kva.example", "http://xn--bcher-kva.example"),
     ("app://local-app", "app://local-app"),
     ("*", "*")],
)  # fmt: skip
def test_origins_are_written_as_browsers_send_them(given: str, normal: str) -> None:
    assert normal_origin(given) == normal


@pytest.mark.parametrize(
    ("given", "reason"),
    [("https://player.example/", "has a path"),
     ("https://player.example/app", "has a path"),
     ("https://player.example?x=1", "has a path"),
     ("player.example", "not an origin"),
     ("https//player.example", "not an origin"),
     ("", "not an origin"),
     ("null", "'null'"),
     ("https://user@player.example", "names a user"),
     ("https://player.example:0", "port"),
     ("https://player.example:70000", "port"),
     ("https://player.example:", "port"),
     ("https://player.example:http", "port"),
     ("https://[::1", "closing"),
     ("https://[zz::1]", "not an IPv6"),
     ("https://bücher.example", "ASCII form"),
     ("https://", "not a host"),
     ("https://a b", "not a host"),
     ("https://a:b:80", "not a host")],
)  # fmt: skip
def test_what_is_not_an_origin_is_refused_with_a_reason(given: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        normal_origin(given)


def test_bad_origins_stop_the_start_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"--cors-origin: .*has a path"):
        build_config({"cors_origin": ["https://ok.example", "https://a.example/"]}, environ={})
    env = {"FERRYMAN_CORS_ORIGIN": "https://a.example:443  *  https://a.example"}
    assert build_config({}, environ=env).cors_origin == ("https://a.example", "*")


def test_credentials_need_an_origin_named() -> None:
    for origins in ((), ("*",)):
        with pytest.raises(ConfigError, match="--cors-credentials needs --cors-origin"):
            check_combinations(Config(cors_origin=origins, cors_credentials=True))
    check_combinations(Config(cors_origin=("*", "https://a.example"), cors_credentials=True))


def test_requested_headers_are_read_as_a_list_of_names() -> None:
    assert requested_headers(" Range ,if-match,,RANGE,\tx-a ") == ["range", "if-match", "x-a"]
    assert requested_headers("") == []


# -- the decision, as properties --------------------------------------------------------

ORIGINS = ["https://a.example", "https://b.example:8443", "http://127.0.0.1:9000", "null"]
origin_value = st.sampled_from(ORIGINS) | st.text(
    st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=30
)
configured = st.lists(st.sampled_from([*ORIGINS[:3], ANY]), max_size=4).filter(bool)
header_names = st.sampled_from([*REQUEST_HEADERS, "X-Other", "Cookie", "range", "AUTHORIZATION"])


@st.composite
def requests(draw: st.DrawFn) -> dict[str, str]:
    headers = {"origin": draw(origin_value)}
    for name in draw(st.lists(st.sampled_from(["authorization", "cookie", "range"]))):
        headers[name] = "x"
    if draw(st.booleans()):
        headers["access-control-request-method"] = draw(st.sampled_from(["GET", "PUT", "PATCH"]))
        asked = draw(st.lists(header_names, max_size=6))
        headers["access-control-request-headers"] = ", ".join(asked)
    return headers


def as_dict(answer: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for name, value in answer:
        fields.setdefault(name.lower(), []).append(value)
    return fields


@given(configured, requests(), st.booleans(), st.booleans(), st.booleans())
def test_decisions_keep_the_rules(
    origins: list[str], headers: dict[str, str], credentials: bool, signed: bool, preflight: bool
) -> None:
    listed = {o for o in origins if o != ANY}
    credentials = credentials and bool(listed)  # what check_combinations lets through
    cors = Cors(origins, methods=METHODS, max_age=600, credentials=credentials)
    answer = cors.preflight(headers, signed) if preflight else cors.actual(headers, signed)
    fields = as_dict(answer)
    origin = headers["origin"]
    allowed = origin in listed or ANY in origins

    # Vary names Origin on every answer (the answer depended on it), once.
    vary = [v.strip() for value in fields["vary"] for v in value.split(",")]
    assert vary.count("Origin") == 1
    if preflight:
        assert {"Access-Control-Request-Method", "Access-Control-Request-Headers"} <= set(vary)

    cors_fields = {name for name in fields if name.startswith("access-control-")}
    if not allowed:
        assert cors_fields == set()  # nothing at all for an origin not allowed
        return
    [acao] = fields["access-control-allow-origin"]
    assert acao in (origin, ANY)
    if acao == ANY:
        assert ANY in origins and origin not in listed
    carried = signed or (
        "authorization" in requested_headers(headers.get("access-control-request-headers", ""))
        if preflight
        else "authorization" in headers or "cookie" in headers
    )
    if carried:
        assert acao != ANY  # `*` never answers a request with credentials
    if "access-control-allow-credentials" in fields:
        assert fields["access-control-allow-credentials"] == ["true"]
        assert acao == origin != ANY and origin in listed and credentials
    elif credentials and origin in listed:
        pytest.fail("a listed origin lost its credentials")

    if preflight:
        assert fields["access-control-allow-methods"] == [METHODS]
        assert fields["access-control-max-age"] == ["600"]
        asked = requested_headers(headers.get("access-control-request-headers", ""))
        granted = fields.get("access-control-allow-headers", [""])[0]
        granted_names = requested_headers(granted)
        assert set(granted_names) == set(asked) & {h.lower() for h in REQUEST_HEADERS}
        assert "access-control-expose-headers" not in fields
    else:
        [exposed] = fields["access-control-expose-headers"]
        for name in ("Content-Range", "Accept-Ranges", "Content-Length", "ETag", "Repr-Digest",
                     "Content-Digest", "Last-Modified", "X-Request-Id"):  # fmt: skip
            assert name in exposed.split(", ")


def test_an_origin_named_and_star_together() -> None:
    cors = Cors(["https://a.example", ANY], methods=METHODS, max_age=7200, credentials=True)
    named = as_dict(cors.actual({"origin": "https://a.example"}))
    assert named["access-control-allow-origin"] == ["https://a.example"]
    assert named["access-control-allow-credentials"] == ["true"]
    other = as_dict(cors.actual({"origin": "https://c.example"}))
    assert other["access-control-allow-origin"] == [ANY]
    assert "access-control-allow-credentials" not in other
    token = as_dict(cors.actual({"origin": "https://c.example", "authorization": "Bearer t"}))
    assert token["access-control-allow-origin"] == ["https://c.example"]
    assert "access-control-allow-credentials" not in token


# -- the application: every answer to an allowed origin, errors and bugs included ------------


class FailingReader:
    """A reader with a bug, or one whose answer comes later: what a test cannot make a real
    reader do on purpose."""

    def __init__(self, failure: Exception, later: bool = False) -> None:
        self.failure = failure
        self.later = later

    def get(self, request: Request) -> Any:
        if not self.later:
            raise self.failure

        async def answer() -> Response:
            raise self.failure

        return answer()

    def tick(self) -> None: ...
    def close(self) -> None: ...


@pytest.fixture(autouse=True)
def _path_limits() -> Iterator[None]:
    """An Application sets the process's path limits from its root; put them back."""
    yield
    paths.set_limits(paths.NAME_MAX, paths.PATH_MAX)


def application(tmp_path: Path, reader: FailingReader | None = None) -> Application:
    config = Config(source=str(tmp_path), state_dir=str(tmp_path / "state"),
                    cors_origin=("https://a.example",))  # fmt: skip
    app = Application(config)
    if reader is not None:
        app.reader.close()
        app.reader = app.dispatch.reader = reader
    return app


def header(response: Response, name: str) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value
    return None


def test_a_bug_is_a_500_the_page_can_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = application(tmp_path, FailingReader(KeyError("x")))
    request = parsed_request("GET", "/f", {"Origin": "https://a.example"})
    request.id = request_id = "cors-0123"  # the connection gives it (and its X-Request-Id)
    answer = app.handle(request, None)
    assert isinstance(answer, Response) and answer.status == 500
    assert header(answer, "access-control-allow-origin") == "https://a.example"
    assert f"request {request_id} failed: KeyError" in caplog.text
    assert f"request {request_id} failed;".encode() in b"".join(answer.body.parts)  # type: ignore[arg-type]
    app.close()


def test_answers_that_come_later_get_the_headers_too(tmp_path: Path) -> None:
    app = application(tmp_path, FailingReader(HttpError(503, "busy", "later"), later=True))
    pending = app.handle(parsed_request("GET", "/f", {"Origin": "https://a.example"}), None)
    assert not isinstance(pending, Response)
    answer = asyncio.run(_awaited(pending))
    assert answer.status == 503
    assert header(answer, "access-control-allow-origin") == "https://a.example"
    app.reader = app.dispatch.reader = FailingReader(ConnectionResetError(), later=True)
    gone = app.handle(parsed_request("GET", "/f", {"Origin": "https://a.example"}), None)
    assert not isinstance(gone, Response)
    with pytest.raises(ConnectionResetError):  # the connection cuts it: nothing to answer
        asyncio.run(_awaited(gone))
    app.close()


async def _awaited(pending: Awaitable[Response]) -> Response:
    return await pending


def test_options_in_process(tmp_path: Path) -> None:
    app = application(tmp_path)
    for target in ("*", "/", "/a/b"):
        answer = app.handle(parsed_request("OPTIONS", target), None)
        assert isinstance(answer, Response)
        assert (answer.status, answer.headers) == (204, [("Allow", "GET, HEAD, OPTIONS")])
    app.close()

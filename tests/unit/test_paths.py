"""Request paths: decoded once, normalised, never above the root, dotfiles hidden."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.app import paths
from ferryman.app.paths import resolve, resolve_servable
from ferryman.errors import HttpError


@pytest.mark.parametrize(
    ("raw", "segments", "slash"),
    [
        (b"/", (), True),
        (b"/a/b", ("a", "b"), False),
        (b"/a//b/./c/", ("a", "b", "c"), True),
        (b"/a/../b", ("b",), False),
        (b"/a%20b", ("a b",), False),
        (b"/a%2Fb", ("a", "b"), False),  # an encoded separator is a separator, once
        (b"/%252e%252e/x", ("%2e%2e", "x"), False),  # decoded once, not twice
        (b"/a\\..\\b", ("a\\..\\b",), False),  # backslash is an ordinary character
    ],
)
def test_resolve(raw: bytes, segments: tuple[str, ...], slash: bool) -> None:
    path = resolve(raw)
    assert (path.segments, path.trailing_slash) == (segments, slash)


@pytest.mark.parametrize(
    "raw", [b"/..", b"/../x", b"/a/../../x", b"/%2e%2e/x", b"/a%2f..%2f..%2fx"]
)
def test_climbing_above_root_is_400(raw: bytes) -> None:
    with pytest.raises(HttpError) as info:
        resolve(raw)
    assert info.value.status == 400


@pytest.mark.parametrize("raw", [b"/%00", b"/a%00.txt"])
def test_nul_is_400(raw: bytes) -> None:
    with pytest.raises(HttpError) as info:
        resolve(raw)
    assert info.value.status == 400


@pytest.mark.parametrize("raw", [b"/.git/config", b"/a/.hidden", b"/%2egit", b"/.ferryman/"])
def test_dot_segments_are_404(raw: bytes) -> None:
    for _ in range(2):  # the second time from the memo
        with pytest.raises(HttpError) as info:
            resolve(raw)
        assert info.value.status == 404
        assert resolve_servable(raw) is None  # what the Root answers as a miss


segment = st.sampled_from(["a", "b", "..", ".", "", "%2e%2e", "%2F", "%00", ".x", "é", "\\"])


@given(st.lists(segment, max_size=12), st.booleans())
def test_never_escapes_and_url_round_trips(parts: list[str], slash: bool) -> None:
    raw = ("/" + "/".join(parts) + ("/" if slash else "")).encode()
    try:
        path = resolve(raw)
    except HttpError as exc:
        assert exc.status in (400, 404)
        # resolve_servable says None exactly for resolve's 404, and raises its 400.
        if exc.status == 404:
            assert resolve_servable(raw) is None
        else:
            with pytest.raises(HttpError):
                resolve_servable(raw)
        return
    assert resolve_servable(raw) is path
    assert ".." not in path.segments and "" not in path.segments and "." not in path.segments
    assert not any(s.startswith(".") or "\x00" in s for s in path.segments)
    assert not path.url().startswith("//")
    assert resolve(path.url().encode()).segments == path.segments
    assert path.url() == "/" + "/".join(quote(s, safe="") for s in path.segments) + (
        "/" if path.trailing_slash and path.segments else ""
    )


def test_resolved_paths_are_kept_and_the_table_stays_bounded() -> None:
    first = resolve(b"/memo/a%20b/")
    assert resolve(b"/memo/a%20b/") is first
    assert (first.segments, first.relative, first.trailing_slash) == (
        ("memo", "a b"),
        "memo/a b",
        True,
    )
    for i in range(paths._MEMO_MAX + 10):
        resolve(b"/memo/%d" % i)
    assert len(paths._resolved) <= paths._MEMO_MAX
    # Refusals are raised every time, never remembered as paths.
    for _ in range(2):
        with pytest.raises(HttpError) as refused:
            resolve(b"/../x")
        assert refused.value.status == 400
    assert b"/../x" not in paths._resolved
    # Long paths are resolved every time: the table's memory stays small.
    long = b"/x" * (paths._MEMO_LONGEST // 2) + b"x"  # segments shorter than --max-name-bytes
    assert len(long) == paths._MEMO_LONGEST + 1 and resolve(long).relative.endswith("/xx")
    assert long not in paths._resolved
    assert resolve(long[:-1]) is resolve(long[:-1])


# -- name and path lengths ----------------------------------------------------------------


SetLimits = Callable[[int, int], None]


@pytest.fixture
def limits() -> Iterator[SetLimits]:
    """Limits set by a test are the defaults again after it."""
    yield paths.set_limits
    paths.set_limits(paths.NAME_MAX, paths.PATH_MAX)


def status(raw: bytes) -> int:
    try:
        resolve(raw)
    except HttpError as exc:
        return exc.status
    return 200


def test_default_limits_are_linux_name_max_and_path_max() -> None:
    assert paths.limits() == (255, 4096)
    assert status(b"/" + b"n" * 255) == 200
    assert status(b"/" + b"n" * 256) == 400
    deep = b"/" + b"/".join([b"d" * 200] * 20)  # 4,020 bytes: every segment short
    assert status(deep) == 200
    assert status(deep + b"/" + b"e" * 75) == 200  # 4,096
    assert status(deep + b"/" + b"e" * 76) == 414


def test_lengths_are_counted_in_bytes_of_the_resolved_path(limits: SetLimits) -> None:
    limits(10, 30)
    assert status(b"/" + b"a" * 10) == 200
    assert status(b"/" + b"a" * 11) == 400
    assert status(b"/%61" * 1 + b"a" * 9) == 200  # decoded: 10 bytes
    assert status(b"/" + "é".encode() * 5) == 200  # 10 bytes
    assert status(b"/" + "é".encode() * 5 + b"x") == 400
    assert status(b"/%C3%A9" * 6) == 200  # 6 segments of 2 bytes: fine...
    assert status(b"/%C3%A9" * 6 + b"a" * 9) == 400  # ...one of 11 bytes is not
    assert status(b"/" + b"a" * 40 + b"/../b") == 200  # what is resolved counts
    assert status(b"/aaaaaaaaa/bbbbbbbbb/ccccccccc") == 200  # 30
    assert status(b"/aaaaaaaaa/bbbbbbbbb/cccccccccc") == 414  # 31
    assert status(b"/aaaaaaaaa/bbbbbbbbb/cccccccccc/") == 414  # a trailing slash is not counted
    assert status(b"/aaaaaaaaa/bbbbbbbbb/ccccccccc/") == 200
    assert status(b"/aaaaaaaaa//bbbbbbbbb/./ccccccccc") == 200
    assert status(b"/" + b"a" * 40) == 414  # over both: the path is the larger problem


def test_new_limits_forget_remembered_paths(limits: SetLimits) -> None:
    assert status(b"/twelve-bytes") == 200
    limits(5, 100)
    assert status(b"/twelve-bytes") == 400


@given(
    st.lists(st.text(alphabet="aé😀", min_size=1, max_size=8), max_size=8),
    st.integers(1, 40),
    st.integers(1, 80),
)
def test_refused_exactly_when_over_a_limit(segments: list[str], name: int, path: int) -> None:
    paths.set_limits(name, path)
    try:
        sizes = [len(s.encode()) for s in segments]
        raw = ("/" + "/".join(segments)).encode()
        over_path = sum(sizes) + len(sizes) > path
        over_name = any(size > name for size in sizes)
        assert status(raw) == (414 if over_path else 400 if over_name else 200)
    finally:
        paths.set_limits(paths.NAME_MAX, paths.PATH_MAX)


def test_limits_follow_the_source(limits: SetLimits, tmp_path: Path) -> None:
    from ferryman.config import Config

    root = tmp_path.resolve()
    paths.configure_limits(Config(source=str(root)))
    # The file system's longest name; an absolute path (root, path, NUL) within PATH_MAX.
    assert paths.limits() == (os.statvfs(root).f_namemax, 4096 - 1 - len(str(root)))
    paths.configure_limits(Config(source=str(root), max_name_bytes=1000, max_path_bytes=50))
    assert paths.limits() == (os.statvfs(root).f_namemax, 50)
    paths.configure_limits(Config(source=str(root), max_name_bytes=20, max_path_bytes=10**6))
    assert paths.limits()[0] == 20
    # A store: the key "pre/fix/" + path without its "/" is at most S3's 1024 bytes.
    paths.configure_limits(Config(source="s3://bucket/pre/fix/"))
    assert paths.limits() == (255, 1024 - len("pre/fix/") + 1)
    paths.configure_limits(Config(source="s3://bucket"))
    assert paths.limits() == (255, 1025)
    paths.configure_limits(Config(source="s3://bucket", max_name_bytes=1024, max_path_bytes=100))
    assert paths.limits() == (1024, 100)

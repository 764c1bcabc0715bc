"""Request paths: decoded once, normalised, never above the root, dotfiles hidden."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.app import paths
from ferryman.app.paths import resolve
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
    with pytest.raises(HttpError) as info:
        resolve(raw)
    assert info.value.status == 404


segment = st.sampled_from(["a", "b", "..", ".", "", "%2e%2e", "%2F", "%00", ".x", "é", "\\"])


@given(st.lists(segment, max_size=12), st.booleans())
def test_never_escapes_and_url_round_trips(parts: list[str], slash: bool) -> None:
    raw = ("/" + "/".join(parts) + ("/" if slash else "")).encode()
    try:
        path = resolve(raw)
    except HttpError as exc:
        assert exc.status in (400, 404)
        return
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
    long = b"/" + b"x" * paths._MEMO_LONGEST
    assert resolve(long).relative == "x" * paths._MEMO_LONGEST
    assert long not in paths._resolved
    assert resolve(long[:-1]) is resolve(long[:-1])

"""The pure parts of `ferryman get`: segments cover every byte once, names never escape,
digests are read as written, the sidecar round-trips and refuses what it did not write."""

from __future__ import annotations

import hashlib
import itertools
import random
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.errors import ConfigError
from ferryman.get.digests import UnreadableDigest, mismatches, server_digests, sha256_option
from ferryman.get.naming import MAX_NAME_BYTES, name_from_url, output_path, shown_url
from ferryman.get.retry import MAX_BACKOFF, RetryBudget, backoff, retry_after
from ferryman.get.segments import Segment, plan, whole, written
from ferryman.get.sidecar import PartState, Validator, from_json, identity, to_json
from ferryman.http.digest import format_repr_digest

# -- segments -------------------------------------------------------------------------------


@st.composite
def recorded_segments(draw: st.DrawFn) -> tuple[int, list[Segment]]:
    """A file size and segments tiling it, each with some bytes done."""
    size = draw(st.integers(1, 64 * 1024 * 1024))
    cuts = sorted(set(draw(st.lists(st.integers(1, size - 1), max_size=20)) if size > 1 else []))
    bounds = [0, *cuts, size]
    segments = []
    for start, end in itertools.pairwise(bounds):
        segments.append(Segment(start, end, draw(st.integers(0, end - start))))
    return size, segments


def _covered_once(segments: list[Segment], size: int) -> bool:
    position = 0
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start != position or seg.end is None or seg.end < seg.start:
            return False
        position = seg.end
    return position == size


def _done_bytes(segments: list[Segment]) -> list[tuple[int, int]]:
    """The written byte ranges, merged."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted((s.start, s.next) for s in segments if s.done):
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


@given(recorded_segments(), st.integers(1, 16), st.integers(1, 4 * 1024 * 1024))
def test_a_plan_covers_every_byte_exactly_once_and_keeps_what_was_written(
    recorded: tuple[int, list[Segment]], connections: int, min_split: int
) -> None:
    size, segments = recorded
    before = _done_bytes(segments)
    holes = sum(1 for s in segments if not s.complete)
    planned = plan([Segment(s.start, s.end, s.done) for s in segments], connections, min_split)
    assert _covered_once(planned, size)
    assert _done_bytes(planned) == before
    assert written(planned) == written(segments)
    incomplete = [s for s in planned if not s.complete]
    assert all(s.done == 0 for s in incomplete)  # a hole starts where the writing stopped
    assert len(incomplete) <= max(connections, holes)


@given(st.integers(0, 2**40), st.integers(1, 16))
def test_a_fresh_download_splits_into_up_to_n_even_segments(size: int, connections: int) -> None:
    planned = plan(whole(size), connections, min_split=1024 * 1024)
    assert _covered_once(planned, size)
    assert len(planned) <= connections
    if size >= 2 * connections * 1024 * 1024:
        lengths = [s.end - s.start for s in planned if s.end is not None]
        assert len(planned) == connections and max(lengths) - min(lengths) <= size // 2


def test_a_body_of_unknown_size_stays_one_segment() -> None:
    open_ended = [Segment(0, None, 500)]
    assert plan(open_ended, 8) == [Segment(0, None, 500)]


# -- naming ---------------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=300))
def test_a_name_from_any_url_never_leaves_the_directory(text: str) -> None:
    url = "http://example.invalid/dir/" + quote(text, safe="")
    try:
        name = name_from_url(url)
    except ConfigError:
        return
    assert name and "/" not in name and "\\" not in name and "\0" not in name
    assert not name.startswith(".")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert all(ord(c) >= 0x20 and ord(c) != 0x7F for c in name)
    here = Path("/srv/downloads")
    assert (here / name).resolve().parent == here


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://h/a/b.iso", "b.iso"),
        ("http://h/a/b%20c.iso?sig=x&expires=1", "b c.iso"),
        ("http://h/a/..%2F..%2Fetc%2Fpasswd", "_.._etc_passwd"),
        ("http://h/.bashrc", "bashrc"),
        ("http://h/%2e%2e", None),
        ("http://h/dir/", None),
        ("http://h", None),
        ("http://h/%ff.bin", None),
    ],
)
def test_names_from_urls(url: str, name: str | None) -> None:
    if name is None:
        with pytest.raises(ConfigError, match="-o PATH"):
            name_from_url(url)
    else:
        assert name_from_url(url) == name


def test_o_names_a_file_or_a_directory_to_put_it_in(tmp_path: Path) -> None:
    assert output_path("http://h/x.bin", str(tmp_path)) == tmp_path / "x.bin"
    assert output_path("http://h/x.bin", str(tmp_path / "y.bin")) == tmp_path / "y.bin"
    assert output_path("http://h/", str(tmp_path / "y.bin")) == tmp_path / "y.bin"


def test_messages_show_no_query_and_no_userinfo() -> None:
    assert shown_url("https://u:p@h:8/a/b?sig=s3cret") == "https://h:8/a/b?..."
    assert identity("HTTP://H:8/a/b?sig=1&exp=2") == identity("http://h:8/a/b?sig=3")


# -- digests --------------------------------------------------------------------------------


@given(st.binary(max_size=200))
def test_a_repr_digest_reads_back_as_written(data: bytes) -> None:
    digest = hashlib.sha256(data).digest()
    [expected] = server_digests("Repr-Digest", format_repr_digest(digest))
    assert (expected.source, expected.algorithm, expected.digest) == (
        "Repr-Digest", "sha-256", digest)  # fmt: skip
    assert mismatches([expected], {"sha-256": digest}) == []
    assert mismatches([expected], {"sha-256": bytes(32)}) == [expected]


@given(st.text(max_size=200))
def test_any_digest_field_is_read_or_refused_as_unreadable(value: str) -> None:
    try:
        found = server_digests("Repr-Digest", value)
    except UnreadableDigest:
        return
    assert all(e.algorithm in ("sha-256", "sha-512") for e in found)


def test_digests_this_client_cannot_compute_are_passed_over() -> None:
    sha512 = hashlib.sha512(b"x").digest()
    field = "crc32c=:AAAAAA==:, " + format_repr_digest(sha512).replace("sha-256", "sha-512")
    assert [e.algorithm for e in server_digests("Repr-Digest", field)] == ["sha-512"]
    assert server_digests("Repr-Digest", "crc32c=:AAAAAA==:") == []


def test_sha256_option() -> None:
    assert sha256_option("AB" * 32).digest == bytes([0xAB]) * 32
    for bad in ("", "ab", "g" * 64, "a" * 65):
        with pytest.raises(ConfigError, match="--sha256"):
            sha256_option(bad)


# -- sidecar --------------------------------------------------------------------------------


def test_a_sidecar_round_trips() -> None:
    state = PartState("http://h/x", Validator("etag", '"a-b"'), 3000, "Repr-Digest", "sha-256=:x:",
                      [Segment(0, 1000, 1000), Segment(1000, 3000, 5)])  # fmt: skip
    assert from_json(to_json(state)) == state


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(format=2),
        lambda d: d.update(size=-1),
        lambda d: d["segments"].pop(),  # a gap at the end
        lambda d: d["segments"].__setitem__(0, [0, 1000, 1001]),  # done past the end
        lambda d: d["segments"].__setitem__(1, [999, 3000, 0]),  # overlapping
        lambda d: d.update(validator={"kind": "weak", "value": "x"}),
        lambda d: d.update(segments=[]),
    ],
)
def test_a_sidecar_it_did_not_write_is_not_trusted(change) -> None:  # type: ignore[no-untyped-def]
    import json

    state = PartState("http://h/x", Validator("etag", '"a"'), 3000, None, None,
                      [Segment(0, 1000, 1000), Segment(1000, 3000, 5)])  # fmt: skip
    doc = json.loads(to_json(state))
    change(doc)
    assert from_json(json.dumps(doc)) is None


@given(st.text(max_size=300))
def test_any_text_is_a_sidecar_or_none(text: str) -> None:
    from_json(text)  # never raises


# -- retries ------------------------------------------------------------------------------------


@given(st.integers(1, 200), st.integers(0, 2**32))
def test_backoff_grows_within_bounds(failures: int, seed: int) -> None:
    wait = backoff(failures, random.Random(seed))
    ceiling = min(MAX_BACKOFF, 0.25 * 2.0 ** min(failures - 1, 30))
    assert ceiling / 2 <= wait <= ceiling


def test_the_budget_counts_failures_in_a_row_and_progress_starts_it_again() -> None:
    budget = RetryBudget(2, random.Random(0))
    assert budget.wait(False, None) is not None
    assert budget.wait(False, None) is not None
    assert budget.wait(True, None) is not None  # bytes arrived: this is the first again
    assert budget.wait(False, 3.0) == 3.0  # the server's Retry-After, not the backoff
    assert budget.wait(False, None) is None
    assert RetryBudget(5, random.Random(0)).wait(False, 3600.0) is None  # too long to wait


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after("7", 0.0) == 7.0
    assert retry_after("Thu, 01 Jan 1970 00:00:30 GMT", 10.0) == 20.0
    assert retry_after("Thu, 01 Jan 1970 00:00:30 GMT", 100.0) == 0.0
    assert retry_after("soon", 0.0) is None and retry_after(None, 0.0) is None
    assert retry_after("٣", 0.0) is None  # a digit, but not an ASCII one

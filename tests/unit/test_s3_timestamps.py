"""S3's timestamps read without dateutil give exactly what botocore's own parser gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.utils import parse_timestamp  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from ferryman.stores.s3 import parse_s3_timestamp

MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(MOMENTS, st.sampled_from(["seconds", "milliseconds", "microseconds"]))
def test_a_listing_timestamp_is_the_moment_botocore_reads(moment: datetime, spec: str) -> None:
    text = moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"  # as S3 writes them
    ours, theirs = parse_s3_timestamp(text), parse_timestamp(text)
    assert ours == theirs and ours.utcoffset() == theirs.utcoffset()
    assert ours.timestamp() == theirs.timestamp()


@given(MOMENTS)
def test_other_forms_go_to_botocore(moment: datetime) -> None:
    http_date = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")  # a Last-Modified header
    assert parse_s3_timestamp(http_date) == parse_timestamp(http_date)


def test_what_is_not_a_timestamp_is_refused_as_botocore_refuses_it() -> None:
    with pytest.raises(ValueError) as theirs:
        parse_timestamp("2026-13-45T00:00:00Z")
    with pytest.raises(ValueError) as ours:
        parse_s3_timestamp("2026-13-45T00:00:00Z")
    assert str(ours.value) == str(theirs.value)

"""stores/s3listing.py without a network: a page's parse, and where a bucket is asked."""

from __future__ import annotations

from urllib.parse import quote_plus
from xml.sax.saxutils import escape

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.stores.base import Unavailable
from ferryman.stores.s3listing import bucket_address, error_code, parse_page, redirected

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
# What an S3 key may hold that XML 1.0 can carry once URL-encoded: anything but a
# lone surrogate (the listing asks for encoding-type=url, so control characters too).
keys = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)


def page_xml(
    objects: list[tuple[str, int, str]],
    *,
    token: str | None = None,
    encoded: bool = True,
    namespace: str = NS,
) -> bytes:
    """A ListObjectsV2 answer as S3 writes it (keys URL-encoded, space as '+')."""
    items = "".join(
        f"<Contents><Key>{escape(quote_plus(key, safe='/') if encoded else key)}</Key>"
        f"<LastModified>2026-12-07T00:00:00.000Z</LastModified>"
        f"<ETag>{escape(etag)}</ETag><Size>{size}</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents>"
        for key, size, etag in objects
    )
    more = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>"
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult{xmlns}><Name>b</Name>'
        f"<Prefix>p/</Prefix><KeyCount>{len(objects)}</KeyCount><MaxKeys>1000</MaxKeys>"
        f"{'<EncodingType>url</EncodingType>' if encoded else ''}"
        f"{more if token else '<IsTruncated>false</IsTruncated>'}{items}</ListBucketResult>"
    ).encode()


@given(
    st.lists(
        st.tuples(
            keys, st.integers(0, 2**63 - 1), st.from_regex(r'"[0-9a-f]{32}(-\d+)?"', fullmatch=True)
        )
    ),
    st.none() | st.from_regex(r"[A-Za-z0-9+/=]{1,40}", fullmatch=True),
    st.sampled_from([NS, ""]),
)
def test_a_page_gives_back_every_object_under_the_prefix(
    objects: list[tuple[str, int, str]], token: str | None, namespace: str
) -> None:
    under = [("p/" + key, size, etag) for key, size, etag in objects]
    page = parse_page(page_xml(under, token=token, namespace=namespace), "p/")
    wanted = [(k, s, e) for k, s, e in objects if not k.endswith("/")]
    assert page.entries == wanted
    assert page.token == token


def test_keys_not_encoded_by_the_store_are_taken_as_written() -> None:
    body = page_xml([("p/a+b c%41", 1, '"e"')], encoded=False)
    assert parse_page(body, "p/").entries == [("a+b c%41", 1, '"e"')]


def test_directory_markers_and_the_prefix_itself_are_not_keys() -> None:
    body = page_xml([("p/", 0, '"e"'), ("p/d/", 0, '"e"'), ("p/d/x", 3, '"f"')])
    assert parse_page(body, "p/").entries == [("d/x", 3, '"f"')]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not xml at all", "not XML"),
        (b"<Error><Code>Oops</Code></Error>", "not a listing"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><ListBucketResult/>', "DTD"),
        (page_xml([("p/a", 1, '"e"')]).replace(b"<Size>1</Size>", b"<Size>-1</Size>"), "size"),
        (
            page_xml([("p/a", 1, '"e"')]).replace(b"<ETag>", b"<X>").replace(b"</ETag>", b"</X>"),
            "ETag",
        ),
        (page_xml([("q/a", 1, '"e"')]), "not under the prefix"),
        (page_xml([]).replace(b"false", b"true"), "without a continuation token"),
    ],
)
def test_an_answer_that_is_not_a_sound_listing_is_refused(body: bytes, why: str) -> None:
    with pytest.raises(Unavailable, match=why):
        parse_page(body, "p/")


def test_error_code_is_read_from_an_error_answer() -> None:
    assert (
        error_code(b"<Error><Code>NoSuchBucket</Code><Message>m</Message></Error>")
        == "NoSuchBucket"
    )
    assert error_code(b"") == ""
    assert error_code(b"<html>busy</html>") == ""


def test_addressing_is_the_s3_stores() -> None:
    on_endpoint = bucket_address("b", "p", "http://127.0.0.1:9000", "us-east-1")
    assert (on_endpoint.scheme, on_endpoint.host, on_endpoint.path) == (
        "http",
        "127.0.0.1:9000",
        "/b",
    )
    assert not on_endpoint.aws
    below = bucket_address("b", "", "https://store.example/s3/", "eu-west-1")
    assert (below.host, below.path) == ("store.example", "/s3/b")
    virtual = bucket_address("b", "", None, "eu-west-3")
    assert (virtual.scheme, virtual.host, virtual.path) == (
        "https",
        "b.s3.eu-west-3.amazonaws.com",
        "/",
    )
    dotted = bucket_address("my.bucket", "", None, "eu-west-3")
    assert (dotted.host, dotted.path) == ("s3.eu-west-3.amazonaws.com", "/my.bucket")
    assert virtual.aws and dotted.aws
    assert bucket_address("b", "x/y", None, "us-east-1").shown == "s3://b/x/y"


def test_a_bucket_in_another_region_is_followed_on_aws_only() -> None:
    on_aws = bucket_address("b", "p", None, "us-east-1")
    elsewhere = redirected(on_aws, {"x-amz-bucket-region": "eu-west-3"})
    assert elsewhere is not None
    assert (elsewhere.host, elsewhere.region, elsewhere.prefix) == (
        "b.s3.eu-west-3.amazonaws.com", "eu-west-3", "p")  # fmt: skip
    assert redirected(on_aws, {"x-amz-bucket-region": "us-east-1"}) is None  # no loop
    assert redirected(on_aws, {}) is None
    on_endpoint = bucket_address("b", "", "http://127.0.0.1:9000", "us-east-1")
    assert redirected(on_endpoint, {"x-amz-bucket-region": "eu-west-3"}) is None

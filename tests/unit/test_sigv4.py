"""stores/sigv4.py against botocore's own S3 signer, on any listing request."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.auth  # type: ignore[import-untyped]
import pytest
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials as BotoCredentials  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.stores.sigv4 import EMPTY_SHA256, Credentials, canonical_query, signed_headers

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))


def botocore_authorization(
    host: str, path: str, query: str, credentials: Credentials, region: str, now: datetime
) -> dict[str, str]:
    """What botocore's S3 signer sends for the same GET (payload signed, as over HTTP)."""
    request = AWSRequest(method="GET", url=f"http://{host}{path}?{query}", headers={})
    request.context["payload_signing_enabled"] = True
    signer = botocore.auth.S3SigV4Auth(
        BotoCredentials(credentials.key_id, credentials.secret, credentials.token), "s3", region
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", lambda: now)
        signer.add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


@settings(max_examples=200, deadline=None)
@given(
    prefix=texts,
    token=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
    session=st.none() | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
    region=st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2"]),
    path=st.sampled_from(["/", "/bucket", "/base/some.bucket"]),
    now=moments,
)
def test_signature_is_botocores(
    prefix: str, token: str | None, session: str | None, region: str, path: str, now: datetime
) -> None:
    params = {"list-type": "2", "encoding-type": "url", "max-keys": "1000", "prefix": prefix}
    if token is not None:
        params["continuation-token"] = token
    query = canonical_query(params)
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", session)
    host = "bucket.s3.example.com:9000"
    ours = signed_headers(host, path, query, credentials, region, now.replace(tzinfo=UTC))
    theirs = botocore_authorization(host, path, query, credentials, region, now)
    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"]
    assert ours["x-amz-content-sha256"] == theirs["x-amz-content-sha256"] == EMPTY_SHA256
    assert ours.get("x-amz-security-token") == theirs.get("x-amz-security-token") == session


def test_query_is_encoded_and_sorted_as_sigv4_wants() -> None:
    query = canonical_query({"prefix": "a b/é+~", "list-type": "2", "continuation-token": "x=y"})
    assert query == "continuation-token=x%3Dy&list-type=2&prefix=a%20b%2F%C3%A9%2B~"


def test_a_changed_secret_changes_the_signature() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    one = signed_headers("h", "/", "", Credentials("k", "secret"), "us-east-1", now)
    two = signed_headers("h", "/", "", Credentials("k", "secreT"), "us-east-1", now)
    assert one["authorization"] != two["authorization"]

"""A store's failure reaches the client without its endpoint: the libraries' own exceptions,
as they word them, through the one translation (s3errors) and the one answer (http_error)."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import cast

import aiohttp
import botocore.exceptions as boto  # type: ignore[import-untyped]
from aiobotocore.response import AioReadTimeoutError  # type: ignore[import-untyped]
from aiohttp.client_reqrep import ConnectionKey
from hypothesis import given
from hypothesis import strategies as st

from ferryman.stores.base import AccessDenied, Truncated, Unavailable, http_error
from ferryman.stores.s3errors import library_text, store_error


def s3_answer(status: int, code: str, message: str) -> boto.ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    return boto.ClientError(response, "GetObject")


def connector_error(host: str, port: int) -> aiohttp.ClientConnectorError:
    key = types.SimpleNamespace(host=host, port=port, ssl=None)  # what aiohttp's message reads
    refused = ConnectionRefusedError(111, "Connection refused")
    return aiohttp.ClientConnectorError(cast(ConnectionKey, key), refused)


# Each way a request to the store at http://HOST:PORT fails, as the library raises it.
FAILURES: dict[str, Callable[[str, int], BaseException]] = {
    "refused": lambda h, p: boto.EndpointConnectionError(endpoint_url=f"http://{h}:{p}/b/k"),
    "connect timeout": lambda h, p: boto.ConnectTimeoutError(endpoint_url=f"http://{h}:{p}/b/k"),
    "read timeout": lambda h, p: boto.ReadTimeoutError(endpoint_url=f"http://{h}:{p}/b/k"),
    "body timeout": lambda h, p: AioReadTimeoutError(endpoint_url=f"http://{h}:{p}/b/k", error=""),
    "closed": lambda h, p: boto.ConnectionClosedError(endpoint_url=f"http://{h}:{p}/b/k"),
    "proxy": lambda h, p: boto.ProxyConnectionError(proxy_url=f"http://{h}:{p}", error="x"),
    "tls": lambda h, p: boto.SSLError(endpoint_url=f"https://{h}:{p}/b/k", error="bad cert"),
    "aiohttp": connector_error,
    "5xx naming it": lambda h, p: s3_answer(500, "InternalError", f"failure at {h}:{p}"),
    "403 naming it": lambda h, p: s3_answer(403, "AccessDenied", f"denied by {h}:{p}"),
}

hosts = st.builds(
    lambda a, b, c, d: f"{a}.{b}.{c}.{d}",
    *[st.integers(1, 254)] * 4,
)
ports = st.integers(1024, 65535)


@given(kind=st.sampled_from(sorted(FAILURES)), host=hosts, port=ports)
def test_no_answer_names_the_endpoint(kind: str, host: str, port: int) -> None:
    exc = FAILURES[kind](host, port)
    error = store_error(exc, "dir/key.bin")
    answer = http_error(error)
    for text in (error.detail, answer.detail, str(error), str(answer)):
        assert host not in text and str(port) not in text, (kind, text)
    assert "dir/key.bin" in error.detail  # what failed is still said


def test_the_kind_of_failure_is_kept() -> None:
    kinds = {name: type(store_error(f("10.1.2.3", 9000), "k")) for name, f in FAILURES.items()}
    assert kinds["refused"] is Unavailable and kinds["aiohttp"] is Unavailable
    assert kinds["body timeout"] is Truncated
    assert kinds["403 naming it"] is AccessDenied
    assert "ConnectTimeoutError" in store_error(FAILURES["connect timeout"]("h", 1), "k").detail


def test_the_log_text_keeps_what_the_library_said() -> None:
    exc = boto.EndpointConnectionError(endpoint_url="http://10.1.2.3:9000/b/k")
    assert "http://10.1.2.3:9000" in library_text(exc)
    missing = s3_answer(404, "NoSuchBucket", "no bucket")
    assert library_text(missing) == "404 NoSuchBucket: no bucket"
    assert library_text(s3_answer(500, "500", "")) == "500"
    assert library_text(TimeoutError()) == "TimeoutError"

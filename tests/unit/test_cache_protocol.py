"""The filler protocol: every message survives a round trip; anything else is BadMessage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.cache import protocol
from ferryman.cache.health import CacheDeclined
from ferryman.cache.protocol import (
    MAX_LINE,
    Bad,
    BadMessage,
    Entry,
    Error,
    Failed,
    Have,
    Health,
    HealthReply,
    Open,
    Stats,
    StatsReply,
    Want,
    decode_reply,
    decode_request,
    encode,
    error_kind,
    store_error,
)
from ferryman.cache.stats import CacheStats
from ferryman.stores.base import (
    AccessDenied,
    NotFound,
    PreconditionFailed,
    StoreError,
    Throttled,
    Truncated,
    Unavailable,
)

blocks = st.integers(0, protocol.MAX_BLOCK - 1)
texts = st.text(max_size=200)
keys = st.text(min_size=1, max_size=300)
kinds = st.sampled_from(
    [
        "NotFound", "AccessDenied", "PreconditionFailed", "Throttled", "Truncated", "Unavailable",
        "CacheDeclined",
    ]
)  # fmt: skip
requests = st.one_of(
    st.builds(Open, keys, st.booleans()),
    st.tuples(blocks, st.integers(0, 10_000)).map(
        lambda t: Want(t[0], min(t[0] + t[1], protocol.MAX_BLOCK - 1))
    ),
    st.builds(Bad, blocks),
    st.just(Stats()),
    st.just(Health()),
)
metas = st.fixed_dictionaries(
    {
        "key": keys,
        "size": st.integers(0, 2**50),
        "etag": texts,
        "last_modified": st.integers(0, 2**40),
        "content_type": st.none() | texts,
        "sha256": st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
        "block_size": st.integers(1, 2**30),
    }
)
replies = st.one_of(
    st.builds(Entry, metas),
    st.builds(Error, kinds, texts, st.integers(0, 3600)),
    st.builds(Have, blocks),
    st.builds(Failed, blocks, kinds, texts, st.integers(0, 3600)),
    st.builds(StatsReply, st.dictionaries(st.text(max_size=20), st.integers(0, 2**53))),
    st.builds(HealthReply, texts, st.floats(0, 2e9) | st.integers(0, 2**40)),
)


@given(requests)
def test_requests_round_trip(message: protocol.Request) -> None:
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line) == message
    assert decode_request(line.rstrip(b"\n")) == message


@given(replies)
def test_replies_round_trip(message: protocol.Reply) -> None:
    line = encode(message)
    assert line.count(b"\n") == 1  # JSON escapes any newline inside strings
    assert decode_reply(line) == message


def test_wire_form_is_what_the_decision_documents() -> None:
    assert encode(Open("a/b.bin", True)) == b'{"op":"open","key":"a/b.bin","check":true}\n'
    assert encode(Want(3, 7)) == b'{"op":"want","first":3,"last":7}\n'
    assert encode(Have(5)) == b'{"op":"have","block":5}\n'
    assert json.loads(encode(Failed(2, "Throttled", "slow down", 4))) == {
        "op": "failed",
        "block": 2,
        "kind": "Throttled",
        "detail": "slow down",
        "retry_after": 4,
    }


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json\n",
        b"[1,2]\n",
        b'"open"\n',
        b"\xff\xfe\n",
        b'{"op":"open"}\n',
        b'{"op":"open","key":""}\n',
        b'{"op":"open","key":"k","check":1}\n',
        b'{"op":"want","first":5,"last":4}\n',
        b'{"op":"want","first":-1,"last":4}\n',
        b'{"op":"want","first":true,"last":4}\n',
        b'{"op":"want","first":1.5,"last":4}\n',
        b'{"op":"want","first":0,"last":1099511627776}\n',
        b'{"op":"bad"}\n',
        b'{"op":"have","block":1}\n',  # a reply is not a request
        b'{"op":"delete","key":"k"}\n',
        b"[" * 100_000 + b"\n",
    ],
)
def test_bad_requests_are_refused(line: bytes) -> None:
    with pytest.raises(BadMessage):
        decode_request(line)


@pytest.mark.parametrize(
    "line",
    [
        b'{"op":"have","block":"1"}\n',
        b'{"op":"failed","block":1,"detail":"x"}\n',
        b'{"op":"failed","block":1,"kind":"Throttled","detail":"x","retry_after":-1}\n',
        b'{"op":"entry","meta":[]}\n',
        b'{"op":"error","kind":"NotFound"}\n',
        b'{"op":"stats","stats":{"hits":"many"}}\n',
        b'{"op":"stats","stats":{"hits":true}}\n',
        b'{"op":"health","state":"ok","since":-1}\n',
        b'{"op":"health","state":"ok","since":true}\n',
        b'{"op":"health","since":0}\n',
        b'{"op":"want","first":1,"last":2}\n',  # a request is not a reply
    ],
)
def test_bad_replies_are_refused(line: bytes) -> None:
    with pytest.raises(BadMessage):
        decode_reply(line)


def test_line_length_is_bounded_both_ways() -> None:
    key = "k" * 4000
    assert decode_request(encode(Open(key))) == Open(key)
    padded = b'{"op":"stats","pad":"' + b"x" * MAX_LINE + b'"}\n'
    with pytest.raises(BadMessage, match="limit"):
        decode_request(padded)
    with pytest.raises(BadMessage, match="limit"):
        encode(Error("Unavailable", "x" * MAX_LINE))
    with pytest.raises(BadMessage):
        decode_request(encode(Open("k" * 5000)))  # keys are bounded too


def test_unknown_kind_reads_as_unavailable() -> None:
    reply = decode_reply(b'{"op":"error","kind":"Gremlins","detail":"?"}\n')
    assert reply == Error("Unavailable", "?", 0)


@pytest.mark.parametrize(
    "exc",
    [
        NotFound("gone"),
        AccessDenied("no"),
        PreconditionFailed("changed"),
        Throttled("slow", 7),
        Truncated("cut"),
        Unavailable("down"),
        CacheDeclined("no space left on the cache disk"),
    ],
)
def test_store_errors_cross_the_wire_as_themselves(exc: StoreError) -> None:
    reply = decode_reply(encode(protocol.failed_reply(9, exc)))
    assert isinstance(reply, Failed) and reply.block == 9
    again = store_error(reply.kind, reply.detail, reply.retry_after)
    assert type(again) is type(exc)
    assert again.detail == exc.detail
    if isinstance(exc, Throttled):
        assert isinstance(again, Throttled) and again.retry_after == 7
    error = decode_reply(encode(protocol.error_reply(exc)))
    assert isinstance(error, Error)
    assert type(store_error(error.kind, error.detail, error.retry_after)) is type(exc)


def test_a_store_error_subclass_keeps_its_documented_kind() -> None:
    class ReadTimeout(Unavailable):
        pass

    assert error_kind(ReadTimeout("slow")) == ("Unavailable", 0)
    assert error_kind(StoreError("plain")) == ("Unavailable", 0)
    assert error_kind(Throttled("x", 3)) == ("Throttled", 3)
    throttled = store_error("Throttled", "x", 0)
    assert isinstance(throttled, Throttled) and throttled.retry_after == 1  # never "retry now"


def test_a_stats_reply_round_trips() -> None:
    stats = CacheStats()
    stats.fills += 3
    stats.hits += 1
    snap = stats.snapshot()
    assert decode_reply(encode(StatsReply(dict(snap)))) == StatsReply(dict(snap))

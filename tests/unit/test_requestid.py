"""Request ids: a client's sane X-Request-Id is kept, anything else replaced by a fresh id."""

from __future__ import annotations

import re
import string

from hypothesis import given
from hypothesis import strategies as st

from ferryman import requestid

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits


def reference_valid(text: str) -> bool:
    """RFC 9110's token, 1 to 64 characters: written out, not as a regular expression."""
    return 1 <= len(text) <= requestid.MAX_LENGTH and all(c in TCHAR for c in text)


@given(st.text(max_size=80) | st.text(alphabet=TCHAR, min_size=1, max_size=70))
def test_an_incoming_id_is_kept_exactly_when_it_is_a_short_token(incoming: str) -> None:
    rid = requestid.request_id(incoming)
    if reference_valid(incoming):
        assert rid == incoming
    else:
        assert rid != incoming
        assert re.fullmatch(r"[0-9a-f]{16}", rid)
    # Whatever came in, the id can go into a header line as it is.
    assert rid.isascii() and "\r" not in rid and "\n" not in rid and " " not in rid


def test_without_an_incoming_id_each_request_gets_its_own() -> None:
    ids = [requestid.request_id(None) for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert len({rid[:10] for rid in ids}) <= 2  # one process, one prefix (unless it wrapped)


def test_the_counter_wraps_to_a_fresh_prefix() -> None:
    ids = requestid._Ids()
    first = ids.next()
    ids.count = requestid._COUNTER_LIMIT - 1
    wrapped = ids.next()
    assert wrapped[10:] == "000000" and wrapped != first


@given(st.integers(0, requestid._COUNTER_LIMIT - 2))
def test_an_id_is_the_prefix_and_the_next_count_in_six_hex_digits(count: int) -> None:
    ids = requestid._Ids()
    ids.next()  # draws the prefix
    ids.count = count
    assert ids.next() == ids.prefix + format(count + 1, "06x")


def test_a_forked_process_draws_its_own_prefix() -> None:
    import os

    read, write = os.pipe()
    parent = requestid.new_request_id()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent, and out
        os.write(write, requestid.new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{16}", child)
    assert child[:10] != parent[:10] and child[10:] == "000000"


def test_a_kept_head_block_is_joined_with_the_id_never_changed() -> None:
    """Error answers share an encoded head block: each answer's id goes after it."""
    from ferryman.http.response import error_response, frame_head

    first = error_response(404, "not_found", "no such file")
    second = error_response(404, "not_found", "no such file")
    assert first.head_block is not None and first.head_block is second.head_block
    kept = bytes(first.head_block)
    heads = []
    for answer, rid in ((first, "aaaa"), (second, "bbbb")):
        line = b"X-Request-Id: " + rid.encode() + b"\r\n"
        framing = frame_head(answer, method="GET", http11=True, keep_alive=True,
                             date=b"Date: x\r\n", extra=line)  # fmt: skip
        heads.append(framing.head)
        assert framing.head.count(b"X-Request-Id:") == 1 and line in framing.head
    assert heads[0].replace(b"aaaa", b"bbbb") == heads[1]
    assert first.head_block == kept and b"X-Request-Id" not in kept

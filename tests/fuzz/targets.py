"""Fuzz targets shared by atheris (`make fuzz`) and hypothesis (the test suite).

The invariant: any byte string, fed in any split, either parses into events
or raises ferryman's ProtocolError with a 4xx/5xx status. Nothing else may
escape, and nothing may hang.
"""

from __future__ import annotations

import itertools

from ferryman.errors import ProtocolError
from ferryman.http.parser import END_OF_MESSAGE, NEED_DATA, Data, Limits, Request, RequestParser

LIMITS = Limits(max_request_line=512, max_header_count=20, max_header_bytes=2048)


def parse_all(data: bytes, splits: list[int]) -> list[object]:
    """Feed `data` cut at `splits`; return the events. Raises ProtocolError only."""
    parser = RequestParser(LIMITS)
    events: list[object] = []
    cuts = sorted({0, len(data), *(s for s in splits if 0 < s < len(data))})
    for start, end in itertools.pairwise(cuts):
        parser.receive(data[start:end])
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                break
            events.append(event)
    return events


def check_one_input(data: bytes, splits: list[int]) -> None:
    try:
        events = parse_all(data, splits)
    except ProtocolError as exc:
        assert 400 <= exc.status <= 505, exc.status
        return
    for event in events:
        assert isinstance(event, Request | Data) or event is END_OF_MESSAGE, event
        if isinstance(event, Request):
            assert event.method and event.path

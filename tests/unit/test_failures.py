"""Unexpected failures are one log line: any message, any target, with the place in ferryman."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman import failures, requestid
from ferryman.server.worker import _loop_failure
from ferryman.supervisor.process import CONFIG_ENV, config_from_environ


class Recorder(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@given(message=st.text(), target=st.binary(max_size=300))
def test_any_failure_of_any_request_is_one_printable_line(message: str, target: bytes) -> None:
    logger = logging.getLogger("test.failures")
    records: list[logging.LogRecord] = []
    handler = Recorder(records)
    logger.addHandler(handler)
    try:
        failures.log_request_failure(logger, "0123456789ab", raised(ValueError(message)), "GET",
                                     target)  # fmt: skip
    finally:
        logger.removeHandler(handler)
    [record] = records
    line = record.getMessage()
    assert line.isprintable(), line  # no newline or escape can forge a second line
    assert line.startswith("request 0123456789ab failed: ValueError")
    assert "(at tests" not in line and "test_failures.py:" in line
    assert len(line) < 2 * failures.MAX_MESSAGE + 700
    assert record.exc_info is None  # no traceback unless FERRYMAN_TRACEBACKS=1


def test_the_place_is_the_innermost_frame_of_ferryman() -> None:
    """A library raising on ferryman's behalf (json here): the line points at ferryman's call."""
    try:
        config_from_environ({CONFIG_ENV: "{"})
    except ValueError as exc:
        text = failures.describe(exc)
    assert text.startswith("JSONDecodeError: Expecting property name"), text
    assert "(at ferryman/supervisor/process.py:" in text and " in config_from_environ)" in text


def test_compiled_modules_name_their_sources_relative_to_the_tree() -> None:
    assert failures._short("src/ferryman/server/connection.py") == "ferryman/server/connection.py"
    assert failures._short("/usr/lib/python3/json/decoder.py") == "decoder.py"


def test_request_ids_are_sixteen_hex_digits_and_differ() -> None:
    ids = {requestid.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_an_exception_the_event_loop_catches_is_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_loop_failure)

    def broken() -> None:
        raise KeyError("from a callback")

    try:
        loop.call_soon(broken)
        loop.call_soon(loop.stop)
        with caplog.at_level(logging.ERROR):
            loop.run_forever()
    finally:
        loop.close()
    [record] = [r for r in caplog.records if "KeyError" in r.getMessage()]
    assert record.exc_info is None
    line = record.getMessage()
    assert "Exception in callback" in line and "in broken)" in line and "\n" not in line


def test_a_bug_outside_a_request_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("ferryman.test")
    try:
        {"present": 1}["missing"]
    except KeyError as exc:
        with caplog.at_level(logging.ERROR, logger="ferryman.test"):
            failures.log_failure(log, "filling\nblocks 1-2 failed", exc)
    [record] = caplog.records
    text = record.getMessage()
    assert "\n" not in text and record.exc_info is None
    assert text.startswith("filling\\nblocks 1-2 failed: KeyError: 'missing' (at ")

"""The deadline queue against a model: each armed deadline fires once, at its time, never early.

A fake loop stands in for asyncio's (time and call_at only); Hypothesis
drives many deadlines through arm, disarm, cancel and the passing of time,
and a plain dictionary says what must have fired.
"""

from __future__ import annotations

import asyncio
import math
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.server.deadline import Deadline, Timers
from tests.asynctime import FakeLoop

operation = st.one_of(
    st.tuples(st.just("arm"), st.integers(0, 7), st.integers(1, 50)),
    st.tuples(st.just("disarm"), st.integers(0, 7), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, 7), st.just(0)),
    st.tuples(st.just("wait"), st.just(0), st.integers(0, 30)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(operation, max_size=60))
def test_deadlines_fire_as_the_model_says(ops: list[tuple[str, int, int]]) -> None:
    loop = FakeLoop()
    timers = Timers(cast(asyncio.AbstractEventLoop, loop))  # enough of a loop for Timers
    fired: list[tuple[int, float]] = []
    deadlines = []
    for i in range(8):

        def expired(kind: str, i: int = i) -> float | None:
            fired.append((i, loop.now))
            return None

        deadlines.append(Deadline(timers, expired))
    due: dict[int, float] = {}  # the model: deadline -> when it must fire
    for name, i, amount in ops:
        if name == "arm":
            deadlines[i].arm("idle", float(amount))
            due[i] = loop.now + amount
        elif name in ("disarm", "cancel"):
            getattr(deadlines[i], name)()
            due.pop(i, None)
        else:
            end = loop.now + amount
            fired.clear()
            loop.advance(amount)
            expected = sorted((i, at) for i, at in due.items() if at <= end)
            assert sorted(fired) == expected  # each at its own time, none early, none twice
            for i, _ in expected:
                del due[i]
                assert not deadlines[i].armed
    for i, at in due.items():
        assert deadlines[i].at == at
    assert all(d.at == math.inf for i, d in enumerate(deadlines) if i not in due)

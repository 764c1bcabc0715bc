"""The phases of one client connection, and the only moves between them.

A connection is in exactly one phase; what it does with an event (bytes
arriving, the transport's buffer draining, a deadline passing) follows from
it. HEAD and IDLE are the request loop's: it parses the next request. In
HANDLING and SENDING one answer is in progress and pipelined bytes wait in
the parser, so answers leave in request order.

    HEAD      a request head is due, the header timeout running from the
              first byte of it (or from the connection's start)
    IDLE      an answer went out and nothing of the next request has come
              (the keep-alive timeout)
    HANDLING  the handler makes the answer, at once or in a task; meanwhile
              it may read the request body (the body timeout)
    SENDING   a task moves the answer's body (the send timeout)
    CLOSING   no request follows: the transport closes once its last bytes
              are out, or was cut; nothing more may be sent
    CLOSED    the transport is gone (connection_lost)

      new
       |
       v       first byte of a head
      HEAD <------------------------- IDLE <-----------------+
       |  ----- blank lines only ----->  |                    |
       |                                 | a request already  |
       | a request                       v in the buffer      |
       +--------------------------> HANDLING -- answered -----+  keep-alive
                                         |                    |
                                         | a body to stream   |
                                         v                    |
                                      SENDING ----- sent -----+

    HEAD, IDLE, HANDLING, SENDING -- the last answer out, a timeout, a bad
        request, the server stopping, a cut --> CLOSING -- connection_lost --> CLOSED
    HEAD, IDLE, HANDLING, SENDING -- connection_lost (the peer left) --> CLOSED

An answer made at once (no task) goes from HANDLING back to IDLE, or to
CLOSING when it is the last; only a body that must be streamed or
sendfile'd passes through SENDING. A connection whose server stops while an
answer is in progress finishes that answer, then closes
(ServerContext.closing_idle). An answer whose task finds the connection
CLOSING or CLOSED sends nothing more: it releases its body and ends.

`move` is the one place a phase changes. An illegal move is a bug in
ferryman, never the client's doing, so it raises AssertionError.
"""

from __future__ import annotations

import enum
from typing import Final


class Phase(enum.IntEnum):
    # IntEnum, not Enum: its members hash in C, so the transition table costs
    # about 20 ns a move compiled, against 150 ns with Enum's __hash__ in Python.
    HEAD = 0
    IDLE = 1
    HANDLING = 2
    SENDING = 3
    CLOSING = 4
    CLOSED = 5


NEXT: Final[dict[Phase, frozenset[Phase]]] = {
    Phase.HEAD: frozenset({Phase.IDLE, Phase.HANDLING, Phase.CLOSING, Phase.CLOSED}),
    Phase.IDLE: frozenset({Phase.HEAD, Phase.HANDLING, Phase.CLOSING, Phase.CLOSED}),
    Phase.HANDLING: frozenset({Phase.SENDING, Phase.IDLE, Phase.CLOSING, Phase.CLOSED}),
    Phase.SENDING: frozenset({Phase.IDLE, Phase.CLOSING, Phase.CLOSED}),
    Phase.CLOSING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


def move(old: Phase, new: Phase) -> Phase:
    """`new`, once the table allows the move from `old` to it."""
    if new not in NEXT[old]:
        raise AssertionError(f"connection phase {old.name} -> {new.name} is not a legal move")
    return new

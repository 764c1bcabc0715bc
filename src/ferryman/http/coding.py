"""Content codings: what a client's Accept-Encoding allows, and a coded answer's ETag.

RFC 9110 12.5.3, read this way:

- no Accept-Encoding: every coding is acceptable, but the answer is identity
  (a client that did not ask, curl without --compressed, gets what it can save);
- `coding;q=0` refuses a coding, `*` stands for every coding not named, and an
  empty value leaves only identity;
- identity is acceptable unless `identity;q=0`, or `*;q=0` with no entry of its
  own; when not named it is the last resort (below every acceptable coding);
- among acceptable codings the highest q wins, then the server's order (the
  order of `offered`); a coding ties with identity and wins.

`x-gzip` is `gzip` (RFC 9110 8.4.1.3). Parameters other than q are ignored; an
element whose q is not a valid qvalue is ignored as a whole. Pure: no I/O.
"""

from __future__ import annotations

import re
from functools import lru_cache

IDENTITY = "identity"
_ALIASES = {"x-gzip": "gzip"}
# identity when Accept-Encoding does not name it (nor `*`): acceptable, below any coding.
_IMPLICIT = 0.0005
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def qvalue(text: str) -> float | None:
    """A qvalue (`0`, `0.5`, `1.000`: at most three decimals, at most 1), or None."""
    if _QVALUE.fullmatch(text) is None:
        return None
    return float(text)


def parse_accept_encoding(value: str) -> dict[str, float]:
    """Each coding (lower case, `*` too) with its q; the first mention of a coding counts."""
    weights: dict[str, float] = {}
    for element in value.split(","):
        name, *params = element.split(";")
        name = name.strip().lower()
        if not name:
            continue
        q: float | None = 1.0
        for param in params:
            key, _, raw = param.partition("=")
            if key.strip().lower() == "q":
                q = qvalue(raw.strip())
        if q is None:
            continue
        name = _ALIASES.get(name, name)
        weights.setdefault(name, q)
    return weights


class Ranking:
    """What one Accept-Encoding value makes of the codings offered.

    `codings`: the acceptable ones at least as wanted as identity, each with
    its q, best first (ties in the server's order); `identity`: whether an
    answer without coding is acceptable after them.
    """

    __slots__ = ("codings", "identity")

    def __init__(self, codings: tuple[tuple[str, float], ...], identity: bool) -> None:
        self.codings = codings
        self.identity = identity

    def __repr__(self) -> str:
        return f"Ranking({self.codings!r}, identity={self.identity})"


@lru_cache(maxsize=512)
def rank(accept: str | None, offered: tuple[str, ...]) -> Ranking:
    """The codings of `offered` (the server's order) that `accept` wants, best first."""
    if accept is None:
        return Ranking((), True)
    weights = parse_accept_encoding(accept)
    star = weights.get("*")
    if IDENTITY in weights:
        identity_q = weights[IDENTITY]
    elif star is not None:
        identity_q = star
    else:
        identity_q = _IMPLICIT
    wanted: list[tuple[float, int, str]] = []
    for order, coding in enumerate(offered):
        q = weights.get(coding, star if star is not None else 0.0)
        if q > 0 and q >= identity_q:
            wanted.append((-q, order, coding))
    wanted.sort()
    return Ranking(tuple((coding, -q) for q, _, coding in wanted), identity_q > 0)


def coded_etag(etag: str, coding: str) -> str:
    """The ETag of `coding` applied to the representation whose ETag is `etag`.

    `"abc"` becomes `"abc+gzip"` (and `W/"abc"` `W/"abc+gzip"`): distinct per
    coding, and it names the version it was made from.
    """
    if etag.endswith('"'):
        return f'{etag[:-1]}+{coding}"'
    return f'"{etag}+{coding}"'

"""Conditional requests (RFC 9110 section 13): preconditions and If-Range.

`evaluate_preconditions` applies If-Match, If-Unmodified-Since, If-None-Match
and If-Modified-Since in the order of RFC 9110 section 13.2.2, for any source
that can name its validators. `if_range_matches` decides whether a Range may
be honoured (13.1.5); a resumed download must never splice two versions.

Choices where the RFC leaves room or this project differs:

* Methods are compared case-sensitively (RFC 9110 9.1): only "GET" and "HEAD"
  get 304; every other method gets 412 when If-None-Match matches.
* A malformed If-Match fails (412): a match cannot be proven. A malformed
  If-None-Match does not match, but still counts as present, so
  If-Modified-Since is ignored (13.1.3 says to ignore it whenever
  If-None-Match is in the request).
* An empty list ("If-Match:" with no tags) is a valid list that matches
  nothing, as nginx treats it.
* If-Unmodified-Since is ignored when the resource has no modification date
  (or does not exist) and when its date is invalid, as RFC 9110 13.1.4 says.
* When `exists` is false the resource has no current validators: "*" does not
  match and neither does any entity-tag or date.
* If-Range with a date matches only the exact Last-Modified second. The RFC's
  extra test (Last-Modified at least a second before Date) needs a clock; an
  exact match of a one-second-resolution stamp is the best available here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from ferryman.http.dates import parse_http_date

__all__ = [
    "Outcome",
    "Validators",
    "evaluate_preconditions",
    "if_range_matches",
    "parse_etag_list",
]

_OWS = " \t"
# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG = re.compile(r'(W/)?"[\x21\x23-\x7e\x80-\xff]*"')
_SAFE_METHODS = frozenset({"GET", "HEAD"})

_Tag = tuple[bool, str]  # (weak, opaque-tag including its quotes)
_Comparison = Callable[[_Tag, _Tag], bool]


@dataclass(frozen=True, slots=True)
class Validators:
    """The selected representation's validators (None when it has none)."""

    etag: str | None  # full entity-tag as sent on the wire, e.g. '"5f-3e8"' or 'W/"x"'
    last_modified: int | None  # epoch seconds


class Outcome(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"  # 304
    PRECONDITION_FAILED = "precondition_failed"  # 412


def evaluate_preconditions(
    method: str,
    *,
    if_match: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
    if_unmodified_since: str | None,
    validators: Validators,
    exists: bool = True,
) -> Outcome:
    """Evaluate the preconditions present (None = absent) in RFC 9110 13.2.2 order.

    Never raises for any header text.
    """
    if (
        if_match is None
        and if_none_match is None
        and if_modified_since is None
        and if_unmodified_since is None
    ):
        return Outcome.PROCEED  # most requests: not even the ETag needs parsing
    etag_text = validators.etag if exists else None
    etag = _current_tag(etag_text)
    last_modified = validators.last_modified if exists else None

    # Step 1 and 2: the state-changing guards.
    if if_match is not None:
        if not _list_matches(if_match, etag, etag_text, exists, _strong_equal):
            return Outcome.PRECONDITION_FAILED
    elif if_unmodified_since is not None:
        date = parse_http_date(if_unmodified_since)
        if date is not None and last_modified is not None and last_modified > date:
            return Outcome.PRECONDITION_FAILED

    # Step 3 and 4: the cache-revalidation checks.
    safe = method in _SAFE_METHODS
    if if_none_match is not None:
        if _list_matches(if_none_match, etag, etag_text, exists, _weak_equal):
            return Outcome.NOT_MODIFIED if safe else Outcome.PRECONDITION_FAILED
    elif safe and if_modified_since is not None:
        date = parse_http_date(if_modified_since)
        if date is not None and last_modified is not None and last_modified <= date:
            return Outcome.NOT_MODIFIED
    return Outcome.PROCEED


def if_range_matches(value: str | None, validators: Validators) -> bool:
    """True when the Range may be honoured; False means send the full 200.

    An entity-tag (it starts with '"' or 'W/') matches only by strong
    comparison; anything else must be an HTTP-date equal to Last-Modified.
    """
    if value is None:
        return True
    text = value.strip(_OWS)
    if text.startswith(('"', "W/")):
        tag = _split_entity_tag(text)
        current = _split_entity_tag(validators.etag)
        return tag is not None and current is not None and _strong_equal(tag, current)
    date = parse_http_date(text)
    return date is not None and date == validators.last_modified


def parse_etag_list(value: str) -> list[str] | None:
    """The entity-tags of an If-Match / If-None-Match value, as written.

    "*" gives ["*"]; a malformed value gives None. Tags may themselves contain
    commas, so the list is scanned tag by tag rather than split.
    """
    text = value.strip(_OWS)
    if text == "*":
        return ["*"]
    tags: list[str] = []
    position = 0
    while position < len(text):
        if text[position] == ",":  # empty list element
            position = _skip_ows(text, position + 1)
            continue
        match = _ENTITY_TAG.match(text, position)
        if match is None:
            return None
        tags.append(match.group())
        position = _skip_ows(text, match.end())
        if position < len(text) and text[position] != ",":
            return None
    return tags


@lru_cache(maxsize=4096)
def _current_tag(etag: str | None) -> _Tag | None:
    """A representation's own entity-tag, parsed once per version (these are few; the
    tags clients send are parsed each time, as they may be anything)."""
    return _split_entity_tag(etag)


def _split_entity_tag(tag: str | None) -> _Tag | None:
    if tag is None or _ENTITY_TAG.fullmatch(tag) is None:
        return None
    weak = tag.startswith("W/")
    return weak, tag[2:] if weak else tag


def _strong_equal(a: _Tag, b: _Tag) -> bool:
    """RFC 9110 8.8.3.2: both strong and character-for-character identical."""
    return not a[0] and not b[0] and a[1] == b[1]


def _weak_equal(a: _Tag, b: _Tag) -> bool:
    """RFC 9110 8.8.3.2: opaque-tags identical, weakness ignored."""
    return a[1] == b[1]


def _list_matches(
    value: str, current: _Tag | None, current_text: str | None, exists: bool, equal: _Comparison
) -> bool:
    """Whether an If-Match / If-None-Match value matches; a malformed one never does."""
    if current is not None and value == current_text:
        # The client sent back the one tag it was given, the commonest revalidation:
        # a list of that well-formed tag alone, compared with itself.
        return equal(current, current)
    tags = parse_etag_list(value)
    if tags is None:
        return False
    if tags == ["*"]:
        return exists
    return current is not None and any(_matches(tag, current, equal) for tag in tags)


def _matches(tag: str, current: _Tag, equal: _Comparison) -> bool:
    parsed = _split_entity_tag(tag)
    return parsed is not None and equal(parsed, current)


def _skip_ows(text: str, position: int) -> int:
    while position < len(text) and text[position] in _OWS:
        position += 1
    return position

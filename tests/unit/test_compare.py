"""The merge join of an audit against a dict-based reference model (hypothesis), each
perturbation of a store found as exactly its kind for exactly its keys, refusal of
unsorted input, and the per-key judgement of a copy that was read whole."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.audit.compare import (
    DELETED,
    EMPTY_MD5,
    EMPTY_SHA256,
    Computed,
    Pair,
    compare,
    join,
    judge,
    judge_read,
    needs_md5,
    should_read,
)
from ferryman.audit.model import (
    DIGEST_MISMATCH,
    MISSING,
    SIZE_MISMATCH,
    UNEXPECTED,
    ZERO_BYTE,
    Expected,
    Finding,
    Stored,
    StoreTally,
)

STORE = "s3://bucket/replica"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def run(
    expected: list[Expected], stored: list[Stored], deleted: list[str] | None = None
) -> tuple[list[Finding], StoreTally]:
    """compare() over one-pass iterators, as a run feeds it from listings."""
    tally = StoreTally(STORE)
    findings = list(compare(iter(expected), iter(stored), tally, deleted=iter(deleted or [])))
    return findings, tally


# --- the reference model ------------------------------------------------------------


def reference_kind(e: Expected, size: int, sha: str | None, md: str | None) -> str | None:
    """The rules as the docstring states them, from scratch."""
    if e.size is not None:
        says_empty: bool | None = e.size == 0
    elif e.sha256 is not None:
        says_empty = e.sha256 == EMPTY_SHA256
    elif e.md5 is not None:
        says_empty = e.md5 == EMPTY_MD5
    else:
        says_empty = None
    known_size = e.size if e.size is not None else (0 if says_empty else None)
    if says_empty is False and size == 0:
        return ZERO_BYTE
    if known_size is not None and known_size != size:
        return SIZE_MISMATCH
    if e.sha256 and sha:
        return None if e.sha256 == sha else DIGEST_MISMATCH
    if e.md5 and md and e.md5 != md:
        return DIGEST_MISMATCH
    return None


def reference(
    expected: dict[str, Expected], stored: dict[str, Stored], deleted: set[str]
) -> tuple[list[tuple[str, str]], int]:
    live = {k: v for k, v in expected.items() if k not in deleted}
    found, ok = [], 0
    for key in sorted(set(live) | set(stored)):
        e, s = live.get(key), stored.get(key)
        if s is None:
            kind: str | None = MISSING
        elif e is None:
            kind = UNEXPECTED
        else:
            kind = reference_kind(e, s.size, s.sha256, s.md5)
        if kind is None:
            ok += 1
        else:
            found.append((key, kind))
    return found, ok


# Small pools, so that keys meet and values agree often.
keys = st.text("ab/é\uffff\U0001f600", min_size=1, max_size=3)
sizes = st.sampled_from([0, 1, 7])
shas = st.sampled_from([None, EMPTY_SHA256, sha256("x"), sha256("y")])
md5s = st.sampled_from([None, EMPTY_MD5, md5("x"), md5("y")])
expecteds = st.builds(lambda size, sha, md: (size, sha, md), st.none() | sizes, shas, md5s)
storeds = st.tuples(sizes, shas, md5s)


@given(
    st.dictionaries(keys, expecteds),
    st.dictionaries(keys, storeds),
    st.sets(keys),
)
def test_compare_agrees_with_the_reference_model(
    expected_values: dict[str, tuple[int | None, str | None, str | None]],
    stored_values: dict[str, tuple[int, str | None, str | None]],
    deleted: set[str],
) -> None:
    expected = {k: Expected(k, *v) for k, v in expected_values.items()}
    stored = {k: Stored(k, *v) for k, v in stored_values.items()}
    findings, tally = run(
        [expected[k] for k in sorted(expected)],
        [stored[k] for k in sorted(stored)],
        sorted(deleted),
    )
    want, ok = reference(expected, stored, deleted)
    assert [(f.key, f.kind) for f in findings] == want
    assert tally.counts["ok"] == ok
    assert sum(tally.counts.values()) == ok  # findings are the caller's to count
    for f in findings:
        assert f.store == STORE
        if f.kind == UNEXPECTED:
            assert f.detail == (DELETED if f.key in deleted else "")


# --- perturbations: each kind for exactly its keys ---------------------------------

PERTURBATIONS = {
    "none": None,
    "missing": MISSING,
    "truncated": SIZE_MISMATCH,
    "grown": SIZE_MISMATCH,
    "emptied": ZERO_BYTE,
    "changed": DIGEST_MISMATCH,
    "changed_md5": DIGEST_MISMATCH,
    "deleted": UNEXPECTED,
    "deleted_gone": None,
}


def perturb(key: str, how: str) -> tuple[Expected, Stored | None, bool]:
    """An expected entry for `key`, its copy perturbed `how`, and whether it is deleted."""
    size = 2 + len(key.encode())
    e = Expected(key, size, sha256(key), md5(key))
    copy: Stored | None = Stored(key, size, sha256(key), md5(key))
    if how == "missing":
        copy = None
    elif how == "truncated":  # the digest changes too: the size is what is reported
        copy = Stored(key, size - 1, sha256(key[:-1]), md5(key[:-1]))
    elif how == "grown":
        copy = Stored(key, size + 1, None, None)
    elif how == "emptied":
        copy = Stored(key, 0, EMPTY_SHA256, EMPTY_MD5)
    elif how == "changed":
        copy = Stored(key, size, sha256(key + "!"), md5(key))
    elif how == "changed_md5":  # only md5 on either side: S3 ETags against md5sum output
        e = Expected(key, size, None, md5(key))
        copy = Stored(key, size, None, md5(key + "!"))
    elif how == "deleted_gone":
        copy = None
    return e, copy, how.startswith("deleted")


@given(
    st.dictionaries(st.text("abc/é", min_size=1, max_size=4), st.sampled_from(list(PERTURBATIONS))),
    st.sets(st.text("xyz", min_size=1, max_size=3)),
)
def test_each_kind_is_found_for_exactly_the_keys_perturbed_that_way(
    plan: dict[str, str], extra: set[str]
) -> None:
    expected, stored, deleted = [], [], []
    for key in sorted(plan):
        e, copy, is_deleted = perturb(key, plan[key])
        expected.append(e)
        if copy is not None:
            stored.append(copy)
        if is_deleted:
            deleted.append(key)
    stored += [Stored(k, 3, sha256(k)) for k in extra]  # "xyz": never a planned key
    stored.sort(key=lambda s: s.key)

    findings, tally = run(expected, stored, deleted)

    got: dict[str | None, set[str]] = {}
    for f in findings:
        got.setdefault(f.kind, set()).add(f.key)
    want: dict[str | None, set[str]] = {}
    for key, how in plan.items():
        if PERTURBATIONS[how] is not None:
            want.setdefault(PERTURBATIONS[how], set()).add(key)
    if extra:
        want.setdefault(UNEXPECTED, set()).update(extra)
    assert got == want
    assert tally.counts["ok"] == sum(1 for how in plan.values() if how == "none")
    assert len(findings) == len({f.key for f in findings})  # one finding per key at most
    for f in findings:
        if f.kind == UNEXPECTED:
            assert f.detail == (DELETED if plan.get(f.key) == "deleted" else "")


# --- order ---------------------------------------------------------------------------


distinct_keys = st.lists(keys, min_size=2, max_size=8, unique=True).map(sorted)


@given(distinct_keys, st.data(), st.sampled_from(["e", "s", "d"]))
def test_input_out_of_order_is_refused(ordered: list[str], data: st.DataObject, side: str) -> None:
    at = data.draw(st.integers(0, len(ordered) - 2))
    swapped = list(ordered)
    swapped[at], swapped[at + 1] = swapped[at + 1], swapped[at]
    exp = [Expected(k) for k in (swapped if side == "e" else ordered)]
    sto = [Stored(k, 1) for k in (swapped if side == "s" else ordered)]
    with pytest.raises(ValueError, match="not strictly sorted"):
        run(exp, sto, swapped if side == "d" else [])


@pytest.mark.parametrize("side", ["e", "s", "d"])
def test_a_key_listed_twice_is_refused(side: str) -> None:
    keys = ["a", "b", "b", "c"]
    with pytest.raises(ValueError, match="not strictly sorted"):
        run(
            [Expected(k) for k in (keys if side == "e" else ["a"])],
            [Stored(k, 1) for k in (keys if side == "s" else ["a"])],
            keys if side == "d" else [],
        )


def test_order_is_code_point_order_not_utf16() -> None:
    # UTF-16 (some Java and Windows listings) puts U+1F600 (a surrogate pair) before U+FFFF.
    utf16 = ["\U0001f600", "\uffff"]
    with pytest.raises(ValueError):
        run([Expected(k) for k in utf16], [])
    findings, _ = run([Expected(k) for k in sorted(utf16)], [])
    assert [f.key for f in findings] == ["\uffff", "\U0001f600"]


def test_the_join_streams() -> None:
    def endless() -> Iterator[Expected]:
        for n in itertools.count():
            yield Expected(f"k{n:020d}", 1)

    tally = StoreTally(STORE)
    first = list(itertools.islice(compare(endless(), iter([]), tally), 3))
    assert [f.kind for f in first] == [MISSING] * 3


# --- what a finding says ----------------------------------------------------------


def test_findings_carry_what_each_side_knows() -> None:
    a = sha256("a")
    findings, tally = run(
        [
            Expected("gone", 5, a),
            Expected("md5only", 3, None, md5("x")),
            Expected("nosize", None, a),
            Expected("ok", 1, a),
            Expected("small", 5, a),
        ],
        [
            Stored("md5only", 3, None, md5("y")),
            Stored("nosize", 0),
            Stored("ok", 1, a),
            Stored("small", 4, None),
            Stored("stray", 9, a),
        ],
    )
    assert findings == [
        Finding("gone", STORE, MISSING, expected_size=5, expected_sha256=a),
        Finding(
            "md5only",
            STORE,
            DIGEST_MISMATCH,
            expected_size=3,
            actual_size=3,
            detail=f"md5 {md5('y')}, expected {md5('x')}",
        ),
        # a sha256sum inventory has no sizes; its digest says "not empty"
        Finding("nosize", STORE, ZERO_BYTE, actual_size=0, expected_sha256=a),
        Finding("small", STORE, SIZE_MISMATCH, expected_size=5, actual_size=4, expected_sha256=a),
        Finding("stray", STORE, UNEXPECTED, actual_size=9, actual_sha256=a),
    ]
    assert tally.counts["ok"] == 1


def test_the_digest_of_empty_content_expects_size_zero() -> None:
    findings, _ = run(
        [Expected("e", None, EMPTY_SHA256), Expected("f", None, None, EMPTY_MD5)],
        [Stored("e", 3), Stored("f", 0)],
    )
    assert [(f.key, f.kind, f.expected_size) for f in findings] == [("e", SIZE_MISMATCH, 0)]


def test_sha256_decides_over_md5_when_both_sides_know_it() -> None:
    e = Expected("k", 1, sha256("k"), md5("k"))
    assert judge(Pair("k", e, Stored("k", 1, sha256("k"), md5("other"))), STORE) is None
    assert judge(Pair("k", e, Stored("k", 1, None, md5("other"))), STORE) is not None


def test_deleted_keys_leave_the_expected_side() -> None:
    pairs = list(
        join(
            [Expected("a"), Expected("b"), Expected("c")],
            [Stored("a", 1), Stored("c", 1)],
            deleted=["0", "a", "b", "zz"],
        )
    )
    assert pairs == [
        Pair("a", None, Stored("a", 1), deleted=True),
        Pair("c", Expected("c"), Stored("c", 1)),
    ]


def test_the_rest_of_the_deleted_keys_is_checked_for_order_too() -> None:
    with pytest.raises(ValueError, match="deleted"):
        list(join([Expected("a")], [], deleted=["x", "w"]))


# --- reading copies: judge_read -----------------------------------------------------


@given(expecteds, sizes, shas.filter(lambda s: s is not None), md5s)
def test_judge_read_agrees_with_the_reference_model(
    values: tuple[int | None, str | None, str | None], size: int, sha: str, md: str | None
) -> None:
    e = Expected("k", *values)
    if needs_md5(e) and md is None:
        with pytest.raises(ValueError, match="md5"):
            judge_read(e, Computed(size, sha, md), STORE)
        return
    finding = judge_read(e, Computed(size, sha, md), STORE)
    assert (finding.kind if finding else None) == reference_kind(e, size, sha, md)
    if finding is not None:
        assert (finding.key, finding.store, finding.actual_size) == ("k", STORE, size)


def test_a_deep_audit_reads_what_the_listing_cannot_condemn() -> None:
    a = sha256("a")
    e = Expected("k", 3, a)
    listed_ok = Pair("k", e, Stored("k", 3))
    listed_stale = Pair("k", e, Stored("k", 3, sha256("b")))
    listed_short = Pair("k", e, Stored("k", 2))
    assert should_read(listed_ok, judge(listed_ok, STORE))
    assert should_read(listed_stale, judge(listed_stale, STORE))  # metadata may be stale
    assert not should_read(listed_short, judge(listed_short, STORE))
    assert not should_read(Pair("k", e, None), judge(Pair("k", e, None), STORE))
    assert not should_read(Pair("k", None, Stored("k", 1)), None)
    # the bytes decide: stale metadata, good bytes
    assert judge_read(e, Computed(3, a), STORE) is None
    finding = judge_read(e, Computed(3, sha256("b")), STORE)
    assert finding is not None and finding.actual_sha256 == sha256("b")

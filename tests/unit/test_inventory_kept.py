"""A parse of an inventory kept for the next run: used only for the very same bytes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.audit import inventorycache
from ferryman.audit.inventory import InventoryError, parse_inventory, read_inventory
from ferryman.audit.inventorycache import read_inventory_kept

SEGMENT = st.text(alphabet="ab,\"é日 -_'\t", min_size=1, max_size=6).filter(
    lambda s: s.strip(" \t") == s and s not in (".", "..")
)
KEY = st.lists(SEGMENT, min_size=1, max_size=3).map("/".join)
ENTRY = st.tuples(
    st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    st.one_of(st.none(), st.binary(min_size=32, max_size=32).map(bytes.hex)),
    st.one_of(st.none(), st.binary(min_size=16, max_size=16).map(bytes.hex)),
).filter(lambda e: e[1] is not None or e[2] is not None)
ENTRIES = st.dictionaries(KEY, ENTRY, min_size=1, max_size=20)


def csv_text(entries: dict[str, tuple[int | None, str | None, str | None]]) -> str:
    def cell(text: str) -> str:
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"') else text

    lines = ["key,size,sha256,md5"]
    for key, (size, sha256, md5) in entries.items():
        shown_size = "" if size is None else str(size)
        lines.append(",".join([cell(key), shown_size, sha256 or "", md5 or ""]))
    return "\n".join(lines) + "\n"


def kept_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.entries")) if directory.exists() else []


@settings(max_examples=60, deadline=None)
@given(ENTRIES, ENTRIES)
def test_a_kept_parse_is_what_parsing_gives_and_other_bytes_are_parsed_anew(
    first: dict[str, tuple[int | None, str | None, str | None]],
    second: dict[str, tuple[int | None, str | None, str | None]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        inventory, kept = Path(tmp) / "inventory.csv", Path(tmp) / "kept"
        for entries in (first, second):
            inventory.write_text(csv_text(entries), encoding="utf-8")
            parsed = read_inventory(inventory)
            assert read_inventory_kept(inventory, kept) == parsed  # parsed, then kept
            assert len(kept_files(kept)) >= 1
            assert read_inventory_kept(inventory, kept) == parsed  # from what was kept


def test_the_second_read_of_the_same_bytes_does_not_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory, kept = tmp_path / "inv.csv", tmp_path / "kept"
    inventory.write_text("key,size,sha256\na/b,3,xyz\n", encoding="utf-8")
    with pytest.raises(InventoryError, match="line 2: digest 'xyz' is not hexadecimal"):
        read_inventory_kept(inventory, kept)
    assert kept_files(kept) == []  # a failed parse keeps nothing
    inventory.write_text(f"key,size,sha256\na/b,3,{'ab' * 32}\n", encoding="utf-8")
    entries = read_inventory_kept(inventory, kept)
    assert [(e.key, e.size, e.sha256) for e in entries] == [("a/b", 3, "ab" * 32)]
    calls = []
    monkeypatch.setattr(inventorycache, "parse_inventory", lambda *a, **k: calls.append(a))
    assert read_inventory_kept(inventory, kept) == entries
    assert calls == []


def test_the_format_chosen_by_the_name_is_part_of_what_is_kept(tmp_path: Path) -> None:
    """The same bytes under another name may be another format: each has its own parse."""
    digest = "cd" * 32
    text = f"{digest}  a/b\n"
    for name in ("SHA256SUMS", "manifest-sha256.txt"):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert read_inventory_kept(tmp_path / name, tmp_path / "kept") == read_inventory(
            tmp_path / name
        )
    assert len(kept_files(tmp_path / "kept")) == 2


@pytest.mark.parametrize(
    "damage", [b"", b"a/b\0", b"\xff\xfe\0\0\0\0", b"a/b\0notanumber\0\0\0", b"a/b\03"]
)
def test_a_kept_parse_that_cannot_be_read_back_is_parsed_anew(
    tmp_path: Path, damage: bytes
) -> None:
    inventory, kept = tmp_path / "inv.csv", tmp_path / "kept"
    inventory.write_text(f"key,size,sha256\na/b,3,{'ab' * 32}\n", encoding="utf-8")
    entries = read_inventory_kept(inventory, kept)
    (only,) = kept_files(kept)
    only.write_bytes(damage)
    assert read_inventory_kept(inventory, kept) == entries
    assert only.read_bytes() != damage  # rewritten whole


def test_at_most_keep_parses_are_kept_the_least_recently_used_going_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inventorycache, "KEEP", 3)
    kept = tmp_path / "kept"
    inventories = []
    for n in range(5):
        path = tmp_path / f"inv{n}.csv"
        path.write_text(f"key,size,sha256\nk{n},{n},{'ab' * 32}\n", encoding="utf-8")
        inventories.append(path)
    for n, path in enumerate(inventories[:3]):
        read_inventory_kept(path, kept)
        for kept_file in kept_files(kept):  # an older use for what came before
            st = kept_file.stat()
            os.utime(kept_file, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9 * (3 - n)))
    read_inventory_kept(inventories[0], kept)  # used again: the most recent now
    read_inventory_kept(inventories[3], kept)
    assert len(kept_files(kept)) == 3
    calls = []

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[1])
        return parse_inventory(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(inventorycache, "parse_inventory", counting)
    read_inventory_kept(inventories[0], kept)
    read_inventory_kept(inventories[3], kept)
    assert calls == []  # both kept
    read_inventory_kept(inventories[1], kept)
    assert calls == [str(inventories[1])]  # the least recently used went


def test_a_state_directory_that_cannot_keep_it_costs_only_a_parse(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.csv"
    inventory.write_text(f"key,size,sha256\na,1,{'ab' * 32}\n", encoding="utf-8")
    blocked = tmp_path / "file-not-dir"
    blocked.write_bytes(b"")
    assert read_inventory_kept(inventory, blocked / "kept") == read_inventory(inventory)


def test_a_missing_inventory_is_an_inventory_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read inventory"):
        read_inventory_kept(tmp_path / "absent.csv", tmp_path / "kept")

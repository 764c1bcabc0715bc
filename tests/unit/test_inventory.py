"""Inventory files: real sha256sum/md5sum/cksum output (coreutils is the oracle for how a
line reads), BagIt manifests, CSV and TSV, every refusal with its line number, memory
that does not follow the file's size, and round trips of random entries in each format."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.audit.inventory import InventoryError, parse_inventory, read_inventory
from ferryman.audit.model import Expected
from ferryman.catalog.schema import check_path
from ferryman.errors import FerrymanError


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


D1, D2 = sha256(b"one"), sha256(b"two")
M1 = md5(b"one")


def parse(data: bytes | str, name: str = "inv.txt") -> list[Expected]:
    raw = data.encode() if isinstance(data, str) else data
    return parse_inventory(io.BytesIO(raw), name)


def refusal(data: bytes | str, name: str = "inv.txt") -> str:
    with pytest.raises(InventoryError) as caught:
        parse(data, name)
    return str(caught.value)


def as_dict(entries: list[Expected]) -> dict[str, Expected]:
    return {e.key: e for e in entries}


# --- sha256sum / md5sum / cksum: real output -----------------------------------

TRICKY = [
    "plain.txt",
    "a\\b",
    "n\nl",
    "c\rr",
    " lead",
    "trail ",
    "*star",
    "tab\tin",
    "#hash",
    "%25.txt",
    "ü/é.bin",
    "sub/dir/x",
    "empty",
]

TOOLS = [
    ("sha256sum",),
    ("sha256sum", "-b"),
    ("sha256sum", "--tag"),
    ("md5sum",),
    ("md5sum", "-b"),
    ("md5sum", "--tag"),
    ("cksum", "-a", "sha256"),
    ("cksum", "-a", "md5"),
]


def make_tree(root: Path) -> dict[str, bytes]:
    contents = {}
    for number, name in enumerate(TRICKY):
        data = b"" if name == "empty" else f"content {number}".encode()
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        contents[name] = data
    return contents


@pytest.mark.parametrize("tool", TOOLS, ids=" ".join)
def test_real_coreutils_output_reads_back_every_name(tmp_path: Path, tool: tuple[str, ...]) -> None:
    if shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} is not installed")
    tree = tmp_path / "tree"
    tree.mkdir()
    contents = make_tree(tree)
    run = subprocess.run([*tool, "--", *TRICKY], cwd=tree, capture_output=True, check=False)
    if run.returncode != 0:
        pytest.skip(f"{' '.join(tool)} is not supported here: {run.stderr.decode()[:200]}")
    listing = tmp_path / "SUMS"
    listing.write_bytes(run.stdout)
    field = "md5" if "md5" in " ".join(tool) else "sha256"
    digest = md5 if field == "md5" else sha256
    expected = [
        Expected(name, None, **{field: digest(contents[name])}) for name in sorted(contents)
    ]
    assert read_inventory(listing) == expected


# Hand-written lines in each form coreutils accepts; the oracle is `sha256sum --strict -c`
# run over files named as ferryman read them.
DATA = b"oracle"
D = sha256(DATA)
FORMS = [
    (f"{D}  name", "name"),
    (f"{D} *name", "name"),
    (f"{D} name", "name"),  # the one-space form of BSD -r
    (f"{D}\tname", "name"),
    (f"{D}   spaced", " spaced"),
    (f"{D} * star", " star"),
    (f"  {D}  indented", "indented"),
    (f"{D.upper()}  upper", "upper"),
    (f"\\{D}  back\\\\slash", "back\\slash"),
    (f"\\{D}  new\\nline", "new\nline"),
    (f"\\{D}  car\\rriage", "car\rriage"),
    (f"{D}  literal\\n", "literal\\n"),  # no leading backslash: nothing is an escape
    (f"{D}  crlf\r", "crlf"),
    (f"SHA256 (tagged) = {D}", "tagged"),
    (f"\\SHA256 (we\\\\ird) = {D}", "we\\ird"),
    (f"SHA256 (paren) x) = {D}", "paren) x"),
    (f"SHA256(nospace) = {D}", "nospace"),
]


@pytest.mark.parametrize(("line", "key"), FORMS)
def test_each_line_form_reads_as_coreutils_reads_it(tmp_path: Path, line: str, key: str) -> None:
    assert parse(line + "\n") == [Expected(key, None, D)]
    if shutil.which("sha256sum") is None:
        return
    (tmp_path / key).write_bytes(DATA)
    (tmp_path / "SUMS").write_text(line + "\n")
    run = subprocess.run(
        ["sha256sum", "--strict", "-c", "SUMS"], cwd=tmp_path, capture_output=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_comments_blank_lines_and_crlf_are_skipped() -> None:
    text = f"# made by hand\r\n\r\n{D1}  a\r\n   \n{M1}  b\r\n"
    assert parse(text) == [Expected("a", None, D1), Expected("b", None, None, M1)]


def test_one_space_form_cannot_follow_the_two_character_form() -> None:
    message = refusal(f"{D1}  a\n{D2} b\n")
    assert "inv.txt, line 2" in message and "one space" in message


def test_after_the_one_space_form_a_second_space_belongs_to_the_path() -> None:
    # coreutils: once a file is in the one-space form, "<hex>  x" names " x"
    assert as_dict(parse(f"{D1} a\n{D2}  b\n"))[" b"] == Expected(" b", None, D2)


@pytest.mark.parametrize("name", ["a\\x", "a\\", "a\\t"])
def test_an_escape_coreutils_does_not_write_is_refused(name: str) -> None:
    message = refusal(f"{D1}  ok\n\\{D2}  {name}\n")
    assert "inv.txt, line 2" in message and "escape" in message


# --- BagIt ---------------------------------------------------------------------


def test_bagit_manifest_paths_keep_data_and_decode_cr_lf_percent() -> None:
    lines = [
        f"{D1} data/a.txt",
        f"{D1}\t\tdata/tab separated",
        f"{D1}   data/many spaces",
        f"{D1.upper()} data/upper hex",
        f"{D1} data/line%0Abreak",
        f"{D1} data/cr%0dreturn",
        f"{D1} data/pct%25",
        f"{D1} data/%250A",  # one pass: %25 then 0A, not a newline
        f"{D1} data/100%.txt",  # a bare % is kept (older writers never encoded it)
        f"{D1} data/%41",
        f"{D1} *data/star",  # as written: a BagIt path has no mode flag
        f"{D1} data/sub/dir/file",
    ]
    got = [e.key for e in parse("\n".join(lines) + "\n", "bag/manifest-sha256.txt")]
    assert got == sorted(
        [
            "data/a.txt",
            "data/tab separated",
            "data/many spaces",
            "data/upper hex",
            "data/line\nbreak",
            "data/cr\rreturn",
            "data/pct%",
            "data/%0A",
            "data/100%.txt",
            "data/%41",
            "*data/star",
            "data/sub/dir/file",
        ]
    )
    assert parse(lines[0], "manifest-sha256.txt") == [Expected("data/a.txt", None, D1)]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_bagit_lines_end_with_lf_crlf_or_cr_and_are_numbered_right(ending: str) -> None:
    text = ending.join([f"{D1} data/a", f"{D2} data/b", f"{D1} data/../c", ""])
    assert "manifest-sha256.txt, line 3" in refusal(text, "manifest-sha256.txt")
    assert [e.key for e in parse(text.replace("../", ""), "manifest-sha256.txt")] == [
        "data/a",
        "data/b",
        "data/c",
    ]


def test_a_crlf_cut_by_the_read_chunk_is_one_line_ending() -> None:
    # The first line ends exactly at the 64 KiB read boundary with its CR; its LF
    # begins the next chunk. Counting that as two endings would shift every number.
    first = f"{D1} data/" + "x" * (65535 - 70)
    first += "y" * (65535 - len(first.encode()))
    text = first + f"\r\n{D2} data/b\r\n{D1} data//c\r\n"
    assert len(first.encode()) == 65535
    assert "line 3" in refusal(text, "manifest-sha256.txt")


def test_bagit_md5_manifest_and_tag_manifest() -> None:
    assert parse(f"{M1} data/a\n", "manifest-md5.txt") == [Expected("data/a", None, None, M1)]
    assert parse(f"{D1} bagit.txt\n", "tagmanifest-sha256.txt") == [Expected("bagit.txt", None, D1)]


def test_bagit_refusals() -> None:
    assert "sha512" in refusal(f"{'0' * 128} data/a\n", "manifest-sha512.txt")
    message = refusal(f"{D1} data/a\n{M1} data/b\n", "manifest-sha256.txt")
    assert "line 2" in message and "32 hex digits" in message
    assert "line 1" in refusal(f"{D1}\n", "manifest-sha256.txt")
    assert "line 1" in refusal(f"{D1} /etc/passwd\n", "manifest-sha256.txt")


# --- CSV and TSV ---------------------------------------------------------------


def test_csv_columns_in_any_order_any_case_with_extra_columns() -> None:
    text = (
        "Owner,SHA256,Size,KEY,md5\n"
        f"ann, {D1} ,3,a,{M1}\n"
        f"bob,,,b,\n"
        f'cy,{D2.upper()}, 12 ,"c,with comma",\n'
    )
    assert parse(text, "list.csv") == [
        Expected("a", 3, D1, M1),
        Expected("b"),
        Expected("c,with comma", 12, D2),
    ]


def test_csv_quoted_keys_with_newlines_number_the_lines_after_them() -> None:
    text = f'path,size,sha256\n"two\nlines",1,{D1}\n"say ""hi""",2,\nbad,-1,\n'
    message = refusal(text, "list.csv")
    assert "list.csv, line 5" in message and "size" in message
    got = parse(text.replace("bad,-1,\n", ""), "list.csv")
    assert got == [Expected('say "hi"', 2), Expected("two\nlines", 1, D1)]


def test_tsv_cells_are_taken_as_written() -> None:
    text = f'key\tsize\tmd5\n"quoted"\t5\t{M1}\n'
    assert parse(text, "list.tsv") == [Expected('"quoted"', 5, None, M1)]


@pytest.mark.parametrize(
    "text",
    [
        f"\ufeffkey,size,sha256\na,1,{D1}\n",  # a BOM, as spreadsheets write
        f"# exported\n\nkey,size,sha256\na,1,{D1}\n",
        f"key\tsize\tsha256\na\t1\t{D1}\n",
        f"key,size,sha256\r\na,1,{D1}\r\n",
    ],
)
def test_tables_are_found_by_their_content(text: str) -> None:
    assert parse(text, "inventory") == [Expected("a", 1, D1)]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name,size,sha256\na,1,\n", "'key' or 'path'"),
        ("key,path,size,sha256\na,a,1,\n", "'key' or 'path'"),
        ("key,sha256\na,\n", "'size'"),
        ("key,size\na,1\n", "'sha256' or 'md5'"),
        ("key,size,size,md5\na,1,1,\n", "twice"),
        ("key,size,md5\na,1\n", "2 fields"),
        ("key,size,md5\na,1,,extra\n", "4 fields"),
        ('key,size,md5\n"open,1,\n', "line 2"),
        ('key,size,md5\n"a"b,1,\n', "line 2"),
        (f"key,size,sha256\na,1,{M1}\n", "32 hex digits"),
    ],
)
def test_table_refusals(text: str, words: str) -> None:
    message = refusal(text, "list.csv")
    assert words in message and "list.csv, line" in message


@pytest.mark.parametrize("size", ["-1", "1.5", "1e3", "+1", "0x10", "1_000", "9223372036854775808"])
def test_a_size_that_is_not_a_whole_number_of_bytes_is_refused(size: str) -> None:
    message = refusal(f"key,size,sha256\nok,1,\nbad,{size},\n", "list.csv")
    assert "list.csv, line 3" in message and "size" in message


# --- refusals common to every format ---------------------------------------------


BAD_KEYS = [
    ("/etc/passwd", "absolute"),
    ("../x", "'..'"),
    ("a/../b", "'..'"),
    ("a/./b", "'.'"),
    ("./a", "'./'"),
    ("a//b", "empty"),
    ("a/", "empty"),
    ("a\x00b", "NUL"),
]


@pytest.mark.parametrize(("key", "why"), BAD_KEYS)
@pytest.mark.parametrize("fmt", ["sums", "bagit", "csv"])
def test_a_key_that_leaves_or_aliases_the_store_is_refused(key: str, why: str, fmt: str) -> None:
    if fmt == "sums":
        message = refusal(f"{D1}  ok\n{D2}  {key}\n")
    elif fmt == "bagit":
        message = refusal(f"{D1} ok\n{D2} {key}\n", "manifest-sha256.txt")
    else:
        message = refusal(f'key,size,md5\nok,1,\n"{key}",1,\n', "a.csv")
    line = 3 if fmt == "csv" else 2
    assert f", line {line}: key " in message and why in message


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (f"{'g' * 64}  a", "not hexadecimal"),
        (f"{'a' * 40}  a", "40 hex digits (sha1?)"),
        (f"{'a' * 128}  a", "(sha512?)"),
        (f"{'a' * 63}  a", "63 hex digits"),
        (D1, "no path"),
        (f"{D1} ", "no path"),
        (f"SHA256 (a) = {M1}", "32 hex digits"),
    ],
)
def test_a_malformed_checksum_line_is_refused_with_its_number(line: str, words: str) -> None:
    message = refusal(f"{D1}  fine\n{line}\n")
    assert message.startswith("inv.txt, line 2: ") and words in message


def test_a_huge_line_is_never_echoed_whole() -> None:
    huge = "/" + "x" * 60_000
    message = refusal(f"{D1}  ok\n{D2}  {huge}\n")
    assert "line 2" in message and len(message) < 300


def test_bytes_that_are_not_utf8_are_refused_with_the_line_number() -> None:
    message = refusal(f"{D1}  a\n{D2}  b\n".encode() + D1.encode() + b"  caf\xe9\n")
    assert "inv.txt, line 3" in message and "UTF-8" in message


def test_a_line_longer_than_any_inventory_line_is_refused_without_reading_it_all() -> None:
    data = f"{D1}  ok\n".encode() + b"x" * 10_000_000
    tracemalloc.start()
    try:
        message = refusal(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "line 2" in message and "longer than" in message
    assert peak < 1_000_000


def test_the_same_entry_twice_is_one_entry_different_values_are_refused() -> None:
    assert parse(f"{D1}  a\n{D1}  a\n") == [Expected("a", None, D1)]
    message = refusal(f"{D1}  a\n{D1}  b\n{D2}  a\n")
    assert "inv.txt, line 3" in message and "listed again" in message
    message = refusal("key,size,md5\na,1,\nb,1,\na,2,\n", "x.csv")
    assert "x.csv, line 4" in message and "size 2" in message and "size 1" in message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "key,size,md5\n"])
def test_an_inventory_with_no_entries_is_refused(text: str) -> None:
    assert "lists no entries" in refusal(text, "x.csv" if "key" in text else "x.txt")


def test_entries_come_sorted_by_code_point() -> None:
    keys = ["b", "a", "\uffff", "\U0001f600", "Z", "é", "a/b", "a b"]
    text = "".join(f"{D1}  {key}\n" for key in keys)
    assert [e.key for e in parse(text)] == sorted(keys)
    # code-point order, not UTF-16's (where U+1F600 sorts before U+FFFF)
    assert [e.key for e in parse(text)][-2:] == ["\uffff", "\U0001f600"]


def test_read_inventory_names_the_file_it_cannot_read(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.txt", tmp_path):
        with pytest.raises(InventoryError, match="cannot read inventory") as caught:
            read_inventory(path)
        assert str(path) in str(caught.value)
        assert isinstance(caught.value, FerrymanError)


def test_memory_follows_the_entries_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "SHA256SUMS"
    comment = b"#" + b"c" * 60_000 + b"\n"
    with path.open("wb") as out:
        out.write(f"{D1}  first\n".encode())
        out.write(comment * 400)  # 24 MB of comments
        out.write(f"{D2}  last\n".encode())
    tracemalloc.start()
    try:
        entries = read_inventory(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e.key for e in entries] == ["first", "last"]
    assert peak < 1_000_000


# --- round trips of random entries -----------------------------------------------

KEY_CHARS = 'ab/\\\n\r%* \t,"é#.\U0001f600'
keys = st.text(KEY_CHARS, min_size=1, max_size=8).filter(lambda k: _valid(k))
digests = st.binary(min_size=1, max_size=4)


def _valid(key: str) -> bool:
    try:
        check_path(key)
    except ValueError:
        return False
    return True


def coreutils_line(key: str, digest: str, mode: str) -> str:
    if any(c in key for c in "\\\n\r"):
        escaped = key.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest} {mode}{escaped}\n"
    return f"{digest} {mode}{key}\n"


@given(st.dictionaries(keys, digests, min_size=1), st.sampled_from([" ", "*"]))
def test_sums_round_trip(entries: dict[str, bytes], mode: str) -> None:
    text = "".join(coreutils_line(k, sha256(v), mode) for k, v in entries.items())
    assert parse(text) == [Expected(k, None, sha256(entries[k])) for k in sorted(entries)]


@given(st.dictionaries(keys.filter(lambda k: k[0] not in " \t"), digests, min_size=1))
def test_bagit_round_trip(entries: dict[str, bytes]) -> None:
    def encode(key: str) -> str:
        return key.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    text = "".join(f"{md5(v)}  {encode(k)}\r\n" for k, v in entries.items())
    got = parse(text, "manifest-md5.txt")
    assert got == [Expected(k, None, None, md5(entries[k])) for k in sorted(entries)]


sizes = st.none() | st.integers(0, 2**63 - 1)
maybe = st.none() | digests


@given(st.dictionaries(keys, st.tuples(sizes, maybe, maybe), min_size=1))
def test_csv_round_trip(entries: dict[str, tuple[int | None, bytes | None, bytes | None]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)  # CRLF: so it quotes a key holding a CR too
    writer.writerow(["md5", "key", "note", "size", "sha256"])
    expected = []
    for key in sorted(entries):
        size, a, b = entries[key]
        sha, mdf = (sha256(a) if a else None), (md5(b) if b else None)
        writer.writerow([mdf or "", key, "x", "" if size is None else size, sha or ""])
        expected.append(Expected(key, size, sha, mdf))
    assert parse(out.getvalue(), "list.csv") == expected


@given(
    st.dictionaries(keys.filter(lambda k: not any(c in k for c in "\t\n\r")), digests, min_size=1)
)
def test_tsv_round_trip(entries: dict[str, bytes]) -> None:
    text = "path\tsize\tsha256\n" + "".join(
        f"{k}\t{len(v)}\t{sha256(v)}\n" for k, v in entries.items()
    )
    got = parse(text, "list.tsv")
    assert got == [Expected(k, len(entries[k]), sha256(entries[k])) for k in sorted(entries)]

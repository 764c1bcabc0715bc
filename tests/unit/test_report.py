"""audit/report.py and htmlreport.py: the JSON schema, CSV quoting, the HTML page's escaping
and bounds, the text summary, and writing a report whole or not at all.

The browser's view of the HTML page is tests/integration/test_report_browser.py.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.audit.htmlreport import ROWS_PER_GROUP, render_html
from ferryman.audit.model import KINDS, MISSING, AuditResult, Finding, StoreTally
from ferryman.audit.report import (
    render_csv,
    render_json,
    render_text,
    report_format,
    write_report,
)
from ferryman.errors import ConfigError
from tests.auditresults import (
    BACKUP,
    LOCAL,
    REPLICA,
    clean_result,
    counts_by_store_and_kind,
    realistic_result,
)
from tests.mounts import tmpfs

FINDING_KEYS = [
    "key",
    "store",
    "kind",
    "expected_size",
    "actual_size",
    "expected_sha256",
    "actual_sha256",
]

# Any key a store might list: every code point, lone surrogates (undecodable file names) too.
keys = st.text(st.characters(), min_size=1, max_size=40)


def result_with_keys(names: list[str], store: str = LOCAL) -> AuditResult:
    findings = [
        Finding(name, store, KINDS[i % len(KINDS)], expected_size=i, actual_sha256="ab" * 32)
        for i, name in enumerate(names)
    ]
    tally = StoreTally(store)
    for finding in findings:
        tally.add(finding.kind)
    return AuditResult(
        run_id="run",
        started="2025-01-01T00:00:00Z",
        finished="2025-01-01T00:01:00Z",
        deep=False,
        stores=[store],
        expected=len(names),
        tallies={store: tally},
        findings=findings,
    )


# -- JSON -------------------------------------------------------------------------------


def test_json_has_exactly_the_schema() -> None:
    result = realistic_result()
    document = json.loads(render_json(result))
    assert list(document) == ["run", "stores", "expected", "summary", "incomplete", "findings"]
    assert document["run"] == {
        "id": "20250314T101500Z-7f3a",
        "started": "2025-03-14T10:15:00Z",
        "finished": "2025-03-14T11:02:41Z",
        "deep": True,
        "complete": False,
        "resumed": True,
    }
    assert document["stores"] == [LOCAL, BACKUP, REPLICA]
    assert document["expected"] == 1_483
    counted = counts_by_store_and_kind(result)
    for store in result.stores:
        assert list(document["summary"][store]) == ["ok", *KINDS]
        for kind in KINDS:
            assert document["summary"][store][kind] == counted[store, kind]
    assert document["summary"][LOCAL]["ok"] == 1_480
    assert document["incomplete"] == {REPLICA: result.tallies[REPLICA].error}
    assert len(document["findings"]) == len(result.findings)
    for record, finding in zip(document["findings"], result.findings, strict=True):
        assert list(record) == FINDING_KEYS
        assert record == {name: getattr(finding, name) for name in FINDING_KEYS}
    missing = document["findings"][0]
    assert missing["actual_size"] is None and missing["actual_sha256"] is None


def test_json_of_a_clean_run_and_of_an_unfinished_one() -> None:
    document = json.loads(render_json(clean_result()))
    assert document["run"]["complete"] is True
    assert document["findings"] == []
    assert document["incomplete"] == {}
    assert document["summary"] == {LOCAL: {"ok": 42, **dict.fromkeys(KINDS, 0)}}

    unfinished = realistic_result(finished=False)
    unfinished.tallies.pop(BACKUP)  # never reached
    document = json.loads(render_json(unfinished))
    assert document["run"]["finished"] is None
    assert document["run"]["complete"] is False
    assert document["summary"][BACKUP] == {"ok": 0, **dict.fromkeys(KINDS, 0)}
    assert document["incomplete"][BACKUP] == "not audited"


def test_json_puts_one_finding_on_each_line() -> None:
    text = render_json(realistic_result())
    lines = text.splitlines()
    first = lines.index(' "findings": [')
    rows = lines[first + 1 : lines.index(" ]", first)]
    assert [json.loads(row.rstrip(",")) for row in rows] == json.loads(text)["findings"]


@settings(max_examples=200)
@given(st.lists(keys, min_size=1, max_size=8))
def test_json_gives_back_every_key_exactly(names: list[str]) -> None:
    text = render_json(result_with_keys(names))
    text.encode("utf-8")  # always valid UTF-8, whatever the names
    assert [f["key"] for f in json.loads(text)["findings"]] == names


# -- CSV --------------------------------------------------------------------------------


def test_csv_quotes_by_rfc_4180() -> None:
    result = realistic_result()
    text = render_csv(result)
    assert text.startswith(
        "key,store,kind,expected_size,actual_size,expected_sha256,actual_sha256,detail\r\n"
    )
    assert '"a""b",/srv/mirror,zero_byte,2048,0,,,\r\n' in text
    assert '"comma, ""quoted""\nand a newline.txt",s3://replica-eu/mirror/,missing,' in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == 1 + len(result.findings)
    assert [row[0] for row in rows[1:]] == [f.key for f in result.findings]
    unreadable = next(row for row in rows if row[2] == "unreadable")
    assert unreadable[3:] == ["", "77", "", "", "read failed: EIO"]


@settings(max_examples=200)
@given(st.lists(keys, min_size=1, max_size=8))
def test_csv_gives_back_every_key(names: list[str]) -> None:
    text = render_csv(result_with_keys(names))
    text.encode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))[1:]
    back = [row[0] for row in rows]
    # Exactly, except that an undecodable byte is written as its escape.
    assert back == [n.encode("utf-8", "backslashreplace").decode() for n in names]


# -- HTML -------------------------------------------------------------------------------

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "span",
    "code", "section", "dl", "dt", "dd", "div", "figure", "figcaption", "svg", "line", "g",
    "text", "rect", "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "details",
    "summary", "label", "select", "option", "input", "footer", "script",
}  # fmt: skip


class Structure(HTMLParser):
    """Every tag and attribute of a page, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text: list[str] = []
        self.raw: dict[str, list[str]] = {"style": [], "script": []}
        self._inside: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag in self.raw:
            self._inside = tag

    def handle_endtag(self, tag: str) -> None:
        self._inside = None

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.raw[self._inside].append(data)
        else:
            self.text.append(data)


def structure(page: str) -> Structure:
    parser = Structure()
    parser.feed(page)
    parser.close()
    return parser


def test_html_escapes_every_hostile_name() -> None:
    page = render_html(realistic_result())
    found = structure(page)
    assert set(found.tags) <= ALLOWED_TAGS
    assert found.tags.count("script") == 1
    assert not [name for name in found.attributes if name.startswith("on")]
    text = "".join(found.text)
    for name in ("<script>alert(1)</script>", 'a"b', "naïve/日本語 файл.txt"):
        assert name in text  # shown as text, exactly
    assert "escape\\x1b[2J\\x1b[31mred" in text  # control characters as escapes
    assert "evil\\u202etxt.exe" in text  # and a right-to-left override
    assert "\x1b" not in page and "\u202e" not in page
    assert "s3://backup/mirror&amp;old" in page


@settings(max_examples=150, deadline=None)
@given(st.lists(keys, min_size=1, max_size=6), keys)
def test_html_structure_does_not_depend_on_the_names(names: list[str], store: str) -> None:
    plain = structure(render_html(result_with_keys([f"k{i}" for i in range(len(names))], "s")))
    hostile_page = render_html(result_with_keys(names, store))
    hostile_page.encode("utf-8")
    hostile = structure(hostile_page)
    assert hostile.tags == plain.tags
    assert hostile.attributes == plain.attributes


def test_html_policy_allows_only_its_own_style_and_script() -> None:
    page = render_html(realistic_result())
    policy = re.search(r'http-equiv=Content-Security-Policy content="([^"]+)"', page)
    assert policy
    assert policy[1].startswith("default-src 'none';")
    found = structure(page)
    for kind, directive in (("style", "style-src"), ("script", "script-src")):
        (source,) = found.raw[kind]
        digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy[1]
    assert not {"src", "href", "xlink:href", "action", "formaction", "srcset"} & found.attributes
    clean = render_html(clean_result()).replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in clean and "https://" not in clean and "url(" not in clean


def test_html_of_a_clean_run() -> None:
    page = render_html(clean_result())
    assert "complete: every store was read whole" in page
    assert "<h2>Findings</h2>\n<p>None.</p>" in page
    assert page.count('data-count="0"') == len(KINDS)


def test_html_of_100000_findings_shows_a_bounded_page() -> None:
    store = "s3://big/"
    findings = [Finding(f"k/{i:06d}", store, MISSING, expected_size=i) for i in range(100_000)]
    findings += [Finding(f"u/{i}", LOCAL, "unexpected", actual_size=1) for i in range(3)]
    tallies = {store: StoreTally(store), LOCAL: StoreTally(LOCAL)}
    for finding in findings:
        tallies[finding.store].add(finding.kind)
    result = AuditResult("big", "t0", "t1", False, [store, LOCAL], 100_000, tallies, findings)
    page = render_html(result)
    assert len(page) < 1_000_000
    assert page.count("<tr data-store=") == ROWS_PER_GROUP + 3
    assert f"the first {ROWS_PER_GROUP:,} of 100,000 are shown" in page
    assert 'data-kind="missing" data-count="100000"' in page
    assert "k/000999" in page and "k/001000" not in page


# -- text -------------------------------------------------------------------------------


def test_text_summary_columns_line_up() -> None:
    text = render_text(realistic_result())
    lines = text.splitlines()
    assert lines[0].startswith("audit 20250314T101500Z-7f3a: 1,483 keys expected, deep")
    assert "INCOMPLETE" in lines[0]
    table = lines[2:7]
    header, rule, *rows = table
    assert header.split() == ["store", "ok", *KINDS, "complete"]
    # Numbers end where their heading ends; every row has its column at the same place.
    for name in ("ok", *KINDS):
        end = header.index(name) + len(name)
        for row in rows:
            assert row[end - 1].isdigit() and (end == len(row) or row[end] == " "), (name, row)
    assert rows[0].startswith("/srv/mirror ") and rows[0].endswith("yes")
    assert rows[2].endswith("no: listing failed: AccessDenied (s3://replica-eu/mirror/<b>)")
    assert set(rule) <= {"-", " "}


def test_text_summary_names_a_few_examples_of_each_kind() -> None:
    text = render_text(realistic_result())
    kinds = {line.split()[0]: line for line in text.splitlines()[8:]}
    assert list(kinds) == list(KINDS)
    assert kinds["missing"].split()[1] == "15"
    assert kinds["missing"].endswith(", ...")  # 15 found, three named
    assert "<script>alert(1)</script> (/srv/mirror)" in kinds["missing"]
    assert 'a"b (/srv/mirror)' in kinds["zero_byte"]


@given(st.lists(keys, min_size=1, max_size=6), keys)
def test_text_summary_never_carries_a_control_character(names: list[str], store: str) -> None:
    text = render_text(result_with_keys(names, store))
    for char in text.replace("\n", ""):
        assert char.isprintable(), repr(char)


def test_text_summary_of_a_clean_run_is_ascii() -> None:
    text = render_text(clean_result())
    assert text.isascii()
    assert "0 findings" in text.splitlines()[0] and "complete" in text.splitlines()[0]
    assert len(text.splitlines()) == 5  # the run, a blank, header, rule, one store


# -- writing ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["r.json", "r.csv", "r.html", "R.JSON"])
def test_write_report_by_extension(tmp_path: Path, name: str) -> None:
    result = realistic_result()
    path = tmp_path / name
    path.write_text("an older report")
    write_report(path, result)
    render = {".json": render_json, ".csv": render_csv, ".html": render_html}
    assert path.read_bytes() == render[path.suffix.lower()](result).encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize(("name", "named"), [("r.txt", "'.txt'"), ("report", "no extension")])
def test_write_report_refuses_other_extensions(tmp_path: Path, name: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        write_report(tmp_path / name, realistic_result())
    with pytest.raises(ConfigError, match=r"use \.json, \.csv, \.html"):
        report_format(name)
    assert list(tmp_path.iterdir()) == []


def test_write_report_into_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot write the report .*No such file"):
        write_report(tmp_path / "nowhere" / "r.json", realistic_result())


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, unmounted at the end (skipped where mounting is refused)."""
    with tmpfs(tmp_path / "small", "64k") as mount:
        yield mount


def test_a_full_disk_keeps_the_old_report_whole(small_fs: Path) -> None:
    path = small_fs / "audit.json"
    write_report(path, clean_result())
    old = path.read_bytes()
    names = [f"some/rather/long/key/name/{i:08d}.bin" for i in range(5_000)]
    with pytest.raises(ConfigError, match=r"cannot write the report .*No space left"):
        write_report(path, result_with_keys(names))
    assert path.read_bytes() == old
    assert [p.name for p in small_fs.iterdir()] == ["audit.json"]

"""Inventory files: what should be stored, for files ferryman never wrote.

`read_inventory(path)` returns the `Expected` entries of one file, sorted by
key in code-point order (the order `compare` walks). Three formats:

- **sha256sum / md5sum output** (also `--tag` and `cksum -a sha256|md5`):
  `<hex>  <path>`, `<hex> *<path>` (binary mode), `<hex> <path>` (the
  one-space form of BSD `-r`; as in coreutils a file may not mix it with the
  two-character form), `SHA256 (<path>) = <hex>`. Read as coreutils 9 reads
  them: `#` lines and blank lines are skipped, one CR before the LF is
  dropped, and a line starting with `\\` has an escaped path (`\\\\`, `\\n`,
  `\\r`; any other escape is refused). The digest's length says which it is:
  64 hex digits sha256, 32 md5.
- **BagIt payload manifests** (RFC 8493), recognised by their file name
  `manifest-sha256.txt` or `manifest-md5.txt` (also `tagmanifest-`):
  `<hex> <spaces or tabs> <path>`, lines ended by LF, CR or CRLF, paths
  relative to the bag (`data/` kept as written) with `%0A`, `%0D` and `%25`
  decoded (in one pass, case-insensitively). A `%` that starts none of these
  is kept as written: writers older than the rule never encoded it.
- **CSV or TSV with a header row** naming `key` (or `path`), `size`, and
  `sha256` or `md5` (any order, any case; other columns are ignored), by
  the name `.csv`, `.tsv` or `.tab`, or by the content: a first line that
  is not a checksum line is a header, tab-separated if it holds a tab. An
  empty cell is an unknown value; blank lines, and `#` lines before the
  header, are skipped. CSV is quoted as RFC 4180 (a key may hold a comma or
  a newline); TSV cells are taken as written. A key cell is the key exactly
  (spaces around it are part of it); sizes and digests may be padded.

Every key is checked with the catalog's rules (`catalog.schema.check_path`):
no absolute path, no empty, `.` or `..` segment, no NUL. A bad line is never
skipped: the whole file is refused with an `InventoryError` naming the file
and the line. So is a key listed twice with different values (the same
values twice are fine).

The file is read in chunks and decoded line by line (UTF-8, a leading BOM
dropped), so memory follows the number of entries, not the size of the file.
A line is at most `max_line` bytes (64 KiB): the longest key any source holds
is 4 KiB, three times that escaped, so a longer line is not an inventory.
"""

from __future__ import annotations

import csv
import itertools
import os
import re
from collections.abc import Iterator
from typing import Literal, Protocol

from ferryman.audit.model import Expected
from ferryman.catalog.schema import check_path
from ferryman.errors import FerrymanError

MAX_LINE = 64 * 1024
_CHUNK = 64 * 1024
_INT64_MAX = 2**63 - 1

_ALGORITHM_BY_LENGTH = {64: "sha256", 32: "md5"}
_LENGTH_BY_ALGORITHM = {"sha256": 64, "md5": 32}
_OTHER_DIGESTS = {40: "sha1", 56: "sha224", 96: "sha384", 128: "sha512"}
_HEX = re.compile(r"[0-9A-Fa-f]+")
_SIZE = re.compile(r"[0-9]+")

_BAGIT_NAME = re.compile(r"(?:tag)?manifest-([A-Za-z0-9]+)\.txt")
_BAGIT_LINE = re.compile(r"[ \t]*([^ \t]+)[ \t]+([^ \t].*)", re.DOTALL)
_BAGIT_ESCAPE = re.compile(r"%(0[AaDd]|25)")
_TAGGED = re.compile(r"(SHA256|MD5) ?\((.*)\)[ \t]*=[ \t]*([^ \t]*)", re.DOTALL)
_ESCAPED_NAME = re.compile(r"(?:[^\\]|\\[\\nr])*", re.DOTALL)
_ESCAPE = re.compile(r"\\([\\nr])")
_UNESCAPED = {"\\": "\\", "n": "\n", "r": "\r"}
_CHECKSUM_START = re.compile(r"[ \t]*\\?(?:[0-9A-Fa-f]{8,}[ \t]|(?:SHA256|MD5) ?\()")

Line = tuple[int, str]  # (1-based line number, text without its line ending)


class Readable(Protocol):
    """Where an inventory is read from: a binary file, or anything read like one."""

    def read(self, size: int = -1, /) -> bytes: ...


class InventoryError(FerrymanError):
    """An inventory that cannot be used: unreadable, or a line refused (named by number)."""


def read_inventory(path: str | os.PathLike[str], *, max_line: int = MAX_LINE) -> list[Expected]:
    """The entries of the inventory file at `path`, sorted by key."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            return parse_inventory(stream, name, max_line=max_line)
    except OSError as error:
        raise InventoryError(f"cannot read inventory {name}: {error.strerror or error}") from None


def parse_inventory(stream: Readable, name: str, *, max_line: int = MAX_LINE) -> list[Expected]:
    """The entries of an inventory read from `stream`; `name` (its file name) picks the
    format where it tells, and names the file in errors."""
    entries = _Entries(name)
    base = os.path.basename(name)
    bagit = _BAGIT_NAME.fullmatch(base)
    if bagit:
        algorithm = bagit.group(1).lower()
        if algorithm not in _LENGTH_BY_ALGORITHM:
            raise InventoryError(
                f"{name}: a BagIt manifest of {algorithm}; ferryman reads sha256 and md5 manifests"
            )
        _read_bagit(_lines(stream, name, max_line, cr_ends_line=True), algorithm, entries)
        return entries.sorted()
    lines = _lines(stream, name, max_line, cr_ends_line=False)
    first = next(
        ((n, t) for n, t in lines if t.rstrip("\r").strip(" \t") and not t.startswith("#")), None
    )
    if first is None:
        raise InventoryError(f"{name}: lists no entries")
    rest = itertools.chain([first], lines)
    suffix = os.path.splitext(base)[1].lower()
    if suffix == ".csv":
        _read_table(rest, ",", entries)
    elif suffix in (".tsv", ".tab"):
        _read_table(rest, "\t", entries)
    elif _CHECKSUM_START.match(first[1]):
        _read_sums(rest, entries)
    else:
        _read_table(rest, "\t" if "\t" in first[1] else ",", entries)
    return entries.sorted()


# --- sha256sum / md5sum ------------------------------------------------------


def _read_sums(lines: Iterator[Line], entries: _Entries) -> None:
    form: list[str] = []  # the first line's form ("standard" or "reversed"), for the rest
    for number, raw in lines:
        text = raw[:-1] if raw.endswith("\r") else raw
        if not text.strip(" \t") or text.startswith("#"):
            continue
        where = entries.where(number)
        key, algorithm, digest = _sum_line(text, form, where)
        entries.add(number, key, None, *_fields(algorithm, digest))


def _sum_line(text: str, form: list[str], where: str) -> tuple[str, str, str]:
    """(path, algorithm, digest) of one line, as coreutils 9 splits it."""
    start = len(text) - len(text.lstrip(" \t"))
    escaped = text.startswith("\\", start)
    start += escaped
    tagged = _TAGGED.fullmatch(text, start)
    if tagged:
        algorithm = tagged.group(1).lower()
        digest = _digest(tagged.group(3), where, algorithm)
        name = tagged.group(2)
    else:
        end = start
        while end < len(text) and text[end] not in " \t":
            end += 1
        if end == len(text):
            raise InventoryError(f"{where}: no path after the digest")
        digest = _digest(text[start:end], where)
        algorithm = _ALGORITHM_BY_LENGTH[len(digest)]
        rest = text[end + 1 :]
        if not rest:
            raise InventoryError(f"{where}: no path after the digest")
        if len(rest) == 1 or rest[0] not in " *":
            # "<hex> <path>": coreutils refuses it in a file of "<hex>  <path>" lines
            # (and the reverse), so a path starting with a space is never misread.
            if form == ["standard"]:
                raise InventoryError(f"{where}: one space after the digest, lines above have two")
            form[:] = ["reversed"]
            name = rest
        elif form == ["reversed"]:
            name = rest
        else:
            form[:] = ["standard"]
            name = rest[1:]
    if escaped:
        if not _ESCAPED_NAME.fullmatch(name):
            raise InventoryError(
                f"{where}: bad escape in path {_show(name)} (only \\\\, \\n and \\r are escapes)"
            )
        name = _ESCAPE.sub(lambda m: _UNESCAPED[m.group(1)], name)
    return name, algorithm, digest


# --- BagIt -------------------------------------------------------------------


def _read_bagit(lines: Iterator[Line], algorithm: str, entries: _Entries) -> None:
    for number, text in lines:
        if not text.strip(" \t"):
            continue
        where = entries.where(number)
        match = _BAGIT_LINE.fullmatch(text)
        if not match:
            raise InventoryError(f"{where}: not '<digest> <path>': {_show(text)}")
        digest = _digest(match.group(1), where, algorithm)
        key = _BAGIT_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), match.group(2))
        entries.add(number, key, None, *_fields(algorithm, digest))


# --- CSV / TSV -----------------------------------------------------------------

_KEY_COLUMNS = ("key", "path")
_COLUMNS = ("key", "path", "size", "sha256", "md5")


def _read_table(lines: Iterator[Line], delimiter: str, entries: _Entries) -> None:
    """The rows of a CSV or TSV table: a header, then one entry per row.

    A row is read once per entry of every audit given this inventory, so the cells
    of an ordinary row (a plain size, a digest of the right length) are taken as they
    are; any other cell goes through the checks that word the error."""
    first = next(lines, None)
    if first is None:
        return
    start = first[0]  # the line numbers run on from here: csv's line_num counts from it
    text = (line + "\n" for _, line in itertools.chain([first], lines))
    # TSV has no quoting: a cell is what is written between the tabs.
    quoting: Literal[0, 3] = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # TSV: none
    rows = csv.reader(text, delimiter=delimiter, quoting=quoting, strict=True)
    columns: dict[str, int] | None = None
    width = size_at = sha256_at = md5_at = key_at = 0
    while True:
        number = start + rows.line_num  # the row's first line
        try:
            row = next(rows, None)
        except csv.Error as error:
            raise InventoryError(f"{entries.where(number)}: {error}") from None
        if row is None:
            return
        if not row or row == [""]:
            continue
        if columns is None:
            columns, width = _header(row, entries.where(number)), len(row)
            key_at, size_at = columns["key"], columns["size"]
            sha256_at, md5_at = columns.get("sha256", -1), columns.get("md5", -1)
            continue
        if len(row) != width:
            raise InventoryError(
                f"{entries.where(number)}: {len(row)} fields, the header has {width}"
            )
        cell = row[size_at]
        if cell.isdigit() and cell.isascii() and len(cell) < 19:  # < 2**63 - 1
            size: int | None = int(cell)
        else:
            size = _size(cell.strip(" \t"), entries.where(number))
        sha256 = md5 = None
        if sha256_at >= 0:
            cell = row[sha256_at]
            if len(cell) == 64 and _HEX.fullmatch(cell):
                sha256 = cell.lower()
            else:
                sha256 = _cell_digest(row, columns, "sha256", entries.where(number))
        if md5_at >= 0:
            md5 = _cell_digest(row, columns, "md5", entries.where(number))
        entries.add(number, row[key_at], size, sha256, md5)


def _header(row: list[str], where: str) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, cell in enumerate(row):
        name = cell.strip(" \t").lower()
        if name in _COLUMNS:
            if name in columns:
                raise InventoryError(f"{where}: the header names {name!r} twice")
            columns[name] = index
    keys = [c for c in _KEY_COLUMNS if c in columns]
    if len(keys) != 1:
        raise InventoryError(
            f"{where}: not a checksum line, and as a CSV or TSV header it must name one "
            f"key column, 'key' or 'path' (it names {len(keys)}): {_show(','.join(row))}"
        )
    columns["key"] = columns.pop(keys[0])
    if "size" not in columns or not ("sha256" in columns or "md5" in columns):
        raise InventoryError(
            f"{where}: the header must name 'size' and 'sha256' or 'md5' "
            f"(an empty cell is an unknown value): {_show(','.join(row))}"
        )
    return columns


def _size(cell: str, where: str) -> int | None:
    if not cell:
        return None
    if not _SIZE.fullmatch(cell) or int(cell) > _INT64_MAX:
        raise InventoryError(f"{where}: size {_show(cell)} is not a whole number of bytes")
    return int(cell)


def _cell_digest(row: list[str], columns: dict[str, int], algorithm: str, where: str) -> str | None:
    if algorithm not in columns:
        return None
    cell = row[columns[algorithm]].strip(" \t")
    return _digest(cell, where, algorithm) if cell else None


# --- shared --------------------------------------------------------------------


def _digest(text: str, where: str, algorithm: str | None = None) -> str:
    """Lower-case hex of the right length: the algorithm's, or that of sha256 or md5."""
    if not _HEX.fullmatch(text):
        raise InventoryError(f"{where}: digest {_show(text)} is not hexadecimal")
    if algorithm is not None and len(text) != _LENGTH_BY_ALGORITHM[algorithm]:
        raise InventoryError(
            f"{where}: digest of {len(text)} hex digits, "
            f"a {algorithm} digest has {_LENGTH_BY_ALGORITHM[algorithm]}"
        )
    if len(text) not in _ALGORITHM_BY_LENGTH:
        other = _OTHER_DIGESTS.get(len(text))
        raise InventoryError(
            f"{where}: digest of {len(text)} hex digits{f' ({other}?)' if other else ''}; "
            "ferryman reads sha256 (64) and md5 (32)"
        )
    return text.lower()


class _Entries:
    """The entries read so far, by key; a key listed twice must agree with itself."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.by_key: dict[str, Expected] = {}

    def where(self, number: int) -> str:
        return f"{self.name}, line {number}"

    def add(
        self, number: int, key: str, size: int | None, sha256: str | None, md5: str | None
    ) -> None:
        """The entry on line `number`."""
        try:
            check_path(key)
        except ValueError:
            raise InventoryError(f"{self.where(number)}: key {_show(key)} {_why(key)}") from None
        entry = Expected(key, size, sha256, md5)
        known = self.by_key.setdefault(key, entry)
        if known is not entry and known != entry:
            raise InventoryError(
                f"{self.where(number)}: key {_show(key)} is listed again with other values "
                f"({_values(entry)}; before: {_values(known)})"
            )

    def sorted(self) -> list[Expected]:
        if not self.by_key:
            raise InventoryError(f"{self.name}: lists no entries")
        return [self.by_key[key] for key in sorted(self.by_key)]


def _fields(algorithm: str, digest: str) -> tuple[str | None, str | None]:
    """(sha256, md5) with `digest` in its place."""
    return (digest, None) if algorithm == "sha256" else (None, digest)


def _why(key: str) -> str:
    """Why check_path refused `key`, in words for an inventory's author."""
    if not key:
        return "is empty"
    if key.startswith("/"):
        return "is absolute (keys are relative to the store)"
    if "\x00" in key:
        return "holds a NUL"
    if key.startswith("./"):
        return "starts with './' (write keys relative to the store, as 'a/b', not './a/b')"
    if any(s in ("", ".", "..") for s in key.split("/")):
        return "has an empty, '.' or '..' segment (a key may not leave or alias its store)"
    return "is not a valid key"


def _values(entry: Expected) -> str:
    values = (("size", entry.size), ("sha256", entry.sha256), ("md5", entry.md5))
    return ", ".join(f"{name} {value}" for name, value in values if value is not None) or "none"


def _show(text: str, limit: int = 80) -> str:
    """`text` quoted for a message, cut short: a message never echoes a huge line whole."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _lines(stream: Readable, name: str, max_line: int, *, cr_ends_line: bool) -> Iterator[Line]:
    """Numbered lines of `stream`, decoded, without their endings (LF; with `cr_ends_line`
    also CR and CRLF), read in chunks so that no line longer than `max_line` is held."""
    if cr_ends_line:
        yield from _lines_any_ending(stream, name, max_line)
        return
    number = 0
    pending = b""
    while chunk := stream.read(_CHUNK):
        *whole, pending = (pending + chunk).split(b"\n")
        for line in whole:
            number += 1
            yield number, _decode(line, name, number, max_line)
        _check_pending(pending, name, number, max_line)
    if pending:
        yield number + 1, _decode(pending, name, number + 1, max_line)


def _lines_any_ending(stream: Readable, name: str, max_line: int) -> Iterator[Line]:
    ending = re.compile(rb"\r\n|\r|\n")
    number = 0
    pending = b""
    while True:
        chunk = stream.read(_CHUNK)
        data = pending + chunk
        start = 0
        for match in ending.finditer(data):
            if chunk and match.end() == len(data) and match.group() == b"\r":
                break  # maybe the CR of a CRLF cut by the chunk: wait for the next byte
            number += 1
            yield number, _decode(data[start : match.start()], name, number, max_line)
            start = match.end()
        pending = data[start:]
        _check_pending(pending, name, number, max_line)
        if not chunk:
            if pending:
                yield number + 1, _decode(pending, name, number + 1, max_line)
            return


def _check_pending(pending: bytes, name: str, number: int, max_line: int) -> None:
    """The start of the next line, kept until its end is read, must not outgrow a line."""
    if len(pending) > max_line:
        raise InventoryError(
            f"{name}, line {number + 1}: longer than {max_line} bytes (not an inventory line)"
        )


def _decode(line: bytes, name: str, number: int, max_line: int) -> str:
    if len(line) > max_line:
        raise InventoryError(
            f"{name}, line {number}: longer than {max_line} bytes (not an inventory line)"
        )
    if number == 1 and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InventoryError(
            f"{name}, line {number}: not UTF-8 (byte {line[error.start]:#04x} "
            f"at offset {error.start}); inventories are read as UTF-8"
        ) from None

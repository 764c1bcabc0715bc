"""The Root: what a URL path means under SOURCE, decided in one place.

The decision is pure and checked as a table and with Hypothesis; the local
Root is checked on a real directory tree with symlinks that lead out of it,
into a dot-name and into the state directory.
"""

from __future__ import annotations

import ast
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.app.paths import resolve
from ferryman.app.root import (
    MISSING,
    Kind,
    Meaning,
    OpenedArchive,
    OpenedDirectory,
    OpenedFile,
    Redirect,
    Root,
    decide,
    slash_form,
)
from ferryman.config import Config
from ferryman.errors import HttpError
from tests.builders import request

APP = Path(__file__).resolve().parents[2] / "src" / "ferryman" / "app"


# -- the decision ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind", "archives", "meaning"),
    [
        (b"/", Kind.DIRECTORY, True, Meaning.DIRECTORY),
        (b"/d/", Kind.DIRECTORY, True, Meaning.DIRECTORY),
        (b"/d", Kind.DIRECTORY, True, Meaning.SLASH_FORM),
        (b"/d", Kind.DIRECTORY, False, Meaning.SLASH_FORM),
        (b"/f", Kind.FILE, True, Meaning.FILE),
        (b"/f/", Kind.FILE, True, Meaning.NOT_FOUND),
        (b"/a.tar/", Kind.FILE, True, Meaning.ARCHIVE),
        (b"/a.TGZ/", Kind.FILE, True, Meaning.ARCHIVE),
        (b"/a.tar/", Kind.FILE, False, Meaning.NOT_FOUND),  # archives do not nest
        (b"/a.tar", Kind.FILE, True, Meaning.FILE),  # the archive itself
        (b"/fifo", Kind.OTHER, True, Meaning.NOT_FOUND),
        (b"/x", Kind.MISSING, True, Meaning.NOT_FOUND),
        (b"/a.tar/m", Kind.MISSING, True, Meaning.IN_ARCHIVE),
        (b"/d/a.tar.gz/d/m", Kind.MISSING, True, Meaning.IN_ARCHIVE),
        (b"/a.tar/m", Kind.MISSING, False, Meaning.NOT_FOUND),
        (b"/d/a.tar", Kind.MISSING, True, Meaning.NOT_FOUND),  # the last segment is no archive
    ],
)
def test_what_a_path_asks_for(raw: bytes, kind: Kind, archives: bool, meaning: Meaning) -> None:
    assert decide(resolve(raw), kind, archives=archives) is meaning


# A segment a client may name: any text but "/" and NUL, not starting with "."
segment = st.text(min_size=1, max_size=12).filter(
    lambda s: "/" not in s and "\0" not in s and not s.startswith(".")
)
# A query as it comes on the request line: visible ASCII and anything percent-encoded.
query = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20).filter(
    lambda q: "#" not in q
)


def encoded(segments: list[str]) -> bytes:
    return ("/" + "/".join(quote(os.fsencode(s), safe="") for s in segments)).encode()


@given(st.lists(segment, min_size=1, max_size=5), query, st.booleans())
def test_a_directory_without_its_slash_always_redirects_keeping_the_query(
    segments: list[str], asked: str, archives: bool
) -> None:
    raw = encoded(segments)
    path = resolve(raw)
    assert decide(path, Kind.DIRECTORY, archives=archives) is Meaning.SLASH_FORM
    target = raw + (b"?" + asked.encode() if asked else b"")
    response = slash_form(request("GET", target.decode()), path)
    assert response.status == 301
    location = dict(response.headers)["Location"]
    assert not location.startswith("//")  # never a URL of another host
    parts = urlsplit(location)
    assert parts.query == asked  # as it came, byte for byte
    moved = resolve(parts.path.encode())
    assert moved.segments == path.segments and moved.trailing_slash
    assert decide(moved, Kind.DIRECTORY, archives=archives) is Meaning.DIRECTORY


# -- a local root ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/ with files, a directory, an archive and symlinks out, into a dot-name and
    into the state directory; outside/ beside it."""
    base = tmp_path_factory.mktemp("tree")
    outside, root = base / "outside", base / "root"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "a" / "d").mkdir(parents=True)
    (root / "a" / "b.txt").write_text("b")
    (root / "a" / "index.html").write_text("<h1>a</h1>")
    (root / "a" / "d" / "e.txt").write_text("e")
    with tarfile.open(root / "c.tar", "w") as tar:
        info = tarfile.TarInfo("m")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"m"))
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.txt").write_text("x")
    (root / "state").mkdir()
    (root / "state" / "s.txt").write_text("s")
    (root / "out").symlink_to(outside)
    (root / "out.txt").symlink_to(outside / "secret.txt")
    (root / "dot").symlink_to(root / ".hidden")
    (root / "st").symlink_to(root / "state")
    (root / "a" / "up").symlink_to("../..")
    (root / "i" / "index.html").mkdir(parents=True)  # an index that is no file
    (root / "dir.tar").mkdir()  # a directory named like an archive
    (root / "dir.tar" / "f").write_text("f")
    return base


@pytest.fixture(scope="module")
def local_root(tree: Path) -> Iterator[Root]:
    config = Config(source=str(tree / "root"), state_dir=str(tree / "root" / "state"))
    root = Root(config)
    yield root
    root.close()


def opened_fd(found: object) -> int | None:
    if isinstance(found, OpenedFile | OpenedArchive):
        return found.opened.fd
    if isinstance(found, OpenedDirectory):
        return found.fd
    return None


def refusal(root: Root, raw: bytes) -> int:
    """The status a path is refused with: 404 for MISSING (a miss is a value), or the
    status of the error raised; fails when the path is served."""
    try:
        found = root.locate(request("GET", raw.decode()))
    except HttpError as exc:
        return exc.status
    release(found)
    assert found is MISSING, f"{raw!r} was served: {found!r}"
    return 404


def release(found: object) -> None:
    if isinstance(found, OpenedFile | OpenedArchive):
        found.opened.release()
    elif isinstance(found, OpenedDirectory):
        os.close(found.fd)


PARTS = [
    "a", "b.txt", "d", "e.txt", "c.tar", "m", "index.html", "..", ".", "%2e%2e", "%2E.",
    "%2f", "", "out", "out.txt", "secret.txt", "outside", "root", "dot", ".hidden",
    "x.txt", "state", "st", "s.txt", "up", "i", "dir.tar", "f",
]  # fmt: skip


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PARTS), min_size=1, max_size=6), st.booleans())
def test_a_path_that_escapes_is_always_refused(
    tree: Path, local_root: Root, parts: list[str], slash: bool
) -> None:
    """Whatever the path, what the Root opens lies under the root, outside the state
    directory and every dot-name; anything else is refused with a 4xx."""
    raw = ("/" + "/".join(parts) + ("/" if slash else "")).encode()
    try:
        found = local_root.locate(request("GET", raw.decode()))
    except HttpError as exc:
        assert exc.status in (400, 404, 414)
        return
    if found is MISSING:
        return
    try:
        fd = opened_fd(found)
        if fd is None:
            assert isinstance(found, Redirect)
            location = dict(found.response.headers)["Location"]
            assert location.startswith("/") and not location.startswith("//")
            return
        real = os.readlink(f"/proc/self/fd/{fd}")
        root = str(tree / "root")
        assert real == root or real.startswith(root + "/")
        assert not real.startswith(root + "/state") and "/." not in real[len(root) :]
    finally:
        release(found)


@pytest.mark.parametrize(
    "raw",
    [b"/out/secret.txt", b"/out.txt", b"/dot/x.txt", b"/st/s.txt", b"/state/s.txt",
     b"/a/up/outside/secret.txt", b"/a/../../outside/secret.txt", b"/%2e%2e/outside/secret.txt",
     b"/.hidden/x.txt", b"/out/", b"/dot/"],
)  # fmt: skip
def test_each_way_out_is_refused(local_root: Root, raw: bytes) -> None:
    assert refusal(local_root, raw) in (400, 404)


def test_files_directories_archives_and_the_slash_form(local_root: Root) -> None:
    file = local_root.locate(request("GET", "/a/b.txt"))
    assert isinstance(file, OpenedFile) and (file.name, file.relative) == ("b.txt", "a/b.txt")
    release(file)
    index = local_root.locate(request("GET", "/a/"))
    assert isinstance(index, OpenedFile) and index.relative == "a/index.html"
    release(index)
    listing = local_root.locate(request("GET", "/a/d/"))
    assert isinstance(listing, OpenedDirectory) and listing.path.segments == ("a", "d")
    release(listing)
    moved = local_root.locate(request("GET", "/a/d?sort=name"))
    assert isinstance(moved, Redirect)
    assert ("Location", "/a/d/?sort=name") in moved.response.headers
    member = local_root.locate(request("GET", "/c.tar/m"))
    assert isinstance(member, OpenedArchive) and member.count == 1
    release(member)
    listed = local_root.locate(request("GET", "/c.tar/"))
    assert isinstance(listed, OpenedArchive) and listed.count == 1
    release(listed)
    assert local_root.locate(request("GET", "/a/b.txt/")) is MISSING  # not a directory


def test_names_that_look_like_what_they_are_not(local_root: Root) -> None:
    in_directory = local_root.locate(request("GET", "/dir.tar/f"))
    assert isinstance(in_directory, OpenedFile) and in_directory.relative == "dir.tar/f"
    release(in_directory)
    for raw in (b"/dir.tar/missing", b"/i/"):  # no archive there; an index that is no file
        assert local_root.locate(request("GET", raw.decode())) is MISSING


def test_a_file_beside_another_is_kept_and_confined_like_one_asked_for(local_root: Root) -> None:
    """Root.regular_file, what a precompressed sidecar is opened with: a regular file
    that may be served, kept open for the next time; nothing for anything else."""
    first = local_root.regular_file("a/b.txt")
    assert first is not None and os.pread(first.fd, 1, 0) == b"b"
    first.release()
    again = local_root.regular_file("a/b.txt")
    assert again is first  # the kept descriptor, revalidated by one stat()
    again.release()
    for relative in ("out.txt", "out/secret.txt", "dot/x.txt", "st/s.txt", "state/s.txt",
                     "a/up/outside/secret.txt", "a/d", "a/missing.gz"):  # fmt: skip
        assert local_root.regular_file(relative) is None, relative


def test_a_file_beside_another_replaced_is_opened_afresh(tmp_path: Path) -> None:
    (tmp_path / "x.json.gz").write_bytes(b"one")
    root = Root(Config(source=str(tmp_path), state_dir=str(tmp_path / ".state")))
    try:
        first = root.regular_file("x.json.gz")
        assert first is not None
        first.release()
        (tmp_path / "new").write_bytes(b"two")
        os.replace(tmp_path / "new", tmp_path / "x.json.gz")
        second = root.regular_file("x.json.gz")
        assert second is not None and second is not first
        assert os.pread(second.fd, 3, 0) == b"two"
        second.release()
        (tmp_path / "x.json.gz").unlink()
        (tmp_path / "x.json.gz").symlink_to(tmp_path.parent)  # now a directory, outside
        assert root.regular_file("x.json.gz") is None
    finally:
        root.close()


def test_a_file_beside_another_is_closed_after_its_use_when_none_are_kept(
    tmp_path: Path,
) -> None:
    (tmp_path / "x.json.gz").write_bytes(b"one")
    root = Root(Config(source=str(tmp_path), state_dir=str(tmp_path / ".state"), open_files=0))
    try:
        side = root.regular_file("x.json.gz")
        assert side is not None and not side.kept
        side.release()
        with pytest.raises(OSError):
            os.fstat(side.fd)  # closed with its only use
    finally:
        root.close()


def test_following_symlinks_lets_them_out_but_never_into_hidden_places(tree: Path) -> None:
    config = Config(
        source=str(tree / "root"), state_dir=str(tree / "root" / "state"), follow_symlinks=True
    )
    root = Root(config)
    try:
        found = root.locate(request("GET", "/out/secret.txt"))
        assert isinstance(found, OpenedFile)
        release(found)
        for raw in (b"/dot/x.txt", b"/st/s.txt"):
            assert refusal(root, raw) == 404
    finally:
        root.close()


# -- who asks whom --------------------------------------------------------------------


def imported(module: str) -> set[str]:
    """Every ferryman module `app/<module>.py` imports, under TYPE_CHECKING too."""
    tree = ast.parse((APP / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["files", "archive", "listing"])
def test_the_readers_ask_the_root_not_each_other(module: str) -> None:
    others = {f"ferryman.app.{m}" for m in ("files", "archive", "listing") if m != module}
    if module == "archive":
        others.discard("ferryman.app.listing")  # it renders its listings as listing.py does
        assert "ferryman.app.listing.render" in imported(module)
    assert not imported(module) & others

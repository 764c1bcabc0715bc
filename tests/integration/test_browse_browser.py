"""The browse page in a real browser: Debian's chromium, driven by playwright.

Sorting by each column, breadcrumbs of a decoded path, twenty pages of a
20,000-file directory, the filter box (instant, and ?q= on the server), an
audio file played in the page (the access log shows the browser's range
requests; a seek moves currentTime), an upload by drag and drop that lands
byte-exact with its digest checked, signed links on a private server, the
page without JavaScript and on a phone. No page may run a script from a
name, load anything from elsewhere, or log an error (but the favicon's 404).

Screenshots land in the test's tmp directory; with FERRYMAN_DOCS_SCREENSHOTS=1
the light and dark ones of the demo tree are written to docs/ (browse.png,
browse-dark.png). Like test_report_browser.py: CI installs chromium, and
only outside CI is a missing chromium a skip.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_report_browser import launch
from tests.integration.test_report_browser import playwright as playwright  # the fixture
from tests.media import png, wav_tone
from tests.serverproc import pattern, wait_until
from tests.writing import WRITE, Writable, catalog_entry

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOSTILE = "<img src=x onerror=alert(1)>.txt"
DAY = 86_400
NOW = 1_750_000_000  # mid-2025: the demo's times


@pytest.fixture(scope="module")
def browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
    yield context
    context.close()


def make_demo(root: Path) -> None:
    """A tree like a user's: photos, music, documents, odd names."""
    photos = root / "Fotos 2024" / "été"
    photos.mkdir(parents=True)
    colours = [((255, 183, 77), (229, 57, 53)), ((79, 195, 247), (2, 119, 189)),
               ((129, 199, 132), (46, 125, 50)), ((206, 147, 216), (106, 27, 154))]  # fmt: skip
    for i, (top, bottom) in enumerate(colours):
        (photos / f"plage {i + 1}.png").write_bytes(png(160, 120, top, bottom))
    (root / "Fotos 2024" / "index of nothing").mkdir()
    (root / "music").mkdir()
    (root / "docs").mkdir()
    (root / "docs" / "handbook.md").write_text("# handbook\n")
    files = {
        "tone.wav": wav_tone(6.0),
        "release-notes.md": b"# notes\n" * 40,
        "backup 2024-06.tar.gz": pattern(2_500_000),
        "data.json": b'{"a": 1}\n',
        "report 9.pdf": pattern(180_000),
        "report 10.pdf": pattern(90_000),
        "cover.png": png(64, 64, (255, 213, 79), (255, 111, 0)),
        HOSTILE: b"hostile",
    }
    for i, (name, data) in enumerate(files.items()):
        (root / name).write_bytes(data)
        os.utime(root / name, (NOW - i * DAY, NOW - i * DAY))
    for i, directory in enumerate(("Fotos 2024", "music", "docs")):
        os.utime(root / directory, (NOW - (i + 3) * DAY, NOW - (i + 3) * DAY))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "root"
    root.mkdir()
    make_demo(root)
    return root


class Watched:
    """A page whose dialogs, requests and console errors are all recorded."""

    def __init__(self, context: Any, base: str) -> None:
        self.base = base
        self.dialogs: list[str] = []
        self.requests: list[Any] = []
        self.errors: list[str] = []
        self.page = context.new_page()
        self.page.set_default_timeout(60_000)
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda request: self.requests.append(request))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "404" not in message.text:  # /favicon.ico
            self.errors.append(message.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str) -> Any:
        self.page.goto(self.base + path, wait_until="load")
        return self.page

    def check_quiet(self) -> None:
        assert self.dialogs == [], "a script from a name ran"
        foreign = [r.url for r in self.requests if not r.url.startswith(self.base)]
        assert foreign == [], "the page asked for something elsewhere"
        assert self.errors == []


def follow(page: Any, selector: str) -> None:
    """Click a link and wait for the page it opens to load."""
    with page.expect_navigation(wait_until="load"):
        page.click(selector)


def names(page: Any) -> list[str]:
    found: list[str] = page.locator("#entries tbody tr[data-name]:visible").evaluate_all(
        "rows => rows.map(r => r.dataset.name)"
    )
    return found


def test_sorting_by_each_column(browser: Any, ferryman: Any, demo: Path) -> None:
    srv = ferryman(root=demo)
    watched = Watched(browser, srv.url)
    page = watched.open("/")
    files = [p for p in demo.iterdir() if p.is_file()]
    dirs = ["docs", "Fotos 2024", "music"]
    natural = [HOSTILE, "backup 2024-06.tar.gz", "cover.png", "data.json", "release-notes.md",
               "report 9.pdf", "report 10.pdf", "tone.wav"]  # fmt: skip
    assert names(page) == dirs + natural
    assert page.locator("th.n").get_attribute("aria-sort") == "ascending"

    follow(page, "th.s a")  # size, ascending
    assert page.url.endswith("/?sort=size&order=asc")
    by_size = [p.name for p in sorted(files, key=lambda p: p.stat().st_size)]
    assert names(page) == dirs + by_size
    follow(page, "th.s a")  # again: descending; directories stay first
    assert page.url.endswith("/?sort=size&order=desc")
    assert names(page) == sorted(dirs, key=str.casefold, reverse=True) + by_size[::-1]
    size_cell = page.locator('tr[data-name="backup 2024-06.tar.gz"] td.s')
    assert size_cell.inner_text() == "2.4 MiB"
    assert size_cell.get_attribute("title") == "2,500,000 bytes"

    follow(page, "th.m a")  # modified, oldest first
    by_time = [p.name for p in sorted(files, key=lambda p: p.stat().st_mtime)]
    by_dir_time = ["docs", "music", "Fotos 2024"]
    assert names(page) == by_dir_time + by_time
    follow(page, "th.n a")
    follow(page, "th.n a")  # name, descending
    assert names(page) == dirs[::-1] + natural[::-1]
    assert page.locator("th.n").get_attribute("aria-sort") == "descending"
    assert page.locator(f'tr[data-name="{HOSTILE}"] a').inner_text() == HOSTILE
    watched.check_quiet()
    page.close()


def test_breadcrumbs_of_a_decoded_path(browser: Any, ferryman: Any, demo: Path) -> None:
    srv = ferryman(root=demo)
    watched = Watched(browser, srv.url)
    page = watched.open("/Fotos%202024/%C3%A9t%C3%A9/")
    crumbs = page.locator("nav.crumbs a")
    host = srv.url.removeprefix("http://")
    assert crumbs.all_inner_texts() == [host, "Fotos 2024", "été"]
    assert page.title() == "Index of /Fotos 2024/été/"
    thumbs = page.locator("img.thumb")
    assert thumbs.count() == 4 and thumbs.first.get_attribute("loading") == "lazy"
    loaded = "() => [...document.images].every(i => i.naturalWidth > 0)"
    assert wait_until(lambda: page.evaluate(loaded), 20)
    assert page.evaluate("() => document.images[0].naturalWidth") == 160
    follow(page, "nav.crumbs a >> text=Fotos 2024")
    assert page.url == srv.url + "/Fotos%202024/"
    assert names(page) == ["index of nothing", "été"]
    follow(page, "nav.crumbs a.top")
    assert page.url == srv.url + "/"
    watched.check_quiet()
    page.close()


def test_twenty_thousand_files_page_by_page(browser: Any, ferryman: Any, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(20_000):
        (root / f"photo {i}.jpg").write_bytes(b"")
    srv = ferryman(root=root)
    watched = Watched(browser, srv.url)
    page = watched.open("/")
    seen: list[str] = []
    for number in range(1, 21):
        assert page.locator("nav.pages span", has_text="Page ").first.inner_text() == (
            f"Page {number} of 20"
        )
        shown = names(page)
        assert len(shown) == 1000
        seen += shown
        if number < 20:
            assert page.locator('head link[rel="next"]').count() == 1
            follow(page, 'nav.pages a[rel="next"]')
    assert page.locator('nav.pages a[rel="next"]').count() == 0
    assert page.locator('head link[rel="next"]').count() == 0
    assert seen == [f"photo {i}.jpg" for i in range(20_000)]
    follow(page, 'nav.pages a[rel="prev"]')
    assert page.url.endswith("/?page=19") and names(page)[0] == "photo 18000.jpg"
    watched.check_quiet()
    page.close()


def test_the_filter_box(browser: Any, ferryman: Any, demo: Path) -> None:
    srv = ferryman(root=demo)
    watched = Watched(browser, srv.url)
    page = watched.open("/")
    page.keyboard.press("/")  # the shortcut focuses the box
    page.keyboard.type("REPORT")
    assert names(page) == ["report 9.pdf", "report 10.pdf"]
    assert page.locator("#shown").inner_text() == "2 of 11 on this page"
    page.fill("#q", "")
    assert len(names(page)) == 11
    page.fill("#q", "png")
    page.press("#q", "Enter")  # the same box asks the server: ?q=
    page.wait_for_url(re.compile(r"\?q=png$"))
    assert names(page) == ["cover.png"]
    assert "1 of 11 entries match" in page.locator("#summary").inner_text()
    watched.check_quiet()
    page.close()


def test_audio_plays_and_seeks_with_range_requests(
    browser: Any, ferryman: Any, demo: Path, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    srv = ferryman("--access-log", str(log), root=demo)
    watched = Watched(browser, srv.url)
    page = watched.open("/")
    row = page.locator('tr[data-name="tone.wav"]')
    row.locator("summary").click()  # the <details> opens: no script needed for that
    audio = row.locator("audio")
    assert audio.is_visible() and audio.get_attribute("preload") == "none"
    audio.evaluate("a => { a.muted = true; return a.play(); }")
    page.wait_for_function("() => document.querySelector('audio').currentTime > 0.2")
    audio.evaluate("a => a.pause()")
    audio.evaluate(
        "a => new Promise(done => { a.addEventListener('seeked', done, {once: true});"
        " a.currentTime = 4.5; })"
    )
    assert audio.evaluate("a => a.currentTime") == pytest.approx(4.5, abs=0.05)
    assert audio.evaluate("a => a.duration") == pytest.approx(6.0, abs=0.05)
    ranged = [r for r in watched.requests if r.url.endswith("/tone.wav")]
    assert ranged and all((r.headers.get("range") or "").startswith("bytes=") for r in ranged)
    assert wait_until(lambda: '"GET /tone.wav HTTP/1.1" 206 ' in log.read_text(), 10)
    watched.check_quiet()
    page.close()


def test_upload_by_drag_and_drop_lands_verified(
    browser: Any, ferryman: Any, tmp_path: Path
) -> None:
    srv = Writable(ferryman, tmp_path)()
    (tmp_path / "root" / "taken.bin").write_bytes(b"already here")
    watched = Watched(browser, srv.url)
    page = watched.open("/")
    assert page.locator("#upload").is_visible()
    page.fill("#token", WRITE)
    data = pattern(300_000)
    drop = """([name, text]) => {
        const bytes = Uint8Array.from(atob(text), c => c.charCodeAt(0));
        const files = new DataTransfer();
        files.items.add(new File([bytes], name));
        const target = document.getElementById("drop");
        target.dispatchEvent(new DragEvent("dragover", {dataTransfer: files, bubbles: true}));
        target.dispatchEvent(new DragEvent("drop", {dataTransfer: files, bubbles: true}));
    }"""
    page.evaluate(drop, ["été 1.bin", base64.b64encode(data).decode()])
    done = page.locator("#uploads li").nth(0)
    page.wait_for_function("() => document.querySelector('#uploads li').dataset.state")
    assert done.get_attribute("data-state") == "done", done.inner_text()
    assert "SHA-256 verified" in done.inner_text()
    stored = tmp_path / "root" / "été 1.bin"
    assert stored.read_bytes() == data
    digest = hashlib.sha256(data).digest()
    put = next(r for r in watched.requests if r.method == "PUT")
    assert put.headers["content-digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"
    assert put.headers["if-none-match"] == "*"
    assert "token" not in put.url and WRITE not in put.url
    entry = catalog_entry(tmp_path / "state", "été 1.bin")
    assert entry is not None and entry.sha256 == digest.hex()
    assert page.evaluate("() => sessionStorage.getItem('ferryman-token')") == WRITE
    assert page.evaluate("() => document.cookie") == ""

    page.evaluate(drop, ["taken.bin", base64.b64encode(b"other").decode()])  # no overwrite
    refused = page.locator("#uploads li").nth(1)
    page.wait_for_function("() => document.querySelectorAll('#uploads li')[1].dataset.state")
    assert refused.get_attribute("data-state") == "failed"
    assert refused.inner_text().split("\n")[-1].startswith("412: a file of that name is there")
    assert (tmp_path / "root" / "taken.bin").read_bytes() == b"already here"
    follow(page, "#reload")
    assert "été 1.bin" in names(page)
    watched.errors.remove(  # chromium logs the refusal the page showed
        "Failed to load resource: the server responded with a status of 412 (Precondition Failed)"
    )
    watched.check_quiet()
    page.close()


def test_a_signed_private_page_opens_its_links(
    browser: Any, ferryman: Any, demo: Path, tmp_path: Path
) -> None:
    from ferryman.app.auth import SigningKey

    key = tmp_path / "key"
    key.write_bytes(b"s" * 40)
    srv = ferryman("--private", "--signing-key", str(key), root=demo)
    url = SigningKey(b"s" * 40).sign_url(srv.url + "/Fotos%202024/", "GET", int(time.time()) + 600)
    watched = Watched(browser, srv.url)
    page = watched.page
    assert page.goto(srv.url + "/Fotos%202024/").status == 401
    page.goto(url)
    follow(page, "text=été/")
    assert "ferryman-signature=" in page.url
    loaded = "() => [...document.images].every(i => i.naturalWidth > 0)"
    assert wait_until(lambda: page.evaluate(loaded), 20)
    assert page.evaluate("() => document.images[0].naturalWidth") == 160  # thumbnails signed too
    follow(page, "th.s a")  # sorting keeps the signature
    assert names(page)[0].startswith("plage") and "ferryman-signature=" in page.url
    follow(page, "text=plage 1.png")
    assert page.evaluate("() => document.contentType") == "image/png"
    page.close()


def test_without_javascript(playwright: Any, ferryman: Any, demo: Path, tmp_path: Path) -> None:
    context = launch(playwright, tmp_path / "profile", java_script_enabled=False)
    try:
        srv = Writable(ferryman, tmp_path)(root=demo)
        watched = Watched(context, srv.url)
        page = watched.open("/")
        assert not page.locator("#upload").is_visible()  # uploads need the script
        follow(page, "th.s a")
        assert page.url.endswith("?sort=size&order=asc")
        page.fill("#q", "report")
        page.press("#q", "Enter")
        page.wait_for_url(re.compile(r"q=report"))
        assert names(page) == ["report 10.pdf", "report 9.pdf"]  # sorted by size still
        follow(page, "nav.crumbs a.top")
        page.locator('tr[data-name="tone.wav"] summary').click()
        assert page.locator("audio").is_visible()
        watched.check_quiet()
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_light_dark_and_phone(
    browser: Any, ferryman: Any, demo: Path, tmp_path: Path, scheme: str
) -> None:
    srv = ferryman(root=demo)
    watched = Watched(browser, srv.url)
    page = watched.page
    page.emulate_media(color_scheme=scheme)
    page.set_viewport_size({"width": 900, "height": 640})
    watched.open("/")
    colours = page.evaluate(
        "() => { const s = getComputedStyle(document.body); return [s.backgroundColor, s.color]; }"
    )
    wanted = {"light": ["rgb(255, 255, 255)", "rgb(29, 35, 41)"],
              "dark": ["rgb(18, 22, 25)", "rgb(228, 234, 240)"]}  # fmt: skip
    assert colours == wanted[scheme]
    assert page.locator("th.m").is_visible()
    shot = tmp_path / f"browse-{scheme}.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("FERRYMAN_DOCS_SCREENSHOTS") == "1":
        name = "browse.png" if scheme == "light" else "browse-dark.png"
        (DOCS / name).write_bytes(shot.read_bytes())
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert not page.locator("th.m").is_visible()  # the time column goes on a phone
    page.screenshot(path=str(tmp_path / f"phone-{scheme}.png"), full_page=True)
    watched.check_quiet()
    page.close()

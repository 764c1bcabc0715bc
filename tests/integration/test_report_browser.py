"""The HTML audit report in a real browser: Debian's chromium, driven by playwright.

A report of a realistic run (three stores, every kind, hostile key names) is
written with write_report and opened from a file:// URL. The page must draw
its chart with the right counts, show every row, run no script that came
from a key (a dialog fails the test), make no request beyond its own file,
keep its own script (the policy must not block it: no console error), and
be readable in light and dark schemes and without JavaScript.

Screenshots land in the test's tmp directory (light.png, dark.png, phone.png).
CI installs chromium (make test-tools) and playwright (the dev extras); only
outside CI is a missing or unstartable chromium a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferryman.audit.model import KINDS
from ferryman.audit.report import write_report
from tests.auditresults import (
    HOSTILE_KEYS,
    NON_ASCII_KEY,
    QUOTE_KEY,
    SCRIPT_KEY,
    counts_by_store_and_kind,
    realistic_result,
)
from tests.serverproc import CI

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000  # a shared, noisy machine: generous, never asserted


def unavailable(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason} (make test installs chromium and the dev extras)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as driver:
        yield driver


def launch(playwright: Any, profile: Path, **options: Any) -> Any:
    """A chromium with a fresh profile; playwright never downloads a browser of its own."""
    try:
        return playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=TIMEOUT_MS,
            viewport={"width": 1100, "height": 900},
            **options,
        )
    except Exception as exc:  # playwright's Error: chromium did not start
        unavailable(f"chromium does not start here: {str(exc).splitlines()[0]}")


@pytest.fixture(scope="module")
def browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
    yield context
    context.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "audit.html"
    write_report(path, realistic_result())
    return path


class Watched:
    """A page whose dialogs, requests and console errors are all recorded."""

    def __init__(self, context: Any) -> None:
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, report: Path) -> Any:
        self.page.goto(report.as_uri(), wait_until="load")
        return self.page

    def check_quiet(self, report: Path) -> None:
        assert self.dialogs == [], "a script from a key ran"
        assert self.requests == [report.as_uri()], "the page asked for something"
        assert self.errors == []


def luminance(css_color: str) -> float:
    """Relative luminance (0 black .. 1 white) of an 'rgb(r, g, b)' value."""
    r, g, b = (int(x) / 255 for x in css_color[css_color.index("(") + 1 : -1].split(",")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_report_in_the_browser(browser: Any, report: Path, tmp_path: Path, scheme: str) -> None:
    result = realistic_result()
    watched = Watched(browser)
    watched.page.emulate_media(color_scheme=scheme)
    page = watched.open(report)

    # The chart: one figure per store, one bar per kind, its count as data and as text.
    counted = counts_by_store_and_kind(result)
    peak = max(counted.values())
    for number, store in enumerate(result.stores):
        figure = page.locator(f'figure.chart[data-store="s{number}"]')
        assert figure.locator("figcaption").inner_text().startswith(store)
        bars = figure.locator("g.bar")
        assert bars.count() == len(KINDS)
        for i, kind in enumerate(KINDS):
            bar = bars.nth(i)
            count = counted[store, kind]
            assert bar.get_attribute("data-kind") == kind
            assert bar.get_attribute("data-count") == str(count)
            assert bar.locator("text.count").text_content() == f"{count:,}"
            width = bar.locator("rect").bounding_box()["width"]
            if count == 0:
                assert width == 0
            else:
                assert width > 0
                if count == peak:
                    assert width == max(
                        b.locator("rect").bounding_box()["width"]
                        for b in page.locator("g.bar").all()
                    )

    # The tables: a row per store, a row per finding, every hostile name shown as itself.
    assert page.locator("#summary tbody tr").count() == len(result.stores)
    assert page.locator("table.findings tbody tr").count() == len(result.findings)
    keys_shown = page.locator("table.findings td.key").all_inner_texts()
    for name in (SCRIPT_KEY, QUOTE_KEY, NON_ASCII_KEY, *HOSTILE_KEYS[3:6]):
        assert name in keys_shown
    assert "escape\\x1b[2J\\x1b[31mred" in keys_shown
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1

    # The colours follow the scheme, and text stays readable on its background.
    body = page.evaluate(
        "() => { const s = getComputedStyle(document.body); return [s.backgroundColor, s.color]; }"
    )
    background, text = luminance(body[0]), luminance(body[1])
    assert (background > 0.8) if scheme == "light" else (background < 0.2)
    assert abs(background - text) > 0.5
    label_fill = page.evaluate("() => getComputedStyle(document.querySelector('g.bar text')).fill")
    assert abs(luminance(label_fill) - background) > 0.5

    # The script's filters and sorting (the page is whole without them: see below).
    assert page.locator("#filters").is_visible()
    page.select_option("#f-kind", "unexpected")
    visible_rows = page.locator("table.findings tbody tr:visible")
    assert visible_rows.count() == sum(1 for f in result.findings if f.kind == "unexpected")
    page.select_option("#f-kind", "")
    page.select_option("#f-store", "s1")
    assert visible_rows.count() == sum(1 for f in result.findings if f.store == result.stores[1])
    page.select_option("#f-store", "")
    page.fill("#f-text", "<SCRIPT>alert(1")  # case-insensitive
    assert visible_rows.all_inner_texts()[0].startswith(SCRIPT_KEY)
    assert visible_rows.count() == 1
    page.fill("#f-text", "")
    ok_heading = page.locator("#summary th", has_text="ok")
    stores_column = page.locator("#summary tbody tr td.store")
    ok_heading.click()  # ascending: the store with the fewest ok first
    assert stores_column.all_inner_texts() == [result.stores[i] for i in (2, 1, 0)]
    ok_heading.click()
    assert stores_column.all_inner_texts() == result.stores

    page.screenshot(path=str(tmp_path / f"{scheme}.png"), full_page=True)
    watched.check_quiet(report)
    page.close()


def test_report_on_a_phone_width(browser: Any, report: Path, tmp_path: Path) -> None:
    watched = Watched(browser)
    page = watched.page
    page.set_viewport_size({"width": 390, "height": 844})
    watched.open(report)
    # Nothing but the tables' own scroll boxes is wider than the screen.
    widest = page.evaluate("() => document.documentElement.scrollWidth")
    assert widest <= 390
    charts = page.locator("figure.chart").all()
    assert all(chart.bounding_box()["width"] <= 390 for chart in charts)
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    watched.check_quiet(report)
    page.close()


def test_report_without_javascript(playwright: Any, report: Path, tmp_path: Path) -> None:
    context = launch(playwright, tmp_path / "profile", java_script_enabled=False)
    try:
        watched = Watched(context)
        page = watched.open(report)
        assert not page.locator("#filters").is_visible()
        rows = page.locator("table.findings tbody tr:visible")
        assert rows.count() == len(realistic_result().findings)
        assert page.locator("g.bar rect").count() == len(KINDS) * 3
        watched.check_quiet(report)
    finally:
        context.close()

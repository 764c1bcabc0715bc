"""CORS in a real browser: Debian's chromium, driven by playwright.

A page served by one ferryman (origin A) fetches ranges of a file from
another (origin B) started with `--cors-origin A`: the script reads
Content-Range and ETag, and gets exactly the bytes asked for; a request
that needs a preflight (If-Match) goes through one. The same fetch from a
ferryman without `--cors-origin` fails in the browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_report_browser import TIMEOUT_MS, launch, playwright  # noqa: F401
from tests.serverproc import ServerProcess, pattern, wait_until

pytestmark = pytest.mark.browser

FETCH_RANGES = """async (url) => {
    try {
        const first = await fetch(url, {headers: {Range: 'bytes=1000-1999'}});
        const etag = first.headers.get('ETag');
        const body = await first.text();
        // If-Match is not a safelisted header: this one needs a preflight.
        const second = await fetch(url, {headers: {Range: 'bytes=65000-', 'If-Match': etag}});
        return {
            status: first.status, range: first.headers.get('Content-Range'), etag, body,
            status2: second.status, range2: second.headers.get('Content-Range'),
            body2: await second.text(),
        };
    } catch (error) {
        return {error: error.name + ': ' + error.message};
    }
}"""


def test_a_page_of_another_origin_reads_a_range(
    playwright: Any,  # noqa: F811  (the fixture)
    ferryman: Any,
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "player.html").write_text("<!DOCTYPE html><title>player</title><p>player</p>")
    origin_a: ServerProcess = ferryman(root=site)
    log = tmp_path / "b-access.log"
    files_b: ServerProcess = ferryman("--cors-origin", origin_a.url, "--access-log", str(log))
    plain_b: ServerProcess = ferryman()
    assert origin_a.url != files_b.url  # another port: another origin

    context = launch(playwright, tmp_path / "profile")
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(origin_a.url + "/player.html", wait_until="load")

        got = page.evaluate(FETCH_RANGES, files_b.url + "/p65536.bin")
        assert "error" not in got, got
        assert (got["status"], got["range"]) == (206, "bytes 1000-1999/65536")
        assert got["body"] == pattern(1000, 1000).decode("ascii")
        assert got["etag"]
        assert (got["status2"], got["range2"]) == (206, "bytes 65000-65535/65536")
        assert got["body2"] == pattern(536, 65000).decode("ascii")
        assert wait_until(lambda: log.exists() and '"OPTIONS /p65536.bin ' in log.read_text()), (
            "the If-Match request went without a preflight"
        )

        refused = page.evaluate(FETCH_RANGES, plain_b.url + "/p65536.bin")
        assert refused.get("error", "").startswith("TypeError"), refused
    finally:
        context.close()

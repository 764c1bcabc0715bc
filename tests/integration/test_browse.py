"""Browsing a real server: pages of a large directory, sorting, ?q=, breadcrumbs, bad
queries, error pages for browsers, and signed links on a private server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
MANY = 20_000


def entry_links(page: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'<tr data-name=.*?<a href="([^"]*)">', page, re.S)]


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 files of distinct sizes (the name says the size), and two directories."""
    root = tmp_path_factory.mktemp("many")
    for i in range(MANY):
        (root / f"f{i}.txt").write_bytes(b"x" * (i % 97))
    (root / "zdir").mkdir()
    (root / "Adir").mkdir()
    return root


def test_a_directory_of_20000_files_pages_through_next_links(ferryman, many: Path) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman("--state-dir", str(many.parent / "state-many"), root=many)
    seen: list[str] = []
    pages = 0
    url: str | None = "/"
    with srv.connect() as conn:
        while url is not None:
            doc = json.loads(conn.get(url, JSON).body)
            pages += 1
            assert doc["pages"] == 21 and doc["total"] == MANY + 2 and doc["page"] == pages
            assert len(doc["entries"]) == (1000 if pages < 21 else 2)
            seen += [e["name"] for e in doc["entries"]]
            url = doc["next"]
        back = json.loads(conn.get("/?page=21", JSON).body)["prev"]
        assert back == "/?page=20"
        html = conn.get("/?page=2", BROWSER).body.decode()
    assert seen[:2] == ["Adir", "zdir"]  # directories first
    assert seen[2:] == [f"f{i}.txt" for i in range(MANY)]  # natural order: f9 before f10
    assert len(entry_links(html)) == 1000
    assert '<link rel="next" href="?page=3">' in html and '<a rel="prev" href="./">' in html
    assert "page 2 of 21" in html and "(1,001\u20132,000)" in html


def test_sorting_by_size_and_time_and_a_server_side_filter(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    for name, size, mtime in [("b.txt", 30, 300), ("a.txt", 10, 200), ("C.txt", 20, 100)]:
        (root / name).write_bytes(b"x" * size)
        os.utime(root / name, (mtime, mtime))
    (root / "dir").mkdir()
    srv = ferryman(root=root)

    def names(query: str) -> list[str]:
        with srv.connect() as conn:
            return [e["name"] for e in json.loads(conn.get("/" + query, JSON).body)["entries"]]

    assert names("") == ["dir", "a.txt", "b.txt", "C.txt"]
    assert names("?order=desc") == ["dir", "C.txt", "b.txt", "a.txt"]
    assert names("?sort=size") == ["dir", "a.txt", "C.txt", "b.txt"]
    assert names("?sort=size&order=desc") == ["dir", "b.txt", "C.txt", "a.txt"]
    assert names("?sort=modified") == ["dir", "C.txt", "a.txt", "b.txt"]
    assert names("?q=B") == ["b.txt"]
    assert names("?q=%C3%A9") == []
    with srv.connect() as conn:
        page = conn.get("/?sort=size&order=desc", BROWSER).body.decode()
    assert '<th class="s" aria-sort="descending"><a href="?sort=size&amp;order=asc">' in page


@pytest.mark.parametrize(
    ("query", "status"),
    [("?sort=owner", 400), ("?order=sideways", 400), ("?page=0", 400), ("?page=x", 400),
     ("?page=2", 404)],
)  # fmt: skip
def test_bad_listing_queries(ferryman, query: str, status: int) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman()
    with srv.connect() as conn:
        api = conn.get("/plain/" + query, JSON)
        browser = conn.get("/plain/" + query, BROWSER)
    assert api.status == browser.status == status
    assert json.loads(api.body)["error"] in ("bad_query", "not_found")
    assert browser.header("content-type") == "text/html; charset=utf-8"
    assert b'<a href="/">' in browser.body
    assert "Traceback" not in srv.log_text()


def test_breadcrumbs_are_decoded_names_linked_by_their_bytes(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    deep = root / "Fotos 2024" / "été" / "100% #1?"
    deep.mkdir(parents=True)
    (deep / "x.txt").write_text("x")
    srv = ferryman(root=root)
    url = "/Fotos%202024/%C3%A9t%C3%A9/100%25%20%231%3F/"
    with srv.connect() as conn:
        r = conn.get(url, BROWSER)
        page = r.body.decode()
        crumbs = re.findall(r'<span class="sep">/</span><a href="([^"]*)"[^>]*>([^<]*)</a>', page)
        assert [name for _, name in crumbs] == ["Fotos 2024", "été", "100% #1?"]
        for href, _ in crumbs:
            assert conn.get(urljoin(url, unescape(href)), JSON).status == 200
        assert "<title>Index of /Fotos 2024/été/100% #1?/</title>" in page
    assert crumbs[0][0] == "/Fotos%202024/" and crumbs[1][0] == "/Fotos%202024/%C3%A9t%C3%A9/"
    policy = r.header("content-security-policy") or ""
    assert policy.startswith("default-src 'none'") and "'unsafe-inline'" not in policy


def sign(key: Path, url: str, expires: str = "1h") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "sign", url, "--expires", expires,
         "--signing-key", str(key)],
        capture_output=True, text=True, timeout=20, check=True,
    )  # fmt: skip
    parts = urlsplit(done.stdout.strip())
    return f"{parts.path}?{parts.query}"


def test_a_private_listing_links_signed_urls_below_it_only(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    (root / "shared" / "sub dir").mkdir(parents=True)
    (root / "shared" / "a b.txt").write_text("file a")
    (root / "shared" / "sub dir" / "é.txt").write_text("deeper")
    (root / "secret.txt").write_text("not shared")
    key = tmp_path / "key"
    key.write_bytes(b"k" * 48)
    tokens = tmp_path / "tokens"
    tokens.write_text("reader-token-0123 read /shared\n")
    srv = ferryman("--private", "--signing-key", str(key), "--tokens", str(tokens), root=root)
    listing = sign(key, f"{srv.url}/shared/")
    expires = re.search(r"ferryman-expires=(\d+)", listing)
    assert expires is not None
    with srv.connect() as conn:
        assert conn.get("/shared/", BROWSER).status == 401  # nothing unsigned
        page = conn.get(listing, BROWSER)
        assert page.header("cache-control") == "private, no-store"
        links = entry_links(page.body.decode())
        assert len(links) == 2 and all(f"ferryman-expires={expires.group(1)}" in h for h in links)
        sub = conn.get(links[0], JSON)  # the directory: its own links signed again
        assert sub.status == 200
        inner = json.loads(sub.body)["entries"][0]["href"]
        assert conn.get(inner).body == b"deeper"
        assert conn.get(links[1]).body == b"file a"
        up = re.search(r'<tr class="up">.*?<a href="([^"]*)">', page.body.decode(), re.S)
        assert up is not None and conn.get(up.group(1), BROWSER).status == 401  # not opened
        doc = json.loads(
            conn.get("/shared/", {**JSON, "Authorization": "Bearer reader-token-0123"}).body
        )
        by_token = doc["entries"][1]["href"]
        assert "ferryman-signature=" in by_token and conn.get(by_token).body == b"file a"
        forged = links[1].replace("a%20b.txt", "..%2Fsecret.txt")
        assert conn.get(forged).status in (400, 403)

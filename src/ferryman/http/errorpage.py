"""The error page a browser gets: small, self-contained, in the browse page's colours.

One status line, the detail, and a link to `/`. Nothing is loaded: the
policy allows this style (by its SHA-256) and nothing else, no script at
all. The detail may quote a client's input: it is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html

STYLE = (
    ":root{color-scheme:light dark;--bg:#fff;--fg:#1d2329;--muted:#5b6876;--link:#0b5cad}"
    "@media (prefers-color-scheme:dark){:root{--bg:#121619;--fg:#e4eaf0;--muted:#98a4b0;"
    "--link:#79b8ff}}"
    "body{margin:0 auto;max-width:40rem;padding:2rem 1.25rem;background:var(--bg);"
    "color:var(--fg);font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}"
    "h1{font-size:1.4rem;margin:0 0 .5rem}p{margin:.4rem 0;overflow-wrap:anywhere}"
    ".detail{color:var(--muted)}a{color:var(--link)}"
)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode("ascii")
    + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def error_page(status: int, reason: str, detail: str) -> bytes:
    title = html.escape(f"{status} {reason}")
    shown = f'<p class="detail">{html.escape(detail)}</p>' if detail else ""
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{title}</title><style>{STYLE}</style></head>\n"
        f'<body><h1>{title}</h1>{shown}<p><a href="/">Go to the top</a></p></body></html>\n'
    )
    return page.encode("utf-8")

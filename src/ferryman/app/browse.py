"""How listings are browsed: the server's settings, and the links of one page.

A page's links are relative and plain on an open server. With `--private`
and `--signing-key` every read needs a credential, and a browser sends no
token when it follows a link, so each link to this directory, to its
entries and to the pages of its listing is an absolute URL signed for GET
(a signed URL's path is exact: the canonical, percent-encoded path the
browser will send as it is). Its expiry is the page's own when the page
was reached by a signed URL, so a shared folder link opens its subtree
until it expires and not a second longer; a page reached with a token
signs for LINK_LIFETIME (the default of `ferryman sign`).

Links above the page (the parent, the breadcrumbs before the last) are
never signed: a URL shared for a folder must not open the whole server.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.app.auth import EXPIRES_PARAM, SIGNATURE_PARAM, SigningKey, signed_expiry
from ferryman.config import Config
from ferryman.http.parser import Request

LINK_LIFETIME = 3600  # seconds: a page reached with a token signs its links for this long


@dataclass(frozen=True)
class Browse:
    """The listing settings of a server."""

    page_size: int = 1000  # --listing-page-size
    signer: SigningKey | None = None  # --private with --signing-key: every link signed
    uploads: bool = False  # --allow-write: the page offers uploads (with a token)

    @classmethod
    def of(cls, config: Config) -> Browse:
        signer = None
        if config.private and config.signing_key:
            signer = SigningKey.load(config.signing_key)
        return cls(config.listing_page_size, signer, config.allow_write)

    def links(self, request: Request, base: str, now: int) -> Links:
        """The links of the listing at `base` (canonical URL path ending in "/")."""
        if self.signer is None:
            return Links(base)
        expires = signed_expiry(request.query) or now + LINK_LIFETIME
        return Links(base, self.signer, expires)


class Links:
    """Links of one listing page: relative (`name`, `?page=2`) or, signed, absolute."""

    __slots__ = ("_here", "base", "expires", "signer")

    def __init__(self, base: str, signer: SigningKey | None = None, expires: int = 0) -> None:
        self.base = base
        self.signer = signer
        self.expires = expires
        # The page's own signature: every sort and page link of this listing carries it.
        self._here = self._signature(base) if signer is not None else ""

    @property
    def signed(self) -> bool:
        return self.signer is not None

    def entry(self, href: str) -> str:
        """A link to an entry, from its href relative to the listing."""
        if self.signer is None:
            return href
        path = self.base + href
        return f"{path}?{self._signature(path)}"

    def view(self, query: str) -> str:
        """A link to another view of this listing (`query` without "?"; "" for the default)."""
        if self.signer is None:
            return "?" + query if query else "./"
        return f"{self.base}?{query + '&' if query else ''}{self._here}"

    def absolute_view(self, query: str) -> str:
        """The same as an absolute URL path: JSON's `next` and `prev`."""
        if self.signer is None:
            return self.base + ("?" + query if query else "")
        return self.view(query)

    def above(self, path: str) -> str:
        """A link to a directory above this one (absolute URL path): never signed."""
        return path

    def form_fields(self) -> list[tuple[str, str]]:
        """Hidden fields a GET form on the page must carry to stay signed."""
        if self.signer is None:
            return []
        return [(EXPIRES_PARAM, str(self.expires)), (SIGNATURE_PARAM, self._sig(self.base))]

    def _signature(self, path: str) -> str:
        return f"{EXPIRES_PARAM}={self.expires}&{SIGNATURE_PARAM}={self._sig(path)}"

    def _sig(self, path: str) -> str:
        assert self.signer is not None
        return self.signer.sign("GET", path, self.expires)

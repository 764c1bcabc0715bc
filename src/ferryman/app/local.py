"""A local directory as SOURCE: the Root says what a path is, a reader answers it.

The Root (app/root.py) resolves, confines and opens; each reader acts on
what it hands over: a file (app/files.py), a directory's listing
(app/listing.py), a path through an archive (app/archive.py), or the
redirect to a directory's slash form, or the 404 of a path with nothing
to serve. A plain GET of a small file kept in
memory (a small member of a .tar too) is answered before any of that
(app/bodycache.py).
"""

from __future__ import annotations

from collections.abc import Awaitable

from ferryman.app import listing
from ferryman.app.archive import ArchiveReader
from ferryman.app.browse import Browse
from ferryman.app.files import FileReader
from ferryman.app.listingcache import ListingCache
from ferryman.app.root import Missing, OpenedDirectory, OpenedFile, Redirect, Root
from ferryman.app.spool import Spool
from ferryman.config import Config
from ferryman.http.parser import Request
from ferryman.http.response import Response


class LocalReader:
    @classmethod
    def of(cls, config: Config) -> LocalReader:
        """The reader of SOURCE, a directory, with its Root (the root directory opened)."""
        root = Root(config)
        files = FileReader(config, root)
        browse = Browse.of(config)
        archives = ArchiveReader(
            Spool.of(config),
            max_member_size=config.max_member_size,
            cache_control=config.cache_control,
            max_ranges=config.max_ranges,
            compression=files.compression,  # one memory of coded bodies per worker
            browse=browse,
            small=files.cache,  # one memory of small answers per worker
            small_body=config.small_body,
            root_fd=root.fd,
        )
        pages = ListingCache(config.listing_cache, config.listing_cache_age)
        return cls(root, files, archives, browse, pages)

    def __init__(
        self,
        root: Root,
        files: FileReader,
        archives: ArchiveReader,
        browse: Browse,
        pages: ListingCache | None = None,
    ) -> None:
        self.root = root
        self.files = files
        self.archives = archives
        self.browse = browse
        self.pages = pages  # listing pages kept for a moment (--listing-cache)

    def get(self, request: Request) -> Response | Awaitable[Response]:
        hit = self.files.remembered(request)
        if hit is not None:
            return hit
        found = self.root.locate(request)
        if isinstance(found, OpenedFile):
            return self.files.respond(request, found.opened, found.name, found.relative)
        if isinstance(found, Missing):
            return found.response(request)
        if isinstance(found, Redirect):
            return found.response
        if isinstance(found, OpenedDirectory):
            return listing.respond(
                request, found.path, found.fd, self.root, self.browse, self.files.cache_control,
                self.pages,
            )  # fmt: skip
        return self.archives.respond(request, found.path, found.count, found.opened)

    def tick(self) -> None:
        """Once a second: close descriptors kept too long unused, and look again for the
        sidecars found missing."""
        self.root.sweep()
        self.files.tick()

    def close(self) -> None:
        self.root.close()

"""Answering a local file: decide, then describe the body.

The Root (app/root.py) has resolved the path, opened the file relative to
the root's descriptor, fstat'ed the *open* descriptor (no stat/open race)
and confirmed where it really points. Here: preconditions and ranges are
evaluated (app/plan.py) and a Response is returned whose body is regions of
that descriptor. This request's use of the descriptor is released by the
body's cleanup, which the connection runs when the transfer ends; every
early return releases it here. A small file whose bytes are in the page
cache is answered from memory, and kept there for the next plain GET of the
same path while it is the same file (app/bodycache.py). A compressible file
is negotiated (app/compression.py): a fresh precompressed sidecar beside it,
a coding on the fly, or the file as it is; its answers vary with
Accept-Encoding, so none of them is kept in that memory.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from typing import Final

from ferryman.app.bodycache import SmallBodyCache, same_file
from ferryman.app.compression import (
    SIDECAR_SUFFIX,
    Compression,
    FileSource,
    fresh_sidecar,
)
from ferryman.app.digestindex import DigestIndex
from ferryman.app.mime import content_type
from ferryman.app.openfiles import OpenFile
from ferryman.app.plan import Representation, plan_response
from ferryman.app.root import Root
from ferryman.config import Config
from ferryman.http.body import Body
from ferryman.http.parser import Request
from ferryman.http.response import Response
from ferryman.pagecache import read_nowait

_NO_SIDECAR_MAX: Final = 4096  # missing sidecars remembered between two ticks, at most


def file_etag(st: os.stat_result) -> str:
    """A strong ETag from the file's identity: inode, size, mtime and ctime in nanoseconds.

    The ctime changes with every change to the file, even an edit of the same
    size whose writer restored the mtime, so such an edit gets a new ETag.
    """
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ctime_ns:x}"'


class FileReader:
    """Answers requests for the regular files the Root opened."""

    def __init__(self, config: Config, root: Root) -> None:
        self.root = root
        self.cache_control = config.cache_control
        self.max_ranges = config.max_ranges
        self.small_body = config.small_body
        self.digests: DigestIndex | None = None  # set when a catalog exists
        self.cache = (
            SmallBodyCache(max_bytes=config.file_cache)
            if config.file_cache and self.small_body
            else None
        )
        self.compression = Compression.of(config)
        # Sidecars found missing since the last tick: not looked for again until then. A
        # browser offers zstd, br and gzip; a site that ships only X.gz would otherwise
        # cost two failed opens per answer. What it delays is harmless: an answer coded
        # on the fly is as right as the sidecar, which is used from the next tick on.
        self._no_sidecar: set[str] = set()

    def tick(self) -> None:
        """Once a second: look again for the sidecars found missing."""
        self._no_sidecar.clear()

    def remembered(self, request: Request) -> Response | None:
        """The answer kept in memory for this request's path, if it still holds."""
        if self.cache is None:
            return None
        return self.cache.response(request)

    def respond(
        self, request: Request, opened: OpenFile, name: str, relative: str
    ) -> Response | Awaitable[Response]:
        """Preconditions, ranges and headers for an open regular file.

        This request's use of `opened` belongs to the returned body, or is
        released here (for a 304, an answer from memory, or any exception).
        """
        try:
            digests = self.digests
            if digests is not None and digests.threaded and not digests.known(relative, opened.st):
                return self._after_lookup(digests, request, opened, name, relative)
            return self._file_response(request, opened, name, relative)
        except BaseException:
            opened.release()
            raise

    async def _after_lookup(
        self, digests: DigestIndex, request: Request, opened: OpenFile, name: str, relative: str
    ) -> Response:
        """The answer once the catalog (PostgreSQL) has said this version's digest, asked
        in a thread: the event loop never waits on the network."""
        try:
            await digests.learn(relative, opened.st)
            answer = self._file_response(request, opened, name, relative)
        except BaseException:
            opened.release()
            raise
        # An awaitable answer owns `opened` now, as it does when respond() returns it.
        return answer if isinstance(answer, Response) else await answer

    def _file_response(
        self, request: Request, opened: OpenFile, name: str, relative: str
    ) -> Response | Awaitable[Response]:
        rep = self._representation(opened, name, relative)
        if rep.vary:
            return self._negotiated(request, opened, name, relative, rep)
        st = opened.st
        plan = plan_response(request, rep, max_ranges=self.max_ranges)
        if plan.status == 304:
            opened.release()
            return rep.not_modified()
        if plan.status == 200 and st.st_size <= self.small_body and self.cache is not None:
            small = self._remember(request, relative, opened, rep)
            if small is not None:
                opened.release()
                return small
        return Response(
            plan.status, plan.headers, plan.body(opened.fd, 0, opened.release), plan.head_block
        )

    def _representation(self, opened: OpenFile, name: str, relative: str) -> Representation:
        """The file's validators and headers: made at its first answer, then kept with it.

        Its Repr-Digest is asked for every time, as the digest index may learn
        it after the descriptor was opened.
        """
        st = opened.st
        digest = None if self.digests is None else self.digests.repr_digest(relative, st)
        rep = opened.representation
        if rep is None or rep.digest != digest:
            rep = Representation(
                size=st.st_size,
                etag=file_etag(st),
                last_modified=int(st.st_mtime),
                name=name,
                cache_control=self.cache_control,
                digest=digest,
                vary=self.compression is not None
                and self.compression.negotiates(content_type(name)),
            )
            opened.representation = rep
        return rep

    # -- a compressible file: negotiated --------------------------------------------------

    def _negotiated(
        self, request: Request, opened: OpenFile, name: str, relative: str, rep: Representation
    ) -> Response | Awaitable[Response]:
        """A sidecar, a coding on the fly, or identity, as app/compression.py decides."""
        compression = self.compression
        assert compression is not None
        for choice in compression.choices(request, rep, sidecars=True):
            coding = choice.coding
            if coding is None:
                break
            if choice.sidecar:
                answer = self._sidecar(request, opened, name, relative, coding)
                if answer is not None:
                    return answer
                continue
            coded = compression.coded(rep, coding, name)
            source = FileSource(opened.fd, 0, rep.size, opened.release)
            return compression.on_the_fly(request, coded, coding, source)
        plan = plan_response(request, rep, max_ranges=self.max_ranges)
        if plan.status == 304:
            opened.release()
            return rep.not_modified()
        if (
            plan.status == 200
            and rep.size <= self.small_body
            and self.cache is not None
            and "accept-encoding" not in request.headers
        ):
            small = self._remember(request, relative, opened, rep)
            if small is not None:
                opened.release()
                return small
        return Response(
            plan.status, plan.headers, plan.body(opened.fd, 0, opened.release), plan.head_block
        )

    def _sidecar(
        self, request: Request, opened: OpenFile, name: str, relative: str, coding: str
    ) -> Response | None:
        """The answer from `relative` + `.gz` (`.br`, `.zst`) if it is there and fresh:
        exact ranges of its bytes, X's type, the coding. Releases `opened` when it answers.

        The sidecar's descriptor is kept open like any file's, with the representation
        made at its first answer: a sidecar asked for again costs one stat().
        """
        compression = self.compression
        assert compression is not None
        side_path = relative + SIDECAR_SUFFIX[coding]
        if side_path in self._no_sidecar:
            return None
        side = self.root.regular_file(side_path)
        if side is None:  # missing, or not to be served: coded on the fly instead
            if len(self._no_sidecar) >= _NO_SIDECAR_MAX:
                self._no_sidecar.clear()
            self._no_sidecar.add(side_path)
            return None
        try:
            st = side.st
            if not fresh_sidecar(st, opened.st):
                side.release()
                return None
            rep = side.sidecar_representation
            if rep is None:
                rep = side.sidecar_representation = compression.sidecar_rep(
                    coding, file_etag(st), int(st.st_mtime), st.st_size, name
                )
            # One range at most: a multipart body would read as coded as a whole.
            plan = plan_response(request, rep, max_ranges=1)
        except BaseException:
            side.release()
            raise
        if plan.status == 304:
            side.release()
            answer = rep.not_modified()
        else:
            body = plan.body(side.fd, 0, side.release)
            answer = Response(plan.status, plan.headers, body, plan.head_block)
        opened.release()
        return answer

    def _remember(
        self, request: Request, relative: str, opened: OpenFile, rep: Representation
    ) -> Response | None:
        """Answer a small, cached-in-RAM file from bytes, and keep it for next time."""
        assert self.cache is not None
        size = opened.st.st_size
        body = read_nowait(opened.fd, 0, size)
        if body is None or len(body) != size:
            return None  # cold or changing: the connection reads it the usual way
        current = same_file(self.root.fd, relative, opened.identity, opened.route)
        self.cache.store(request, current, rep, body)
        return Response(200, rep.whole, Body((body,)), rep.whole_block())

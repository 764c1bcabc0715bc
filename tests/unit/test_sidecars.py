"""Sidecars found missing are not looked for again until the worker's next tick; one
added meanwhile is used from then on, and the answers before it are still right."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import brotli

from ferryman.app.local import LocalReader
from ferryman.config import Config
from ferryman.http.body import FileRegion
from ferryman.http.response import Response
from tests.builders import request

DOCUMENT = b'{"items": [' + b",".join(b'{"n": %d}' % n for n in range(3000)) + b"]}"
BROWSER = {"accept-encoding": "gzip, deflate, br, zstd"}  # what browsers send


def answer(reader: LocalReader) -> tuple[str | None, bytes]:
    """The Content-Encoding and the bytes of the answer to a browser's GET of /doc.json."""
    response = reader.get(request("GET", "/doc.json", BROWSER))
    assert isinstance(response, Response)  # a sidecar's answer is not awaited
    try:
        body = b"".join(
            os.pread(p.fd, p.count, p.offset) if isinstance(p, FileRegion) else p
            for p in response.body.parts
        )
        return dict(response.headers).get("Content-Encoding"), body
    finally:
        response.body.release()


def test_a_missing_sidecar_is_looked_for_again_at_the_next_tick(tmp_path: Path) -> None:
    (tmp_path / "doc.json").write_bytes(DOCUMENT)
    coded = gzip.compress(DOCUMENT, 9)
    (tmp_path / "doc.json.gz").write_bytes(coded)
    reader = LocalReader.of(Config(source=str(tmp_path)))
    try:
        assert answer(reader) == ("gzip", coded)  # .zst and .br looked for, missing
        assert reader.files._no_sidecar == {"doc.json.zst", "doc.json.br"}
        br = brotli.compress(DOCUMENT)
        (tmp_path / "doc.json.br").write_bytes(br)
        # Until the tick the .br is not looked for: the .gz answers, rightly.
        encoding, body = answer(reader)
        assert encoding == "gzip" and zlib.decompress(body, 31) == DOCUMENT
        reader.tick()
        assert answer(reader) == ("br", br)
        assert reader.files._no_sidecar == {"doc.json.zst"}
    finally:
        reader.close()


def test_the_memory_of_missing_sidecars_is_bounded(tmp_path: Path) -> None:
    # Sidecars only (nothing coded on the fly): every answer is the file as it is.
    reader = LocalReader.of(Config(source=str(tmp_path), compress=()))
    try:
        for n in range(2100):  # three sidecars missing for each: 6,300 misses
            name = f"f{n}.json"
            (tmp_path / name).write_bytes(b"[1, 2, 3]" * 200)
            response = reader.get(request("GET", f"/{name}", BROWSER))
            assert isinstance(response, Response) and response.status == 200
            response.body.release()
            (tmp_path / name).unlink()
            assert len(reader.files._no_sidecar) <= 4096
        assert "f2099.json.gz" in reader.files._no_sidecar
    finally:
        reader.close()

"""The compiled request path, and the pure-Python fallback that is always there.

The modules in MODULES are plain, type-checked Python. `make` compiles them
with mypyc (tools/build_native.py) into extension modules beside their
sources, which Python then imports instead of the `.py` files: the same code,
about a third less time per request (docs/performance.md). The few modules in
C_MODULES are written in C (their callers keep a pure-Python twin, tested to
give the same answers). The build writes MANIFEST, the SHA-256 of every source
it compiled.

A compiled module must never run code that differs from its source, so at
the first import of `ferryman` this module compares the manifest with the
sources. If any source changed since the build, the manifest is missing, or
FERRYMAN_PURE=1 is set, every module in MODULES is imported from its `.py`
file instead (all of them: compiled modules call each other directly, so
mixing a stale one with fresh ones is not safe), and no module in C_MODULES
is used.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "_native_manifest.json"
GROUP = "ferryman._native"  # mypyc's shared library: ferryman/_native__mypyc.*.so

# What every request runs through, and what an audit runs once per key of every
# store (its walk, comparison and loop). Modules kept out: those with async
# generators (mypyc cannot compile them yet) and everything off those paths.
MODULES = (
    "ferryman.http.body",
    "ferryman.http.conditional",
    "ferryman.http.dates",
    "ferryman.http.multipart",
    "ferryman.http.host",
    "ferryman.http.parser",
    "ferryman.http.ranges",
    "ferryman.http.response",
    "ferryman.http.spans",
    "ferryman.pagecache",
    "ferryman.server.accesslog",
    "ferryman.server.connection",
    "ferryman.server.context",
    "ferryman.server.deadline",
    "ferryman.server.flowcontrol",
    "ferryman.server.phase",
    "ferryman.server.transfer",
    "ferryman.server.zerocopy",
    "ferryman.app.bodycache",
    "ferryman.app.compression",
    "ferryman.app.dispatch",
    "ferryman.app.files",
    "ferryman.app.local",
    "ferryman.app.openfiles",
    "ferryman.app.paths",
    "ferryman.app.plan",
    "ferryman.app.remote",
    "ferryman.app.root",
    "ferryman.cache.cached",
    "ferryman.cache.client",
    "ferryman.cache.entryfiles",
    "ferryman.cache.entrymeta",
    "ferryman.cache.segments",
    "ferryman.metrics.tally",
    "ferryman.requestid",
    "ferryman.audit.compare",
    "ferryman.audit.model",
    "ferryman.audit.localtree",
    "ferryman.audit.run",
)
# Written in C, not compiled from Python: module -> its source, beside it. Each has
# a pure-Python twin its caller falls back to (the module says where).
C_MODULES = {
    "ferryman._pagecache": "_pagecache.c",
    "ferryman.app._fileat": "_fileat.c",
    "ferryman.audit._dirscan": "_dirscan.c",
    "ferryman.http._headscan": "_headscan.c",
}


def source_path(module: str) -> Path:
    return PACKAGE_DIR.parent.joinpath(*module.split(".")).with_suffix(".py")


def c_source_path(module: str) -> Path:
    return source_path(module).with_name(C_MODULES[module])


def digests(modules: Sequence[str] = MODULES) -> dict[str, str]:
    found = {m: hashlib.sha256(source_path(m).read_bytes()).hexdigest() for m in modules}
    for module in C_MODULES:
        found[module] = hashlib.sha256(c_source_path(module).read_bytes()).hexdigest()
    return found


def write_manifest() -> None:
    MANIFEST.write_text(json.dumps({"modules": digests()}, indent=1, sort_keys=True) + "\n")


def compiled_file(module: str) -> Path | None:
    """The extension module built for `module`, if there is one."""
    source = source_path(module)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def why_pure(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why the compiled modules must not be used, or None if they may."""
    if environ.get("FERRYMAN_PURE", "") not in ("", "0"):
        return "FERRYMAN_PURE is set"
    if not any(compiled_file(m) for m in MODULES):
        return "not compiled (make builds it; needs a C compiler and Python's headers)"
    try:
        built = json.loads(MANIFEST.read_text())["modules"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable build manifest ({MANIFEST.name})"
    now = digests()
    if built != now:
        changed = sorted(m for m in built.keys() | now.keys() if built.get(m) != now.get(m))
        return f"sources changed since the build: {', '.join(changed)}"
    return None


class _SourceFinder:
    """Imports every ferryman module that has a build from its .py file instead.

    A meta path finder needs only find_spec (importlib.abc.MetaPathFinder would
    add nothing but 40 ms of imports to every ferryman process's start).

    Not only those in MODULES: a module dropped from the list may still have
    an extension file from an older build, and it must not run either.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("ferryman.") or compiled_file(fullname) is None:
            return None
        source = source_path(fullname)
        if not source.exists():  # written in C: its caller falls back to its twin
            raise ModuleNotFoundError(f"{fullname}: not used ({STATUS})", name=fullname)
        return importlib.util.spec_from_file_location(fullname, source)


STATUS = "compiled"  # set by choose(): "compiled", or "pure Python: <reason>"


def choose() -> str:
    """Decide once per process, before any module in MODULES is imported."""
    global STATUS
    reason = why_pure()
    if reason is not None:
        if not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _SourceFinder())
        STATUS = f"pure Python: {reason}"
    return STATUS

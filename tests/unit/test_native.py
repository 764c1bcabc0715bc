"""The compiled request path is used only when it matches its sources."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ferryman import native

EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def loaded_from(environ: dict[str, str]) -> dict[str, str]:
    """Where a fresh interpreter imports every module in MODULES from."""
    code = (
        "import json, importlib, ferryman\n"
        "from ferryman import native\n"
        "files = {m: importlib.import_module(m).__file__ for m in native.MODULES}\n"
        "print(json.dumps({'status': native.STATUS, 'files': files}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FERRYMAN_PURE"} | environ
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


def test_pure_python_is_forced_by_the_environment() -> None:
    result = loaded_from({"FERRYMAN_PURE": "1"})
    assert result["status"] == "pure Python: FERRYMAN_PURE is set"
    files = result["files"]
    assert isinstance(files, dict)
    assert all(path.endswith(".py") for path in files.values()), files


def test_an_up_to_date_build_is_what_runs() -> None:
    reason = native.why_pure(environ={})
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"make builds the request path in CI, yet: {reason}")
        pytest.skip(reason)
    result = loaded_from({})
    assert result["status"] == "compiled"
    files = result["files"]
    assert isinstance(files, dict)
    assert set(files) == set(native.MODULES)
    assert all(path.endswith(EXTENSIONS) for path in files.values()), files


def write_manifest(path: Path, modules: dict[str, str]) -> None:
    path.write_text(json.dumps({"modules": modules}))


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build of every module whose manifest the test writes (at the returned path)."""
    monkeypatch.setattr(native, "compiled_file", lambda module: tmp_path / "x.so")
    path = tmp_path / "manifest.json"
    monkeypatch.setattr(native, "MANIFEST", path)
    return path


def test_a_changed_source_makes_the_build_unusable(manifest: Path) -> None:
    digests = native.digests()
    write_manifest(manifest, digests)
    assert native.why_pure(environ={}) is None

    write_manifest(manifest, digests | {"ferryman.http.parser": "0" * 64})
    reason = native.why_pure(environ={})
    assert reason == "sources changed since the build: ferryman.http.parser"

    write_manifest(manifest, {m: d for m, d in digests.items() if m != "ferryman.app.files"})
    assert native.why_pure(environ={}) == "sources changed since the build: ferryman.app.files"

    manifest.write_text("{not json")
    assert native.why_pure(environ={}) == "no readable build manifest (manifest.json)"
    manifest.unlink()
    assert native.why_pure(environ={}) == "no readable build manifest (manifest.json)"


def test_no_build_at_all_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "compiled_file", lambda module: None)
    reason = native.why_pure(environ={})
    assert reason is not None and reason.startswith("not compiled")
    assert native.why_pure(environ={"FERRYMAN_PURE": "0"}) == reason
    assert native.why_pure(environ={"FERRYMAN_PURE": "yes"}) == "FERRYMAN_PURE is set"


def test_the_source_finder_answers_for_every_built_ferryman_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = {"ferryman.http.parser", "ferryman.cli"}  # cli: dropped from MODULES, still built
    monkeypatch.setattr(
        native, "compiled_file", lambda module: tmp_path / "x.so" if module in built else None
    )
    finder = native._SourceFinder()
    for module in built:
        spec = finder.find_spec(module, None)
        assert spec is not None and spec.origin == str(native.source_path(module))
        assert spec.origin.endswith(".py")
    assert finder.find_spec("ferryman.config", None) is None  # no build: the usual import
    assert finder.find_spec("json", None) is None


def test_a_module_dropped_from_the_list_is_named_as_changed(manifest: Path) -> None:
    write_manifest(manifest, native.digests() | {"ferryman.app.gone": "0" * 64})
    assert native.why_pure(environ={}) == "sources changed since the build: ferryman.app.gone"


def test_every_listed_module_has_a_source() -> None:
    for module in native.MODULES:
        assert native.source_path(module).is_file(), module
    assert "ferryman.native" not in native.MODULES  # it decides; it is never compiled

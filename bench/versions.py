"""Which version of each server ran: recorded in the JSON next to the figures."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from settings import REPO_DIR, Settings


def _output(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (proc.stdout + proc.stderr).strip()
    return text.splitlines()[0] if proc.returncode == 0 and text else "unknown"


def _package(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} not installed"


def _ferryman(settings: Settings) -> str:
    executable = Path(settings.ferryman)
    if not executable.exists():
        return "not installed"
    python = executable.parent / "python"
    code = "import importlib.metadata as m; print('ferryman', m.version('ferryman'))"
    version = _output([str(python), "-c", code])
    commit = _output(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    extra = f", args {' '.join(settings.ferryman_args)}" if settings.ferryman_args else ""
    return f"{version} (git {commit}{extra})"


def _openssl() -> str:
    return _output(["openssl", "version"])


def server_version(name: str, settings: Settings) -> str:
    if name == "ferryman":
        return _ferryman(settings)
    if name == "ferryman-pure":
        return f"{_ferryman(settings)}, pure Python"
    if name == "ferryman-https":
        python = Path(settings.ferryman).parent / "python"
        code = "import ssl; print(ssl.OPENSSL_VERSION)"
        return f"{_ferryman(settings)}, {_output([str(python), '-c', code])}"
    if name == "nginx":
        return _output(["nginx", "-v"]).removeprefix("nginx version: ")
    if name == "nginx-https":
        return f"{server_version('nginx', settings)}, {_openssl()}"
    if name == "caddy":
        return "caddy " + _output(["caddy", "version"]).split()[0]
    if name == "aiohttp":
        return f"{_package('aiohttp')}, {_package('uvloop')}"
    if name == "starlette":
        return f"{_package('starlette')}, {_package('uvicorn')}, {_package('httptools')}"
    if name == "tornado":
        return _package("tornado")
    if name == "http.server":
        return f"Python {platform.python_version()}"
    if name == "probe":
        return f"{_package('uvloop')}, {_package('httptools')}"
    return "unknown"

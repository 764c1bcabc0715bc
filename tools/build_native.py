"""Compile ferryman's request path with mypyc, in place; skip when up to date.

    .venv/bin/python tools/build_native.py [--force] [--clean]

The modules are listed in src/ferryman/native.py, which also decides at run
time whether the build may be used (it must match its sources). Exits 0
without building when no C compiler or no Python headers are found: ferryman
then runs as pure Python, and says so in its startup log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
os.environ["FERRYMAN_PURE"] = "1"  # this process imports sources, never a build
sys.path.insert(0, str(SRC))

from ferryman import native  # noqa: E402


def built_files() -> list[Path]:
    return [p for p in (SRC / "ferryman").rglob("*") if p.name.endswith((".so", ".pyd"))]


def clean() -> None:
    for path in built_files():
        path.unlink()
    native.MANIFEST.unlink(missing_ok=True)


def missing_toolchain() -> str | None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        return f"no Python headers ({headers})"
    return None


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import Extension, setup

    paths = [str(native.source_path(m).relative_to(ROOT)) for m in native.MODULES]
    # The project's mypy settings cover tests too; their sections unused here are fine.
    flags = ["--no-warn-unused-configs"]
    extensions = mypycify([*flags, *paths], group_name=native.GROUP, opt_level="3")
    for module in native.C_MODULES:
        source = str(native.c_source_path(module).relative_to(ROOT))
        extensions.append(
            Extension(module, [source], extra_compile_args=["-O2", "-Wall", "-Wextra"])
        )
    setup(
        name="ferryman-native",
        package_dir={"": "src"},
        ext_modules=extensions,
        script_args=["--quiet", "build_ext", "--inplace", "--build-temp", "build/native"],
    )
    native.write_manifest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--clean", action="store_true", help="remove the build and stop")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.clean:
        clean()
        return 0
    if not args.force and native.why_pure(environ={}) is None:
        print("native build: up to date")
        return 0
    clean()  # never leave a module compiled that is no longer listed
    problem = missing_toolchain()
    if problem is not None:
        print(f"native build: skipped, {problem}; ferryman runs as pure Python", file=sys.stderr)
        return 0
    print(f"native build: compiling {len(native.MODULES)} modules with mypyc and "
          f"{len(native.C_MODULES)} written in C ...", flush=True)  # fmt: skip
    build()
    print("native build: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

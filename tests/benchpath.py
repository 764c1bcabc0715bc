"""The benchmark's modules, for the tests of them: bench/ on sys.path.

The bench's modules import each other by plain name (`from clientload import
...`), so bench/ goes on sys.path; but bench/ also holds bench/bench.py, which
would then shadow the package `bench` that other tests import from
(`bench.soak`). The package is imported first, so every later `import bench`
finds it in sys.modules, whatever order pytest collects the tests in.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bench.soak  # noqa: F401 (imported for its side effect: `bench` is the package)

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

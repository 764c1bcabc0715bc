"""The audit benchmark: `ferryman audit` beside rclone check and sha256sum -c, same trees.

    make bench-audit [QUICK=1]
    python bench/audit_bench.py [--quick] [--rounds N] [--skip-s3] [--sections a,b] ...

Four sections, each on one pair of trees (SOURCE and a mirror holding the
same files; audit_trees.py), each tool pinned to the tool CPU (1) and the
S3 server to the other (0):

- listing-local (keys/s): `ferryman audit` without --deep against
  `rclone check --size-only`, on many small files in nested directories
  (50,000; 5,000 with --quick);
- listing-s3 (keys/s): the same on two buckets of moto's S3 server holding
  the first 10,000 of them (1,000 with --quick): moto lists slowly, and
  both tools wait for it;
- deep-cold (MB/s): `ferryman audit --deep` against `sha256sum -c`,
  `rclone check --download` and `rclone check` (MD5), on large files (2 GiB
  in files of 1 to 64 MiB; 256 MiB in 1 to 16 MiB with --quick), the page
  cache dropped before every run;
- deep-warm (MB/s): the same with every file read into the page cache first.

A run counts only when the tool found every key equal in both trees and
reported nothing else. Each figure is the median of --rounds rounds (5;
3 with --quick), the tools taking turns in an order that rotates each round.
Prints a table with ferryman/peer ratios and each tool's CPU time; writes
bench/results/audit-latest.json. What it measures and the last full run:
docs/performance.md, "ferryman audit beside rclone and sha256sum".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from audit_report import ratios, render_notes, render_table, render_targets, reported, target
from audit_sections import (
    NEEDED,
    SECTIONS,
    AuditSettings,
    Section,
    build_trees,
    deep,
    listing_local,
    listing_s3,
    run_section,
    settings_for,
    start_moto,
)
from audit_tools import drop_page_cache, ferryman_env, version_of
from audit_trees import MIB
from settings import REPO_DIR, RESULTS_DIR


def _commit() -> str:
    """ " (commit abc1234)", or " (commit abc1234, changed)" with uncommitted changes."""
    head = version_of(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    if not head:
        return ""
    dirty = version_of(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "src"])
    return f" (commit {head}{', changed' if dirty else ''})"


def host_info() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pages = 0
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "memory_gib": round(pages / 2**30, 1),
        "filesystem": _filesystem(),
    }


def _filesystem() -> str:
    """The type of the filesystem the trees are on (tempfile's directory)."""
    where = os.path.realpath(tempfile.gettempdir())
    best = ("", "")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, point, kind, *_ = line.split()
            if where.startswith(point) and len(point) >= len(best[0]):
                best = (point, kind)
    except OSError:
        pass
    return best[1]


def document(
    sections: list[Section], settings: AuditSettings, cache: str, started: datetime, argv: list[str]
) -> dict[str, object]:
    versions = {
        "ferryman": version_of([sys.executable, "-m", "ferryman.cli", "--version"], ferryman_env())
        + _commit(),
        "rclone": version_of(["rclone", "version"]),
        "sha256sum": version_of(["sha256sum", "--version"]),
    }
    doc_sections = []
    found: dict[str, dict[str, float]] = {}
    for s in sections:
        found[s.key] = ratios(s.outcomes)
        doc_sections.append(
            {
                "key": s.key,
                "title": s.title,
                "unit": s.unit,
                "keys": s.expected,
                "work": s.work,
                "note": s.note,
                "tools": [
                    {
                        "name": t.name,
                        "command": t.shown(),
                        "version": versions["rclone" if t.name.startswith("rclone") else t.name],
                    }
                    for t in s.tools
                ],
                "results": [
                    {
                        "tool": name,
                        "status": o.status,
                        "note": o.note,
                        "metrics": {k: round(v, 4) for k, v in o.metrics.items()},
                        "rounds": o.details.get("rounds", []),
                    }
                    for name, o in s.outcomes.items()
                ],
                "ratios": {k: round(v, 4) for k, v in found[s.key].items()},
            }
        )
    targets = [
        target(
            "deep verify (cold) at least as fast as sha256sum -c",
            "deep-cold",
            "sha256sum",
            found.get("deep-cold", {}),
        ),
        target(
            "deep verify (warm) at least as fast as sha256sum -c",
            "deep-warm",
            "sha256sum",
            found.get("deep-warm", {}),
        ),
        target(
            "listing compare (local, repeated audit) at least as fast as rclone check",
            "listing-local",
            "rclone",
            found.get("listing-local", {}),
        ),
        reported(
            "listing compare (local, first audit) beside rclone check",
            "listing-local-first",
            "rclone",
            found.get("listing-local-first", {}),
        ),
        target(
            "listing compare (S3, moto, repeated audit) at least as fast as rclone check",
            "listing-s3",
            "rclone",
            found.get("listing-s3", {}),
        ),
        reported(
            "listing compare (S3, moto, first audit) beside rclone check",
            "listing-s3-first",
            "rclone",
            found.get("listing-s3-first", {}),
        ),
    ]
    return {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(argv),
        "mode": settings.mode,
        "host": host_info(),
        "settings": asdict(settings),
        "page_cache": cache,
        "sections": doc_sections,
        "targets": targets,
    }


def compile_checkout() -> None:
    """The checkout's modules compiled to bytecode, as `pip install` leaves them: with
    PYTHONDONTWRITEBYTECODE set, every timed run would compile them anew (0.1-0.2 s)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO_DIR / "src" / "ferryman")],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small trees, 3 rounds")
    parser.add_argument("--rounds", type=int, help="rounds per section; the median is reported")
    parser.add_argument("--small-files", type=int, help="files in the listing trees")
    parser.add_argument("--s3-objects", type=int, help="objects in each bucket")
    parser.add_argument("--deep-mib", type=int, help="MiB of large files in each deep tree")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}"
    )
    parser.add_argument("--skip-s3", action="store_true", help="leave out listing-s3")
    parser.add_argument("--tool-cpus", help="taskset CPU list for the tools (default 1)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    settings = settings_for(
        args.quick,
        rounds=args.rounds,
        small_files=args.small_files,
        s3_objects=args.s3_objects,
        deep_bytes=args.deep_mib * MIB if args.deep_mib else None,
        tool_cpus=args.tool_cpus,
    )
    if settings.s3_objects > settings.small_files:
        parser.error("--s3-objects: at most as many as --small-files (the buckets hold those)")
    wanted = [key for key in args.sections.split(",") if key]
    unknown = [key for key in wanted if key not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    if args.skip_s3:
        wanted = [key for key in wanted if key != "listing-s3"]
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        print(f"bench-audit: missing {', '.join(missing)}: run `make bench-tools`", file=sys.stderr)
        return 2
    cache = drop_page_cache() if "deep-cold" in wanted else ""
    if cache:
        print(f"bench-audit: {cache}; deep-cold left out (deep-warm only)", flush=True)
        wanted = [key for key in wanted if key != "deep-cold"]
    compile_checkout()
    started = datetime.now()
    tmp = Path(tempfile.mkdtemp(prefix="ferryman-audit-bench-"))
    moto = None
    sections: list[Section] = []
    try:
        config = tmp / "rclone.conf"
        config.write_text("")
        trees = build_trees(tmp, settings, wanted)
        for key in wanted:
            if key.startswith("listing-local"):
                first = key.endswith("-first")
                sections.append(listing_local(trees["small"], tmp, config, first=first))
            elif key.startswith("listing-s3"):
                if moto is None:
                    moto = start_moto(trees["small"], settings, tmp)
                first = key.endswith("-first")
                count = settings.s3_objects
                sections.append(listing_s3(trees["small"], count, tmp, config, moto, first=first))
            else:
                sections.append(deep(trees["large"], tmp, config, cold=key == "deep-cold"))
        for section in sections:
            run_section(section, settings)
    finally:
        if moto is not None:
            moto.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    doc = document(
        sections,
        settings,
        cache or "dropped before each deep-cold run",
        started,
        ["python", "bench/audit_bench.py", *sys.argv[1:]],
    )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / "audit-latest.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(
        f"ferryman audit beside rclone and sha256sum ({settings.mode} mode; medians of"
        f" {settings.rounds} rounds; ferryman/peer above 1: ferryman faster):"
    )
    print(render_table(doc))
    print("targets:\n" + render_targets(doc))
    notes = render_notes(doc)
    if notes:
        print("notes:\n" + notes)
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

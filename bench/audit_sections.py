"""The audit benchmark's sections: its settings, the trees and tools of each section,
and the rounds in which the tools take turns (audit_bench.py runs them)."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audit_moto import BenchMoto
from audit_report import merge_rounds, outcome_of
from audit_tools import (
    Tool,
    drop_page_cache,
    ferryman_tool,
    rclone_remote_env,
    rclone_tool,
    run_timed,
    sha256sum_tool,
)
from audit_trees import (
    MIB,
    Tree,
    read_all,
    small_body,
    small_key,
    write_inventory,
    write_large_tree,
    write_small_tree,
)
from outcome import Outcome
from settings import REPO_DIR

sys.path.insert(0, str(REPO_DIR))
from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, s3_env

SECTIONS = (
    "listing-local",
    "listing-local-first",
    "listing-s3",
    "listing-s3-first",
    "deep-cold",
    "deep-warm",
)
NEEDED = ("rclone", "sha256sum", "taskset")


@dataclass(frozen=True)
class AuditSettings:
    mode: str
    rounds: int
    small_files: int
    s3_objects: int
    deep_bytes: int
    deep_smallest: int
    deep_largest: int
    tool_cpus: str = "1"  # taskset CPU list of every tool
    server_cpus: str = "0"  # and of moto


def settings_for(quick: bool, **overrides: object) -> AuditSettings:
    if quick:
        base = AuditSettings("quick", 3, 5_000, 1_000, 256 * MIB, MIB, 16 * MIB)
    else:
        base = AuditSettings("full", 5, 50_000, 10_000, 2048 * MIB, MIB, 64 * MIB)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return AuditSettings(**{**asdict(base), **changes})


@dataclass
class Section:
    key: str
    title: str
    unit: str  # "objects" (keys/s) or "bytes" (MB/s)
    expected: int  # keys every tool must find equal
    work: int  # keys, or bytes read (both trees)
    tools: list[Tool]
    cold: bool = False  # drop the page cache before each run
    warm: Tree | None = None  # read this tree before each run
    server_pid: int | None = None
    note: str = ""
    outcomes: dict[str, Outcome] = field(default_factory=dict)


def run_section(section: Section, settings: AuditSettings) -> None:
    """Every tool, round after round, in an order that rotates; each tool's median."""
    print(f"{section.key}: {section.title}", flush=True)
    rounds: dict[str, list[Outcome]] = {tool.name: [] for tool in section.tools}
    for number in range(settings.rounds):
        shift = number % len(section.tools)
        for tool in section.tools[shift:] + section.tools[:shift]:
            if section.cold:
                drop_page_cache()
            elif section.warm is not None:
                read_all(section.warm)
            timed = run_timed(tool, settings.tool_cpus, section.server_pid)
            outcome = outcome_of(
                timed, tool.read(timed), section.expected, section.work, section.unit
            )
            rounds[tool.name].append(outcome)
            print(
                f"  round {number + 1}/{settings.rounds}, {tool.name}: {_said(outcome)}", flush=True
            )
    section.outcomes = {name: merge_rounds(each) for name, each in rounds.items()}


def _said(outcome: Outcome) -> str:
    if outcome.status != "ok":
        return f"{outcome.status}: {outcome.note}"
    m = outcome.metrics
    return f"{m['wall_s']:.2f} s, CPU {m['user_s']:.2f} user + {m['sys_s']:.2f} sys"


def build_trees(tmp: Path, settings: AuditSettings, wanted: list[str]) -> dict[str, Tree]:
    trees = {}
    if any(key.startswith("listing") for key in wanted):
        print(f"writing {settings.small_files:,} small files twice ...", flush=True)
        (tmp / "small").mkdir()
        trees["small"] = write_small_tree(tmp / "small", settings.small_files)
    if any(key.startswith("deep") for key in wanted):
        print(f"writing {settings.deep_bytes // MIB:,} MiB of large files twice ...", flush=True)
        (tmp / "large").mkdir()
        size = (settings.deep_bytes, settings.deep_smallest, settings.deep_largest)
        trees["large"] = write_large_tree(tmp / "large", *size)
    return trees


def listing_local(tree: Tree, tmp: Path, config: Path, *, first: bool) -> Section:
    """A repeated audit (the catalog knows every copy), or with `first` the first one."""
    tools = [
        ferryman_tool(
            str(tree.source),
            str(tree.mirror),
            tree.inventory,
            tmp / "state",
            deep=False,
            repeat=not first,
        ),
        rclone_tool("rclone", str(tree.source), str(tree.mirror), ["--size-only"], config),
    ]
    return Section(
        "listing-local-first" if first else "listing-local",
        f"{tree.keys:,} small files, two directory trees, {_which(first)}",
        "objects",
        tree.keys,
        tree.keys,
        tools,
    )


def listing_s3(
    tree: Tree, count: int, tmp: Path, config: Path, moto: BenchMoto, *, first: bool
) -> Section:
    """As listing_local, on two buckets."""
    inventory = tmp / "inventory-s3.csv"
    entries = [small_key(i) for i in range(count)]
    write_inventory(
        inventory,
        [
            (key, len(small_body(i)), hashlib.sha256(small_body(i)).hexdigest())
            for i, key in enumerate(entries)
        ],
    )
    env = s3_env(moto.url)
    remote = rclone_remote_env("moto", moto.url, ACCESS_KEY, SECRET_KEY, REGION)
    tools = [
        ferryman_tool(
            "s3://audit-src",
            "s3://audit-mirror",
            inventory,
            tmp / "state-s3",
            deep=False,
            repeat=not first,
            env=env,
        ),
        rclone_tool(
            "rclone",
            "moto:audit-src",
            "moto:audit-mirror",
            ["--size-only", "--fast-list"],
            config,
            remote,
        ),
    ]
    return Section(
        "listing-s3-first" if first else "listing-s3",
        f"{count:,} objects, two buckets on moto's S3 server, {_which(first)}",
        "objects",
        count,
        count,
        tools,
        server_pid=moto.pid,
    )


def _which(first: bool) -> str:
    if first:
        return "ferryman's first audit of them (its catalog learns every copy)"
    return "ferryman's repeated audit (its catalog knows every copy)"


def deep(tree: Tree, tmp: Path, config: Path, *, cold: bool) -> Section:
    src, mirror = str(tree.source), str(tree.mirror)
    tools = [
        ferryman_tool(src, mirror, tree.inventory, tmp / "state-deep", deep=True),
        sha256sum_tool(tree.root),
        rclone_tool("rclone --download", src, mirror, ["--download"], config),
        rclone_tool("rclone (MD5)", src, mirror, [], config),
    ]
    how = "the page cache dropped before each run" if cold else "every file in the page cache"
    title = f"{tree.nbytes / MIB:,.0f} MiB in {tree.keys} files, two trees, {how}"
    return Section(
        "deep-cold" if cold else "deep-warm",
        title,
        "bytes",
        tree.keys,
        2 * tree.nbytes,
        tools,
        cold=cold,
        warm=None if cold else tree,
    )


def start_moto(tree: Tree, settings: AuditSettings, tmp: Path) -> BenchMoto:
    print(
        f"starting moto with {settings.s3_objects:,} objects in each of two buckets ...", flush=True
    )
    keys = tmp / "s3-keys.txt"
    keys.write_text("".join(small_key(i) + "\n" for i in range(settings.s3_objects)))
    buckets = {"audit-src": tree.source, "audit-mirror": tree.mirror}
    return BenchMoto(keys, buckets, settings.server_cpus)

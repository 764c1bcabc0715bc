"""The tools the audit benchmark runs, and one timed run of a tool.

Every tool is run the same way: `taskset -c CPUS` (the benchmark's tool CPU),
its output to files, its wall time from just before the start to its exit,
and its user and system CPU seconds from wait4() on it (the rusage of that
process and of every child it waited for). For a run against moto, the
server's CPU seconds over the same window are read from /proc, so a run
limited by the server shows it.

What each tool is asked, and why these flags:

- ferryman: `ferryman audit SRC --replica MIRROR --inventory inventory.csv
  --state-dir DIR` (plus `--deep`): both stores against the inventory.
  DIR is emptied before each run, so each deep run and each "first" listing
  run is a first audit of the trees (nothing resumed, no digest trusted from
  an earlier run; the catalog learns every copy). A "repeat" listing run
  follows one untimed audit of the same trees into the same DIR: the
  steady state of an archive audited on a schedule, where the catalog
  already knows every copy.
- `rclone check SRC MIRROR --size-only`: the listing compare; without
  --size-only, rclone check reads both sides of local files to compare their
  MD5s, a deep check. For S3, `--fast-list` too: one listing of the whole
  bucket, as ferryman lists, instead of one per directory (rclone's own
  choice for a bucket; faster against moto here).
- `sha256sum -c SHA256SUMS` in the trees' directory: the manifest names the
  files of both trees, so it reads the bytes the others read.
- `rclone check --download SRC MIRROR`: reads both sides and compares the
  bytes (no hashing); and plain `rclone check` on local files: MD5 of both.

rclone gets an empty config file (no notice about a missing one) and an
environment without AWS_* variables (an AWS_CA_BUNDLE makes rclone's S3
client refuse to start); its S3 remote is set by RCLONE_CONFIG_MOTO_*.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audit_report import (
    Timed,
    Verdict,
    parse_ferryman_audit,
    parse_rclone_check,
    parse_sha256sum_check,
)
from proctree import cpu_seconds
from settings import REPO_DIR

RUN_TIMEOUT = 1800.0  # seconds a tool may take before it is killed (and the round errs)


@dataclass
class Tool:
    """One way to compare the trees: the argv, where and how it is run, and how its
    output is read (`read(timed)` says what it compared)."""

    name: str
    command: list[str]
    read: Callable[[Timed], Verdict]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    before: Callable[[], None] | None = None  # untimed, before each run

    def shown(self) -> str:
        """The command as the docs and the JSON show it."""
        return " ".join(self.command)


def ferryman_tool(
    src: str,
    mirror: str,
    inventory: Path,
    state: Path,
    *,
    deep: bool,
    repeat: bool = False,
    env: dict[str, str] | None = None,
) -> Tool:
    """The checkout's ferryman (its src/ first on the path) under this Python; with
    `repeat`, the timed run is the second audit into the same state directory."""
    command = [
        sys.executable,
        "-m",
        "ferryman.cli",
        "audit",
        src,
        "--replica",
        mirror,
        "--inventory",
        str(inventory),
        "--state-dir",
        str(state),
    ]
    if deep:
        command.append("--deep")
    full_env = {**ferryman_env(), **(env or {})}

    def before() -> None:
        shutil.rmtree(state, ignore_errors=True)
        if repeat:  # the first audit, untimed
            done = subprocess.run(command, capture_output=True, text=True, env=full_env,
                                  timeout=RUN_TIMEOUT)  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"the untimed first audit failed: {done.stderr[-500:]}")

    return Tool(
        "ferryman",
        command,
        lambda t: parse_ferryman_audit(t.stdout),
        env=full_env,
        before=before,
    )


def rclone_tool(
    name: str,
    src: str,
    mirror: str,
    flags: list[str],
    config: Path,
    remote_env: dict[str, str] | None = None,
) -> Tool:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env = {**clean, "RCLONE_CONFIG": str(config), **(remote_env or {})}
    return Tool(
        name,
        ["rclone", "check", *flags, src, mirror],
        lambda t: parse_rclone_check(t.stderr),
        env=env,
    )


def sha256sum_tool(root: Path) -> Tool:
    return Tool(
        "sha256sum",
        ["sha256sum", "-c", "SHA256SUMS"],
        lambda t: parse_sha256sum_check(t.stdout, t.stderr),
        cwd=root,
    )


def rclone_remote_env(
    name: str, endpoint: str, access_key: str, secret_key: str, region: str
) -> dict[str, str]:
    """An rclone S3 remote NAME on `endpoint`, by environment variables alone."""
    prefix = f"RCLONE_CONFIG_{name.upper()}_"
    return {
        prefix + k: v
        for k, v in {
            "TYPE": "s3",
            "PROVIDER": "Other",
            "ENDPOINT": endpoint,
            "REGION": region,
            "ACCESS_KEY_ID": access_key,
            "SECRET_ACCESS_KEY": secret_key,
            "FORCE_PATH_STYLE": "true",
        }.items()
    }


def ferryman_env() -> dict[str, str]:
    """This environment with the checkout's src/ first on the path: the code measured is
    the checkout's, whichever ferryman the virtualenv has installed."""
    path = os.pathsep.join(filter(None, [str(REPO_DIR / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run_timed(tool: Tool, cpus: str, server_pid: int | None = None) -> Timed:
    """Run the tool once on `cpus`; wall and CPU seconds, exit status and output."""
    if tool.before is not None:
        tool.before()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server_before = cpu_seconds(server_pid) if server_pid else None
        start = time.perf_counter()
        proc = subprocess.Popen(
            ["taskset", "-c", cpus, *tool.command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=tool.cwd,
            env=tool.env or None,
            start_new_session=True,
        )
        timer = threading.Timer(RUN_TIMEOUT, _kill_group, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        server_cpu = cpu_seconds(server_pid) - server_before if server_before is not None else None
        out.seek(0)
        err.seek(0)
        return Timed(
            proc.returncode,
            wall,
            usage.ru_utime,
            usage.ru_stime,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            server_cpu,
        )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


DROP_CACHES = "/proc/sys/vm/drop_caches"


def drop_page_cache() -> str:
    """Write back dirty pages and drop clean ones ("" when done, else why it could not):
    the next read of every file comes from the disk."""
    os.sync()
    try:
        with open(DROP_CACHES, "w") as handle:
            handle.write("3\n")
    except OSError as exc:
        return f"cannot drop the page cache: writing 3 to {DROP_CACHES}: {exc.strerror}"
    return ""


def version_of(command: list[str], env: dict[str, str] | None = None) -> str:
    """The first line a tool prints about its version ("" when it cannot run)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""

"""The machine a run was taken on, recorded in the JSON and printed above the table:
figures from different machines (or from one with other work running) do not compare."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from clientload import cpu_list_size
from settings import Settings


def cpu_model(cpuinfo: str) -> str:
    """The processor's name from /proc/cpuinfo (x86 "model name"; ARM and others
    name it differently); "unknown" when none is there."""
    for key in ("model name", "hardware", "processor", "cpu model", "cpu"):
        for line in cpuinfo.splitlines():
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() == key and value.strip():
                if key == "processor" and value.strip().isdigit():
                    continue  # x86 numbers its CPUs under this name
                return value.strip()
    return "unknown"


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def machine_info(settings: Settings) -> dict[str, object]:
    cores = os.cpu_count() or 0
    ferryman_python = Path(settings.ferryman).parent / "python"
    return {
        "cores": cores,
        "cpu_model": cpu_model(_read("/proc/cpuinfo") or ""),
        "kernel": platform.release(),
        "python": platform.python_version(),  # the bench's and the Python peers'
        "ferryman_python": _first_line(
            [str(ferryman_python), "-c", "import platform; print(platform.python_version())"]
        ),
        "nginx": _first_line(["nginx", "-v"]).removeprefix("nginx version: nginx/"),
        "wrk": _first_line(["wrk", "-v"]).split(" [")[0].removeprefix("wrk "),
        "server_cpu": settings.server_cpu,
        "client_cpu": settings.client_cpu,
        "wrk_threads": cpu_list_size(settings.client_cpu),
        # How the kernel paces TCP sends (BBR paces every socket with a timer
        # when the qdisc is not fq): it moves the range figures.
        "tcp_congestion_control": _read("/proc/sys/net/ipv4/tcp_congestion_control"),
        "default_qdisc": _read("/proc/sys/net/core/default_qdisc"),
    }


def machine_line(info: dict) -> str:
    """One line: cores and model, kernel, Pythons, nginx, the pinning."""
    python = f"Python {info['python']}"
    if info.get("ferryman_python") not in (None, "unknown", info["python"]):
        python += f" (ferryman on {info['ferryman_python']})"
    threads = info["wrk_threads"]
    line = (
        f"machine: {info['cores']} cores ({info['cpu_model']}), Linux {info['kernel']}, "
        f"{python}, nginx {info['nginx']}, wrk {info['wrk']}; server on CPU "
        f"{info['server_cpu']}, load generators on CPU {info['client_cpu']} "
        f"(wrk {threads} thread{'s' if threads != 1 else ''})"
    )
    if info["cores"] <= 2:
        line += "; with 2 cores that is the limit: the load generator has one core"
    return line

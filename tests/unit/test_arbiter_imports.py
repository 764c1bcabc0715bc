"""The arbiter runs no event loop and serves no client: what it imports stays in its
memory for the server's whole life, counted in every RSS figure (10,000 idle
connections: at most 100 MiB for the server). Building the command line, the
arbiter's module and its metrics must not load the event loop, the metrics
library, TLS or the audit's machinery."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Each of these cost the arbiter 1 to 6 MiB of RSS when something imported it there.
KEPT_OUT = ("asyncio", "ssl", "prometheus_client", "ferryman.audit.run", "ferryman.cache.notices")

SCRIPT = """
import json, sys
from pathlib import Path
from ferryman.cli import build_parser
build_parser().parse_args(["serve", "."])
from ferryman.supervisor import arbiter
from ferryman.metrics.rundir import ArbiterMetrics
ArbiterMetrics(Path(sys.argv[1]))
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by_the_arbiter(tmp_path: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def test_the_arbiter_loads_no_event_loop_metrics_library_tls_or_audit(tmp_path: Path) -> None:
    loaded = loaded_by_the_arbiter(tmp_path)
    assert "ferryman.supervisor.arbiter" in loaded  # the probe measured what it says
    assert [name for name in KEPT_OUT if name in loaded] == []


def test_the_metrics_library_comes_with_the_first_restart(tmp_path: Path) -> None:
    script = SCRIPT.replace(
        "ArbiterMetrics(Path(sys.argv[1]))", "ArbiterMetrics(Path(sys.argv[1])).restarted()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "prometheus_client" in json.loads(done.stdout)
    assert any(path.name.startswith("counter_") for path in tmp_path.iterdir())

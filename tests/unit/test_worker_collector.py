"""A worker keeps the garbage collector out of serving's way once started (server/worker.py)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import gc, json
from ferryman.server.worker import YOUNG_OBJECTS, settle_collector
before = gc.get_threshold()
settle_collector()
print(json.dumps({"before": before, "after": gc.get_threshold(), "young": YOUNG_OBJECTS,
                  "frozen": gc.get_freeze_count()}))
"""


def test_what_starting_made_is_frozen_and_young_collections_are_rarer() -> None:
    # In a process of its own: freezing pytest's own objects would change every test after.
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    found = json.loads(done.stdout)
    assert found["frozen"] > 10_000  # the modules, settings and tables a worker starts with
    assert found["after"][0] == found["young"] > found["before"][0]
    assert found["after"][1:] == found["before"][1:]  # the older generations as Python has them

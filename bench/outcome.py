"""The benchmark's vocabulary: a workload, its metrics, and what one run of it gives.

Statuses: "ok"; "flagged" (a figure exists, but some answers were wrong or
some connections were not held: see the note); "unsupported" (the server does
not do this kind of request); "client error" (the load generator itself could
not open its connections, e.g. out of local ports: the figures say nothing
about the server); "error" (the run broke: see the note). The orchestrator
adds "failed to start", and "not applicable" for a server that cannot be run
in a workload at all (a tar member asked of a server that serves none): it is
not started, and the note says why.

Apart from the status, a figure can be client-bound (bench/clientload.py):
the load generator used nearly all of its cores, so the figure is the
client's limit, and no ratio is drawn from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from settings import Settings
from testfiles import TestFiles

if TYPE_CHECKING:
    from servers import Server, ServerSpec


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    better: str  # "higher" or "lower"
    digits: int = 0  # decimals shown in the table


RPS = Metric("rps", "req/s", "req/s", "higher")
# The server's CPU time per answer: a cost, so a figure the load generator capped still
# counts (at its own pace a server may batch less, so an unsaturated figure is a bound
# from above). On its one core, 1e6 / this is the rate the server could reach: where the
# rates are client-bound, the ratio of these says which server would go further.
CPU_PER_ANSWER = Metric("cpu_us", "CPU us/answer", "us", "lower", 1)
ANSWERS = (RPS, CPU_PER_ANSWER)  # the metrics of a workload of many small answers


@dataclass
class Outcome:
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""
    details: dict[str, object] = field(default_factory=dict)
    client_bound: list[str] = field(default_factory=list)  # metric keys the client capped


@dataclass(frozen=True)
class Context:
    settings: Settings
    files: TestFiles
    workdir: Path


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    metrics: tuple[Metric, ...]
    run: Callable[[Server, Context], Outcome]
    rate: bool = True  # a rate under load (noisy): repeated per --rounds, median kept
    # Why a server cannot be run in it ("" when it can): such a server is reported
    # "not applicable" and not started. None: every server can.
    not_applicable: Callable[[ServerSpec], str] | None = None

    def unfit(self, spec: ServerSpec) -> str:
        """Why `spec` cannot be run in this workload; "" when it can."""
        return self.not_applicable(spec) if self.not_applicable is not None else ""

    def describe(self, settings: Settings) -> str:
        """The title with this run's counts filled in."""
        return self.title.format(**settings.as_dict())

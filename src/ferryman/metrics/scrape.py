"""One scrape: every process's metric files added up, and the audit's findings.

Runs in a thread (it reads files and the catalog); what it returns is the
body of /-/metrics, in Prometheus's text format.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from ferryman.catalog.api import CatalogError
from ferryman.catalog.runs import latest_audit

if TYPE_CHECKING:
    from ferryman.catalog.api import Catalog

log = logging.getLogger("ferryman")
_failing: list[bool] = []  # non-empty while the catalog cannot be read (a scrape is a new
# collector each time: the state lives here, so the warning is logged once per outage)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class AuditCollector:
    """`ferryman_audit_findings{kind}` of the latest finished audit, and when it finished,
    read from the catalog at each scrape (`ferryman audit` may run beside the server)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def collect(self) -> Iterator[Metric]:
        try:
            summary = latest_audit(self.catalog)
        except CatalogError as exc:  # the rest of the scrape is still worth answering
            if not _failing:
                log.warning("metrics: the latest audit could not be read from the catalog: %s"
                            " (said once until it can)", exc)  # fmt: skip
            _failing.append(True)
            return
        _failing.clear()
        findings = GaugeMetricFamily(
            "ferryman_audit_findings", "Findings of the latest finished audit, by kind.",
            labels=["kind"],
        )  # fmt: skip
        finished = GaugeMetricFamily(
            "ferryman_audit_last_finished_timestamp_seconds",
            "When the latest audit recorded in the catalog finished (Unix time).",
        )
        if summary is not None:
            for kind, count in sorted(summary.findings.items()):
                findings.add_metric([kind], count)
            finished.add_metric([], summary.finished_ns / 1e9)
        yield findings
        yield finished


def render(directory: str, catalog: Catalog | None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, directory)  # type: ignore[no-untyped-call]
    if catalog is not None:
        registry.register(AuditCollector(catalog))
    return generate_latest(registry)

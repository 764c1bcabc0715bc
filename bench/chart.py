"""The PNG chart: one panel per metric, one bar per server, nginx = reference."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from clientload import CLIENT_BOUND
from report import NOT_APPLICABLE, SHOWN, format_ratio, load_bound

COLORS = {"ferryman": "#d62728", "ferryman-pure": "#f09a9a", "nginx": "#1f77b4"}
OTHER = "#9a9a9a"


def _panels(doc: dict) -> list[tuple[dict, dict]]:
    return [(w, m) for w in doc["workloads"] for m in w["metrics"]]


def _label(result: dict | None, metric: dict) -> str:
    if result is None:
        return "not run"
    if result["status"] not in SHOWN:
        return result["status"]
    value = result["metrics"].get(metric["key"])
    if value is None:
        return "-"
    text = f"{value:,.{metric['digits']}f}"
    if metric["key"] in result.get("client_bound", ()):
        text += f"  {CLIENT_BOUND}"
    else:  # a ratio, or CLIENT_BOUND when the reference's figure was
        text += "  " + format_ratio(result["ratios"].get(metric["key"]))
    if result["status"] == "flagged":
        text += "  (flagged)"
    return text


def _draw_panel(ax, doc: dict, workload: dict, metric: dict) -> None:
    index = {(r["workload"], r["server"]): r for r in doc["results"]}
    # Only the servers that take part in this workload (the probe: small only) and can
    # be run in it (no tar members asked of a server that serves none).
    servers = [
        s["name"]
        for s in doc["servers"]
        if index.get((workload["key"], s["name"]), {}).get("status") not in (None, NOT_APPLICABLE)
    ]
    results = [index.get((workload["key"], name)) for name in servers]
    values = []
    for r in results:
        v = r["metrics"].get(metric["key"]) if r and r["status"] in SHOWN else None
        values.append(v if v is not None and math.isfinite(v) else 0.0)
    colors = [COLORS.get(name, OTHER) for name in servers]
    hatches = ["//" if r and r["status"] == "flagged" else "" for r in results]
    y = range(len(servers))
    bars = ax.barh(y, values, color=colors, hatch=hatches, edgecolor="white")
    ax.set_yticks(list(y), servers)
    ax.invert_yaxis()
    top = max(values) if any(values) else 1.0
    ax.set_xlim(0, top * 1.65)
    for bar, r in zip(bars, results, strict=True):
        ax.text(
            bar.get_width() + top * 0.02,
            bar.get_y() + bar.get_height() / 2,
            _label(r, metric),
            va="center",
            fontsize=8,
        )
    better = "higher is better" if metric["better"] == "higher" else "lower is better"
    ax.set_title(f"{workload['title']}\n{metric['label']} ({better})", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)


def _draw_legend(ax, doc: dict) -> None:
    """The spare panel: how to read the chart and which versions ran."""
    lines = [
        f"x1.00 = {doc['reference']}; each server on CPU {doc['settings']['server_cpu']},",
        f"load generators on CPU {doc['settings']['client_cpu']}. Hatched bar = flagged:",
        "wrong answers or connections not held (JSON notes).",
        f"{CLIENT_BOUND}: wrk or ab used 90% of its cores: no ratio.",
    ]
    bound = load_bound(doc)
    if bound:
        lines += [
            f"{doc['reference']} below 80% CPU (its load generator or other",
            f"work was the limit; see the notes): {', '.join(bound)}",
        ]
    machine = doc.get("machine")
    if machine:
        cpu = f"{machine['cores']} cores, {machine['cpu_model']}"
        lines += ["", f"{cpu}, Linux {machine['kernel']}"]
    lines.append("")
    lines += [f"{s['name']}: {s['version']}" for s in doc["servers"]]
    ax.text(0, 1, "\n".join(lines), va="top", fontsize=8, family="monospace", wrap=True)


def draw_chart(doc: dict, path: Path) -> None:
    panels = _panels(doc)
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.9 * rows), squeeze=False)
    for ax, (workload, metric) in zip(axes.flat, panels, strict=False):
        _draw_panel(ax, doc, workload, metric)
    spare = list(axes.flat)[len(panels) :]
    for ax in spare:
        ax.axis("off")
    if spare:
        _draw_legend(spare[0], doc)
    started = datetime.fromisoformat(doc["started"])
    fig.suptitle(
        f"ferryman benchmark, {doc['mode']} mode, {started:%Y-%m-%d %H:%M}: figures and "
        f"ratios (x) to {doc['reference']} from the same run",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

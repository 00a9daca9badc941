"""A canary analysis on record: report JSON and chart on the version's MLflow run, a summary tag.

Artifacts go to ``canary/<analysis time>/`` of the run that produced the version (the run the
gate report already lives on), so a version's MLflow page shows its whole story: training,
gate, every canary analysis. The summary tag (``modelyard.canary.analysis``) is what the
registry page draws without downloading artifacts.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from modelyard.registry import tags

#: The summary tag stays far below MLflow's limit on tag values (5000 characters).
MAX_SUMMARY_CHARS = 4000
CHART_METRICS = ("error_rate", "format_validity", "thumbs_up", "latency")


def artifact_dir(report: dict[str, Any]) -> str:
    """``canary/<analysis time>-<id>``: sorted by time, and two analyses never share one."""
    stamp = report["at"].replace(":", "").replace("-", "")[:19]
    return f"canary/{stamp}Z-{report['id']}"


def write_chart(report: dict[str, Any], path: Path) -> Path:
    """One panel per metric: canary vs production, the verdict and p-value in its title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in report["metrics"] if m["name"] in CHART_METRICS]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(2.6 * max(1, len(metrics)), 3.2))
    axes = list(axes) if len(metrics) > 1 else [axes]
    colors = {"pass": "tab:green", "fail": "tab:red", "not_enough_data": "tab:gray"}
    for ax, m in zip(axes, metrics, strict=False):
        values = [m["canary"] or 0.0, m["production"] or 0.0]
        ax.bar(["canary", "production"], values, color=[colors[m["verdict"]], "tab:blue"])
        unit = " (median ms)" if m["name"] == "latency" else ""
        p = f", p={m['p_value']:.2g}" if m["p_value"] is not None else ""
        ax.set_title(f"{m['name']}{unit}\n{m['verdict']}{p}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(
        f"v{report['canary_version']} vs production v{report['production_version']}: "
        f"{report['outcome']}"[:100],
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def summary(report: dict[str, Any]) -> str:
    """The JSON the version's summary tag holds: decision and the metrics table, bounded."""
    small = {
        k: report.get(k)
        for k in (
            "at",
            "outcome",
            "decision",
            "reason",
            "since",
            "elapsed_minutes",
            "production_version",
            "report",
        )
    }
    small["metrics"] = [
        {k: m[k] for k in ("name", "verdict", "critical", "canary", "production", "p_value")}
        | {"samples": m["samples"]}
        for m in report["metrics"]
    ]
    text = json.dumps(small, sort_keys=True)
    if len(text) > MAX_SUMMARY_CHARS:
        small["reason"] = str(small["reason"])[:200]
        text = json.dumps(small, sort_keys=True)[:MAX_SUMMARY_CHARS]
    return text


def record(client, name: str, report: dict[str, Any]) -> dict[str, str]:
    """Log report and chart on the version's run, set its summary tag; returns their URIs."""
    version = report["canary_version"]
    run_id = client.get_model_version(name, version).run_id
    sub = artifact_dir(report)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
        write_chart(report, out / "chart.png")
        client.log_artifacts(run_id, tmp, sub)
    client.set_model_version_tag(name, version, tags.CANARY_ANALYSIS, summary(report))
    base = f"{client.get_run(run_id).info.artifact_uri}/{sub}"
    return {"report": f"{base}/report.json", "chart": f"{base}/chart.png"}


def report_uri(client, name: str, report: dict[str, Any]) -> str:
    """Where :func:`record` will put the report (the ledger names it before it is written)."""
    run_id = client.get_model_version(name, report["canary_version"]).run_id
    return f"{client.get_run(run_id).info.artifact_uri}/{artifact_dir(report)}/report.json"

"""Gate report artifacts: the JSON report and a candidate-vs-incumbent bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.storage import write_json


def write_chart(report: dict[str, Any], path: Path) -> Path:
    """Grouped bars of every metric both models have, with the gate's verdict in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cand, inc = report["candidate"]["metrics"], report["incumbent"]["metrics"]
    # Loss and perplexity live on another scale than the [0, 1] metrics; the report has them.
    names = [m for m in cand if m in inc and m not in ("eval_loss", "perplexity")]
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [cand[m] for m in names], 0.4, label="candidate")
    ax.bar(
        [x + 0.2 for x in xs],
        [inc[m] for m in names],
        0.4,
        label=f"incumbent ({report['incumbent']['label']})",
    )
    ax.set_xticks(list(xs), names)
    gate = report["gate"]
    verdict = "PASSED" if gate["passed"] else "FAILED: " + ", ".join(gate["failed"])
    ax.set_title(f"{report['suite_version']}: {verdict}"[:120], fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], path: Path) -> Path:
    write_json(path, report)
    return path

"""``make demo``: the whole pipeline, end to end, through Airflow on the embedded default.

Builds the tiny base model, writes three historical raw partitions, curates them with a real
Airflow backfill of ``curate_dataset`` (``modelyard backfill``'s code, under a scheduler: the
Airflow already running on this home, else one started for the backfill), then runs
``finetune_model`` and ``promote_model`` with ``airflow dags test`` (real DagRuns, XComs and
Params in the metadata DB) and prints the registry. The dates are held by backfill runs, so a
later ``modelyard backfill`` over them re-runs them and reports "unchanged". Safe to run again:
curation republishes the same versions, an already-registered (dataset, settings) pair is not
retrained, and the summary says what changed.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from modelyard.airflow_env import airflow, init_airflow
from modelyard.backfill import run_backfill
from modelyard.sampledata import write_sample_partitions
from modelyard.settings import Settings, get_settings
from modelyard.tasks.catalog import latest_version
from modelyard.tinymodel import build_tiny_model

DEMO_END = date(2026, 11, 3)  # fixed dates: the demo is reproducible whatever today is
DEMO_DAYS = 3


def _status(settings: Settings) -> dict:
    from modelyard.registry import status
    from modelyard.registry.connection import StoreMissing

    try:
        return status(settings)
    except StoreMissing:  # a first run: nothing registered yet
        return {}


def _trigger(dag_id: str, settings: Settings, conf: dict | None = None) -> None:
    """One DAG run through Airflow; its (long) log goes to a file, its verdict to stdout."""
    args = ["dags", "test", dag_id]
    if conf:
        args += ["--conf", json.dumps(conf)]
    log_dir = Path(settings.home) / "logs" / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{dag_id}-{len(list(log_dir.iterdir()))}.log"
    print(f"==> airflow {' '.join(args)}", flush=True)
    result = airflow(args, settings, check=False, capture=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        print("\n".join((result.stdout + result.stderr).splitlines()[-40:]), file=sys.stderr)
        raise SystemExit(f"{dag_id} failed (exit {result.returncode}); full log: {log}")
    print(f"    ok (log: {log})", flush=True)


def what_changed(before: dict, after: dict) -> list[str]:
    """Human-readable differences between two registry snapshots."""
    old_versions = {v["version"] for v in before.get("versions", [])}
    changes = [
        f"new version {v['version']} (gate: {v.get('gate_decision', '?')})"
        for v in after.get("versions", [])
        if v["version"] not in old_versions
    ]
    for alias, version in sorted(after.get("aliases", {}).items()):
        previous = before.get("aliases", {}).get(alias)
        if previous != version:
            changes.append(f"alias {alias}: {previous or '-'} -> {version}")
    return changes or ["nothing changed: the registry already held this pipeline's result"]


def run_demo(settings: Settings | None = None, max_steps: int | None = None) -> dict:
    settings = settings or get_settings()
    print(f"modelyard demo: home {settings.home}", flush=True)
    build_tiny_model(settings.default_base_model)
    raw_root = settings.storage_path / "raw"
    partitions = write_sample_partitions(raw_root, DEMO_END, days=DEMO_DAYS)
    print(f"raw partitions: {', '.join(p.parent.name for p in partitions)}", flush=True)
    init_airflow(settings)
    before = _status(settings)

    days = sorted(date.fromisoformat(p.parent.name) for p in partitions)
    print(f"==> modelyard backfill --from {days[0]} --to {days[-1]}", flush=True)
    outcomes = run_backfill(
        settings, days[0], days[-1], start_airflow=True, out=lambda line: print(f"    {line}")
    )
    if failed := [o.line() for o in outcomes if not o.ok]:
        raise SystemExit("curation did not complete: " + "; ".join(failed))

    from modelyard.registry import find_versions

    dataset_version = latest_version(settings)
    if find_versions(settings, dataset_version=dataset_version):
        print(f"\n{dataset_version} is already trained and registered: not retraining", flush=True)
    else:
        conf = {"dataset_version": dataset_version}
        if max_steps:
            conf["max_steps"] = max_steps
        _trigger("finetune_model", settings, conf=conf)
        staged = _status(settings).get("aliases", {}).get("staging")
        if staged:
            _trigger("promote_model", settings, conf={"to": "canary", "reason": "demo"})
            _trigger("promote_model", settings, conf={"to": "production", "reason": "demo"})

    after = _status(settings)
    print("\n==> registry (modelyard registry status)", flush=True)
    from modelyard.registry import format_status

    print(format_status(after))
    print("\n==> what changed in this run")
    for line in what_changed(before, after):
        print(f"  - {line}")
    return after

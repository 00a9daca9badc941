"""The DAG-facing steps of ``curate_dataset``: plain JSON-able arguments and results (XCom),
one function per task. Settings default to ``get_settings()``."""

from __future__ import annotations

from pathlib import Path

from modelyard.curation.pipeline import curate
from modelyard.curation.publish import load_history, publish
from modelyard.curation.storage import prune_older, storage_path
from modelyard.curation.workers import Workers
from modelyard.settings import Settings, get_settings
from modelyard.validation import run_gate

QUARANTINE = "quarantine"


def current_eval_reference(settings: Settings) -> Path | None:
    """Records of the pinned eval suite, when the evaluation stage has frozen one. The
    evaluation package is part of this project: failing to import it is a broken install,
    raised, never read as "no suite" (which would switch the contamination check off)."""
    from modelyard.evaluation.suite import current_suite

    suite = current_suite(settings)
    return Path(suite.records_path) if suite is not None else None


def curate_into(
    source: Path,
    output: Path,
    settings: Settings,
    partition: str | None,
    eval_reference: Path | None,
    workers: Workers | None = None,
) -> dict:
    """Curate with the history of versions published for dates before ``partition``.

    Raw rejected lines are kept under ``<storage>/quarantine/<partition>/<version>/`` for
    ``quarantine_days`` (not at all for 0); older ones are pruned on every run."""
    versions, history = load_history(settings, partition) if partition else ([], [])
    days = settings.curation.quarantine_days
    prune_older(storage_path(settings, QUARANTINE), days)
    quarantine = storage_path(settings, QUARANTINE, partition or "unpartitioned") if days else None
    return curate(
        source,
        output,
        settings.curation,
        partition=partition,
        eval_reference=eval_reference,
        history=history,
        history_versions=versions,
        quarantine=quarantine,
        workers=workers,
    )


def curate_partition(ds: str, settings: Settings | None = None) -> dict:
    """Curate ``<storage>/raw/<ds>/`` into ``<storage>/staging/<ds>/``."""
    settings = settings or get_settings()
    source = storage_path(settings, "raw", ds)
    if not source.is_dir():
        return {"status": "missing", "partition": ds}
    staging = storage_path(settings, "staging", ds)
    manifest = curate_into(source, staging, settings, ds, current_eval_reference(settings))
    return {
        "status": "curated",
        "staging_dir": str(staging),
        "version": manifest["version"],
        "counts": manifest["counts"],
    }


def validate_partition(staging_dir: str, settings: Settings | None = None) -> dict:
    """The GX gate; raises ``modelyard.validation.GateFailed`` after storing its result."""
    settings = settings or get_settings()
    return run_gate(Path(staging_dir), settings.curation)


def publish_partition(staging_dir: str, settings: Settings | None = None) -> dict:
    """Publish the validated staging dir as ``datasets/<version>/``."""
    return publish(Path(staging_dir), settings or get_settings())

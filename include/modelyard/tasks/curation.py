"""The DAG-facing steps of ``curate_dataset``: plain JSON-able arguments and results (XCom),
one function per task. Settings default to ``get_settings()``.

Every path is under the storage root (``modelyard.storage``), local or ``s3://``. On an
object store the heavy work runs on local copies in ``<home>/scratch`` and the results are
uploaded with their manifest last: each task may run on another machine, so staging lives
in the store, never only on a worker's disk.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from pathlib import Path

from modelyard.conf import ended_day
from modelyard.curation.pipeline import curate
from modelyard.curation.publish import load_history, publish
from modelyard.settings import Settings, get_settings
from modelyard.storage import (
    StoragePath,
    as_path,
    is_remote,
    local_copy,
    prune_older,
    remove_tree,
    require_root,
    scratch,
    storage_path,
    upload_dir,
)
from modelyard.validation import GateFailed, run_gate
from modelyard.workers import Workers

QUARANTINE = "quarantine"


def current_eval_reference(settings: Settings) -> StoragePath | None:
    """Records of the pinned eval suite, when the evaluation stage has frozen one. The
    evaluation package is part of this project: failing to import it is a broken install,
    raised, never read as "no suite" (which would switch the contamination check off)."""
    from modelyard.evaluation.suite import current_suite

    suite = current_suite(settings)
    return as_path(suite.records_path, settings) if suite is not None else None


def curate_into(
    source: Path,
    output: Path,
    settings: Settings,
    partition: str | None,
    eval_reference: Path | None,
    workers: Workers | None = None,
    quarantine: Path | None = None,
) -> dict:
    """Curate local ``source`` into local ``output`` with the history of versions published
    for dates before ``partition``.

    Raw rejected lines are kept under ``<storage>/quarantine/<partition>/<version>/`` for
    ``quarantine_days`` (not at all for 0); older ones are pruned on every run. ``quarantine``
    overrides where they go locally (the object-store path uploads them afterwards)."""
    versions, history = load_history(settings, partition) if partition else ([], [])
    days = settings.curation.quarantine_days
    prune_older(storage_path(settings, QUARANTINE), days)
    if quarantine is None and days:
        quarantine = storage_path(settings, QUARANTINE, partition or "unpartitioned")
    return curate(
        source,
        output,
        settings.curation,
        partition=partition,
        eval_reference=eval_reference,
        history=history,
        history_versions=versions,
        quarantine=quarantine if days else None,
        workers=workers,
    )


def curate_partition(ds: str, settings: Settings | None = None) -> dict:
    """Curate ``<storage>/raw/<ds>/`` into ``<storage>/staging/<ds>/``.

    A root that is missing or unreachable raises ``StorageError`` (the task fails, naming
    the URL); a missing partition under a reachable root is ``status: missing`` (a skip). A
    ``ds`` that is not a date, or a day that has not ended, is a ``ValueError``."""
    settings = settings or get_settings()
    ended_day(ds)
    require_root(settings)
    source = storage_path(settings, "raw", ds)
    if not source.is_dir():
        return {"status": "missing", "partition": ds}
    staging = storage_path(settings, "staging", ds)
    reference = current_eval_reference(settings)
    if is_remote(staging):
        manifest = _curate_remote(source, staging, settings, ds, reference)
    else:
        manifest = curate_into(source, staging, settings, ds, reference)
    return {
        "status": "curated",
        "staging_dir": str(staging),
        "version": manifest["version"],
        "counts": manifest["counts"],
    }


def _curate_remote(
    source: StoragePath,
    staging: StoragePath,
    settings: Settings,
    ds: str,
    reference: StoragePath | None,
) -> dict:
    """Download the partition (and the suite records), curate in scratch, upload staging
    (manifest last) and the quarantined raw lines."""
    work = scratch(settings, "curate", ds)
    try:
        with ExitStack() as stack:
            local_source = stack.enter_context(local_copy(source, settings))
            local_reference = (
                stack.enter_context(local_copy(reference, settings)) if reference else None
            )
            held = work / QUARANTINE
            out = work / "staging"
            manifest = curate_into(
                local_source, out, settings, ds, local_reference, quarantine=held
            )
        remove_tree(staging)
        upload_dir(out, staging, last=("manifest.json",))
        kept = held / manifest["version"]
        if kept.is_dir():
            upload_dir(kept, storage_path(settings, QUARANTINE, ds, manifest["version"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def validate_partition(staging_dir: str, settings: Settings | None = None) -> dict:
    """The GX gate; raises ``modelyard.validation.GateFailed`` after storing its result
    (``gx/`` and the manifest's ``gx``, back in the store when it is remote)."""
    settings = settings or get_settings()
    require_root(settings)
    staging = as_path(staging_dir, settings)
    if not is_remote(staging):
        return run_gate(staging, settings.curation)
    with local_copy(staging, settings) as local:
        try:
            summary = run_gate(local, settings.curation)
        except GateFailed:
            upload_dir(local, staging, last=("manifest.json",), only=("gx",))
            raise
        upload_dir(local, staging, last=("manifest.json",), only=("gx",))
    return summary


def publish_partition(staging_dir: str, settings: Settings | None = None) -> dict:
    """Publish the validated staging dir as ``datasets/<version>/``."""
    settings = settings or get_settings()
    require_root(settings)
    return publish(as_path(staging_dir, settings), settings)

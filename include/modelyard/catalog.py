"""Look up published dataset versions: what a training run consumes.

Publishing is ``modelyard.curation``'s job; this module only reads what it wrote
(``datasets/<version>/manifest.json`` and the ``datasets/_by_date`` pointers).
"""

from __future__ import annotations

import re

from modelyard.curation.publish import by_date_dir
from modelyard.curation.storage import read_json, storage_path
from modelyard.settings import Settings, get_settings


def load_manifest(version: str, settings: Settings | None = None) -> dict:
    """The manifest of a published version, with its ``path`` filled in."""
    settings = settings or get_settings()
    path = storage_path(settings, "datasets", version)
    manifest_file = path / "manifest.json"
    if not manifest_file.exists():
        raise FileNotFoundError(f"dataset version {version!r} is not published under {path.parent}")
    return {**read_json(manifest_file), "path": str(path)}


def latest_version(settings: Settings | None = None) -> str:
    """The version published for the most recent partition date."""
    settings = settings or get_settings()
    pointers = sorted(by_date_dir(settings).glob("*.json"))
    if not pointers:
        raise FileNotFoundError("no dataset version is published yet: run curate_dataset first")
    return read_json(pointers[-1])["version"]


def version_for_date(day: str, settings: Settings | None = None) -> str | None:
    """The version the partition of ``day`` published, if any."""
    pointer = by_date_dir(settings or get_settings()) / f"{day}.json"
    return read_json(pointer)["version"] if pointer.exists() else None


def run_name_for(run_id: str) -> str:
    """A filesystem-safe run directory name that is stable across task retries."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")


def resolve_training_input(
    params: dict, event_extras: list[dict], run_id: str, settings: Settings | None = None
) -> dict:
    """Pick the dataset version (Param, else newest triggering event, else latest) and build
    the trainer config for this DAG run."""
    from modelyard.training import build_trainer_config

    settings = settings or get_settings()
    version = params.get("dataset_version") or (
        event_extras[-1]["version"] if event_extras else latest_version(settings)
    )
    dataset = load_manifest(version, settings)
    config = build_trainer_config(params, dataset, run_name_for(run_id), settings)
    return {"dataset": dataset, "trainer_config": config}

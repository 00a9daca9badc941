"""Published dataset versions: ``datasets/<version>/`` plus ``datasets/_by_date/<date>.json``.

A version dir is immutable and content-addressed: publishing copies the validated staging
dir to a scratch sibling and renames it into place, so a reader sees all of it or nothing,
and publishing a version that exists is a no-op (``new: false``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from modelyard.curation.index import VersionIndex, read_version_index
from modelyard.curation.storage import read_json, scratch_dir, storage_path, write_json
from modelyard.settings import Settings

PUBLISHED_FILES = ("train.jsonl", "eval.jsonl", "rejected.jsonl", "manifest.json", "index", "gx")


def by_date_dir(settings: Settings) -> Path:
    return storage_path(settings, "datasets", "_by_date")


def earlier_versions(settings: Settings, partition: str) -> list[tuple[str, Path]]:
    """(version, path) of the versions of dates strictly before ``partition``, oldest first:
    a re-run or a backfill sees the same history whatever order dates are curated in."""
    root = by_date_dir(settings)
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.glob("*.json")):
        if entry.stem < partition:
            pointer = read_json(entry)
            found.append(
                (pointer["version"], storage_path(settings, "datasets", pointer["version"]))
            )
    return found


def load_history(settings: Settings, partition: str) -> tuple[list[str], list[VersionIndex]]:
    cs = settings.curation
    versions = earlier_versions(settings, partition)
    indexes = [
        read_version_index(path / "index", cs.minhash_perm, cs.near_dup_ngram)
        for _, path in versions
    ]
    return [v for v, _ in versions], indexes


def publish(staging: Path, settings: Settings) -> dict:
    """Publish a validated staging dir; refuses one the gate has not passed."""
    manifest = read_json(staging / "manifest.json")
    if not (manifest.get("gx") or {}).get("success"):
        raise ValueError(f"{staging} has not passed the validation gate; nothing published")
    version, partition = manifest["version"], manifest["partition"]
    final = storage_path(settings, "datasets", version)
    new = not final.exists()
    if new:
        tmp = scratch_dir(final, every_name=True)
        for name in PUBLISHED_FILES:
            src = staging / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / name)
        try:
            tmp.rename(final)
        except OSError:  # a concurrent publisher of the same content won the rename
            shutil.rmtree(tmp)
            new = False
    if partition:
        write_json(
            by_date_dir(settings) / f"{partition}.json", {"version": version, "path": str(final)}
        )
    return {
        "version": version,
        "path": str(final),
        "new": new,
        "partition": partition,
        "counts": manifest["counts"],
    }

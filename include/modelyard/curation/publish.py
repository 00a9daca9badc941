"""Published dataset versions: ``datasets/<version>/`` plus ``datasets/_by_date/<date>.json``.

A version is immutable and content-addressed, and a reader sees all of it or nothing:

- local root: the validated staging dir is copied to a scratch sibling and renamed into place;
- object store (no rename): the files are uploaded under ``datasets/<version>/`` with
  ``manifest.json`` LAST. A prefix without a manifest is not a version (a killed upload
  leaves only such a prefix); every reader looks for the manifest, and the next publish of
  the same content uploads it again, manifest last.

The ``_by_date`` pointer is written after the version is complete. Publishing a version that
exists is a no-op (``new: false``).
"""

from __future__ import annotations

import shutil

from modelyard.curation.index import VersionIndex, read_version_index
from modelyard.settings import Settings
from modelyard.storage import (
    StoragePath,
    is_remote,
    local_copy,
    read_json,
    scratch_dir,
    storage_path,
    upload_dir,
    write_json,
)

PUBLISHED_FILES = ("train.jsonl", "eval.jsonl", "rejected.jsonl", "manifest.json", "index", "gx")
MANIFEST = "manifest.json"


def by_date_dir(settings: Settings) -> StoragePath:
    return storage_path(settings, "datasets", "_by_date")


def is_published(version_dir: StoragePath) -> bool:
    """Whether ``version_dir`` is a complete version (its manifest, written last, exists)."""
    return (version_dir / MANIFEST).exists()


def earlier_versions(settings: Settings, partition: str) -> list[tuple[str, StoragePath]]:
    """(version, path) of the versions of dates strictly before ``partition``, oldest first:
    a re-run or a backfill sees the same history whatever order dates are curated in."""
    root = by_date_dir(settings)
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.glob("*.json"), key=lambda p: p.name):
        if entry.stem < partition:
            pointer = read_json(entry)
            found.append(
                (pointer["version"], storage_path(settings, "datasets", pointer["version"]))
            )
    return found


def load_history(settings: Settings, partition: str) -> tuple[list[str], list[VersionIndex]]:
    cs = settings.curation
    versions = earlier_versions(settings, partition)
    indexes = []
    for _, path in versions:
        with local_copy(path / "index", settings) as index:
            indexes.append(read_version_index(index, cs.minhash_perm, cs.near_dup_ngram))
    return [v for v, _ in versions], indexes


def publish(staging: StoragePath, settings: Settings) -> dict:
    """Publish a validated staging dir; refuses one the gate has not passed."""
    manifest = read_json(staging / MANIFEST)
    if not (manifest.get("gx") or {}).get("success"):
        raise ValueError(f"{staging} has not passed the validation gate; nothing published")
    version, partition = manifest["version"], manifest["partition"]
    final = storage_path(settings, "datasets", version)
    new = not is_published(final)
    if new and is_remote(final):
        with local_copy(staging, settings) as local:
            upload_dir(local, final, last=(MANIFEST,), only=PUBLISHED_FILES)
    elif new:
        tmp = scratch_dir(final, every_name=True)
        try:  # the manifest last: a directory holding one is complete
            for name in sorted(PUBLISHED_FILES, key=lambda n: n == MANIFEST):
                src = staging / name
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / name)
        except BaseException:  # a full disk, SIGTERM: no half-copied version is left behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
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

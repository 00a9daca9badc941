"""Training snapshots: what a model is trained on, as one content-addressed, immutable input.

A model trains on every published dataset version up to the triggering date (or the last
``training.snapshot_window_days`` of them), not on whichever single day arrived last. The
triggering date is the date of the version the ``dataset_version`` Param names; otherwise the
newest of the triggering Asset events' partitions (several events in one run, in any order)
and the latest published date. The latter matters: Airflow 3.3 hands a run only the events up
to the moment its queue record was created (the first event that found the DAG at
``max_active_runs``); events arriving while it waits are merged into that record and consumed
by the same run without being listed (``_create_dag_runs_asset_triggered``). Taking the latest
published date puts them in the snapshot anyway. Versions that triggered a run are always in it.

The snapshot's id is the hash of its ordered version list, so the same history is the same
snapshot: ``<storage>/snapshots/<id>/`` holds ``manifest.json`` (versions, counts) and one
concatenated ``train.jsonl``. One file rather than a list of the versions' files, because the
trainer reads one ``train_file`` and the evaluation's leak check must read exactly the bytes
trained on; the copy also lets the snapshot drop, across versions, every training record whose
text is in any included version's held-out side (the eval side never enters training) and the
exact repeats of earlier days. The directory is filled locally and published with
``storage.staged_dir`` (renamed into place, or uploaded manifest last on an object store), so a
reader sees a whole snapshot or none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from modelyard.conf import unknown_keys
from modelyard.settings import Settings
from modelyard.storage import StoragePath, as_path, read_json, staged_dir, storage_path, write_json
from modelyard.tasks.catalog import (
    InvalidDatasetVersion,
    published_by_date,
    published_manifest,
    run_name_for,
)

SNAPSHOT_PREFIX = "snap-"


def _text_key(record: dict) -> bytes:
    """What makes two records the same example: prompt and completion, case and spacing aside."""
    text = "\x00".join(
        " ".join(str(record.get(k, "")).split()).lower() for k in ("prompt", "completion")
    )
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _read_jsonl(path: StoragePath) -> Iterator[tuple[bytes, dict]]:
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                yield raw if raw.endswith(b"\n") else raw + b"\n", json.loads(raw)


def named_versions(params: dict, event_extras: list[dict]) -> list[str]:
    """The versions a run was asked to train on: the Param's, else every triggering event's."""
    if params.get("dataset_version"):
        return [params["dataset_version"]]
    named = []
    for extra in event_extras:
        version = (extra or {}).get("version") if isinstance(extra, dict) else None
        if version is None:
            raise InvalidDatasetVersion(f"a triggering Asset event names no version: {extra!r}")
        named.append(version)
    return list(dict.fromkeys(named))


def select_versions(
    named: list[str], settings: Settings, up_to_named: bool = False
) -> tuple[str | None, list[dict]]:
    """(triggering date, manifests of the snapshot's versions ordered by partition date).

    The history ends at the newest named version's date with ``up_to_named`` (the Param),
    else at the newest of that and the latest published date (Asset events, or nothing named).
    Every version, named or found by date, is checked by ``published_manifest`` (a published
    id whose validation passed); a named version wins over the date pointer of its date.
    """
    explicit = [published_manifest(v, settings) for v in named]
    by_date = published_by_date(settings)
    dated = [m["partition"] for m in explicit if m.get("partition")]
    if explicit and not dated and up_to_named:  # an unpartitioned version: no history around it
        return None, explicit
    if not dated and not by_date:
        raise FileNotFoundError("no dataset version is published yet: run curate_dataset first")
    end = max(dated) if up_to_named and dated else max([*dated, *by_date])
    window = settings.training.snapshot_window_days
    start = (date.fromisoformat(end) - timedelta(days=window - 1)).isoformat() if window else ""
    chosen: dict[str, list[dict]] = {}
    for day, version in by_date.items():
        if start <= day <= end:
            chosen[day] = [published_manifest(version, settings)]
    named_by_day: dict[str, list[dict]] = {}
    for manifest in explicit:
        named_by_day.setdefault(manifest.get("partition") or "", []).append(manifest)
    for day, manifests in named_by_day.items():
        pointer = by_date.get(day)
        chosen[day] = [m for m in manifests if m["version"] == pointer] or manifests
    ordered = [m for day in sorted(chosen) for m in chosen[day]]
    return end, list({m["version"]: m for m in ordered}.values())


def snapshot_id(versions: list[str]) -> str:
    """The content address of a snapshot: the hash of its ordered version list."""
    digest = hashlib.sha256(json.dumps(versions).encode()).hexdigest()
    return f"{SNAPSHOT_PREFIX}{digest[:12]}"


def _manifest_leaks(manifests: list[dict]) -> int | None:
    from modelyard.evaluation.contamination import manifest_leaks

    counts = [manifest_leaks(m) for m in manifests]
    return None if any(c is None for c in counts) else sum(counts)


def _file_sha256(path: StoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _verify_files(manifest: dict, directory: StoragePath) -> None:
    """Refuse a version whose files are not the ones curation wrote and the gate validated:
    its content hash, re-derived from the files, must be the manifest's."""
    from modelyard.curation.pipeline import OUTPUTS, content_address

    try:
        files = {name: _file_sha256(directory / f"{name}.jsonl") for name in OUTPUTS}
        found = content_address(files, manifest["settings"], manifest.get("partition"))
    except (OSError, KeyError) as err:
        found = f"unreadable ({err})"
    if found != manifest.get("content_hash"):
        raise InvalidDatasetVersion(
            f"dataset_version {manifest['version']}: its files are not the ones curation "
            "published (content hash mismatch); the published directory was altered"
        )


def _fill(tmp: Path, manifests: list[dict], settings: Settings) -> dict[str, Any]:
    """Write the concatenated ``train.jsonl`` into ``tmp``; the per-version counts."""
    dirs = [as_path(m["path"], settings) for m in manifests]
    held_out = {
        _text_key(record)
        for d in dirs
        if (d / "eval.jsonl").exists()
        for _, record in _read_jsonl(d / "eval.jsonl")
    }
    seen: set[bytes] = set()
    rows, digest = [], hashlib.sha256()
    with (tmp / "train.jsonl").open("wb") as out:
        for m, d in zip(manifests, dirs, strict=True):
            kept = held = repeated = 0
            for raw, record in _read_jsonl(d / "train.jsonl"):
                key = _text_key(record)
                if key in held_out:
                    held += 1
                elif key in seen:
                    repeated += 1
                else:
                    seen.add(key)
                    out.write(raw)
                    digest.update(raw)
                    kept += 1
            rows.append(
                {
                    "version": m["version"],
                    "partition": m.get("partition"),
                    "content_hash": m.get("content_hash"),
                    "train": kept,
                    "dropped_held_out": held,
                    "dropped_repeats": repeated,
                }
            )
    return {"versions": rows, "train_sha256": digest.hexdigest()}


def build_snapshot(manifests: list[dict], settings: Settings) -> dict[str, Any]:
    """The snapshot of ``manifests`` (ordered), written once under ``<storage>/snapshots/<id>``."""
    versions = [m["version"] for m in manifests]
    sid = snapshot_id(versions)
    final = storage_path(settings, "snapshots", sid)
    if not (final / "manifest.json").is_file():
        for manifest in manifests:  # once per snapshot: later runs reuse it
            _verify_files(manifest, as_path(manifest["path"], settings))
        with staged_dir(final, settings, last=("manifest.json",)) as tmp:
            filled = _fill(tmp, manifests, settings)
            rows = filled["versions"]
            write_json(
                tmp / "manifest.json",
                {
                    "id": sid,
                    "versions": rows,  # a function of the id alone: no date, no setting
                    "counts": {
                        "train": sum(r["train"] for r in rows),
                        "dropped_held_out": sum(r["dropped_held_out"] for r in rows),
                        "dropped_repeats": sum(r["dropped_repeats"] for r in rows),
                    },
                    "train_sha256": filled["train_sha256"],
                    "contamination": {"leaked_to_train": _manifest_leaks(manifests)},
                },
            )
    return {**read_json(final / "manifest.json"), "path": str(final)}


def plan_training(
    params: dict, event_extras: list[dict], run_id: str, settings: Settings
) -> dict[str, Any]:
    """This run's snapshot, trainer config and the lineage its model version records.

    ``dataset`` names the newest version of the snapshot (the one the run was triggered for)
    and carries the snapshot; the trainer reads the snapshot's ``train.jsonl`` and its recipe
    hash covers the snapshot id (the trainer config's ``data_version``).
    """
    from modelyard.training import build_trainer_config, trigger_params
    from trainer.config import ConfigError, parse_config

    problem = unknown_keys(params, trigger_params(settings))
    if problem:
        raise ConfigError(problem)
    named = named_versions(params, event_extras)
    _, manifests = select_versions(named, settings, up_to_named=bool(params.get("dataset_version")))
    snap = build_snapshot(manifests, settings)
    newest = manifests[-1]
    config = build_trainer_config(
        params, {"path": snap["path"], "version": snap["id"]}, run_name_for(run_id), settings
    )
    dataset = {
        "version": newest["version"],
        "content_hash": newest.get("content_hash", ""),
        "partition": newest.get("partition"),
        "path": newest["path"],
        "contamination": snap["contamination"],
        "snapshot": {
            "id": snap["id"],
            "versions": [v["version"] for v in snap["versions"]],
            "train": snap["counts"]["train"],
            "path": snap["path"],
        },
    }
    return {
        "dataset": dataset,
        "trainer_config": config,
        "config_hash": parse_config(config).config_hash(),
    }


def trained_version(settings: Settings, snapshot: str, config_hash: str) -> str | None:
    """The registered version already trained on ``snapshot`` with recipe ``config_hash``."""
    from modelyard.registry import tags
    from modelyard.registry.artifacts import client_for

    found = client_for(settings).search_model_versions(
        f"name = '{settings.registered_model}' and tags.`{tags.SNAPSHOT}` = '{snapshot}'"
    )
    same = sorted(int(mv.version) for mv in found if mv.tags.get(tags.CONFIG_HASH) == config_hash)
    return str(same[0]) if same else None


def already_trained(plan: dict, settings: Settings) -> str | None:
    """ "already trained as version N ..." when ``plan``'s snapshot and recipe are registered."""
    snapshot = plan["dataset"]["snapshot"]["id"]
    version = trained_version(settings, snapshot, plan["config_hash"])
    if version is None:
        return None
    return (
        f"already trained as version {version} of {settings.registered_model} "
        f"(snapshot {snapshot}, recipe {plan['config_hash']}): not training again"
    )

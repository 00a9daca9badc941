"""What ``finetune_model`` trains on: only published, validated versions, as one snapshot.

Published versions are laid out on disk exactly as ``curation.publish`` writes them (version
dir, manifest with its GX summary, ``_by_date`` pointer); the code under test reads them for
real. Bad input (traversal, absolute paths, unknown or unvalidated ids, forged Asset events)
fails with one line; a snapshot is the union of the history up to the triggering date, without
any record of a held-out side, content-addressed and written once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from modelyard.curation.pipeline import OUTPUTS, content_address
from modelyard.sampledata import curated_records, write_curated
from modelyard.tasks.catalog import InvalidDatasetVersion, published_manifest
from modelyard.tasks.snapshots import plan_training, select_versions, snapshot_id
from trainer.config import ConfigError

DAYS = ["2026-10-01", "2026-10-02", "2026-10-03"]


def publish(settings, day: str | None, train: list[dict], evals: list[dict], gx: bool = True):
    """A published version as curation lays it out, content-addressed; returns its id."""
    staging = write_curated(settings.storage_path / "staging-test", train, evals)
    (staging / "rejected.jsonl").write_bytes(b"")
    files = {n: hashlib.sha256((staging / f"{n}.jsonl").read_bytes()).hexdigest() for n in OUTPUTS}
    content_hash = content_address(files, {}, day)
    version = f"ds-{content_hash[:12]}"
    out = settings.storage_path / "datasets" / version
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out)
    manifest = {
        "version": version,
        "content_hash": content_hash,
        "settings": {},
        "partition": day,
        "counts": {"train": len(train), "eval": len(evals)},
        "contamination": {"leaked_to_train": 0},
        "gx": {"success": gx},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    if day and gx:
        pointers = settings.storage_path / "datasets" / "_by_date"
        pointers.mkdir(parents=True, exist_ok=True)
        (pointers / f"{day}.json").write_text(json.dumps({"version": version, "path": str(out)}))
    return version


@pytest.fixture
def history(settings) -> dict:
    """Three published days; a record held out on day 2 shows up in day 3's train side."""
    records = curated_records(60)
    days = {
        DAYS[0]: (records[0:15], records[15:20]),
        DAYS[1]: (records[20:35], records[35:40]),
        DAYS[2]: (records[40:55] + [records[36]] + [records[0]], records[55:60]),
    }
    versions = {day: publish(settings, day, *sides) for day, sides in days.items()}
    return {"versions": versions, "records": records}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_dataset_version_must_be_a_published_validated_id(settings, history, tmp_path):
    # A directory outside the store that looks like a dataset: today's code trained on it.
    outside = write_curated(tmp_path / "outside", curated_records(5, seed=9), [])
    (outside / "manifest.json").write_text(json.dumps({"version": "ds-000000000000"}))
    unvalidated = publish(settings, "2026-10-04", curated_records(5, seed=3), [], gx=False)
    tampered = publish(settings, None, curated_records(5, seed=4), [])
    manifest_file = settings.storage_path / "datasets" / tampered / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "content_hash": "0" * 64}))
    traversal = f"../../{Path(outside).relative_to(tmp_path)}"
    cases = {
        traversal: "is not a dataset version id",
        str(outside): "is not a dataset version id",
        f"{history['versions'][DAYS[0]]}/../../x": "is not a dataset version id",
        history["versions"][DAYS[0]].upper(): "is not a dataset version id",
        "ds-0123456789ab": "is not published",
        unvalidated: "did not pass the validation gate",
        tampered: "the published directory was altered",
    }
    for bad, expected in cases.items():
        with pytest.raises(InvalidDatasetVersion) as exc:
            plan_training({"dataset_version": bad}, [], "manual__1", settings)
        assert expected in _one_line(exc), (bad, str(exc.value))
    # Asset events are checked the same way: anyone with trigger rights can post one.
    for extra in ({"version": traversal, "path": str(outside)}, {"path": str(outside)}, None):
        with pytest.raises(InvalidDatasetVersion) as exc:
            plan_training({}, [{"version": history["versions"][DAYS[0]]}, extra], "a__1", settings)
        _one_line(exc)
    # Files edited after publishing (the manifest untouched): refused when the snapshot is built.
    edited = publish(settings, None, curated_records(5, seed=5), [])
    train_file = settings.storage_path / "datasets" / edited / "train.jsonl"
    injected = {**curated_records(1, seed=6)[0], "split": "train"}
    train_file.write_text(train_file.read_text() + json.dumps(injected) + "\n")
    with pytest.raises(InvalidDatasetVersion) as exc:
        plan_training({"dataset_version": edited}, [], "manual__1", settings)
    assert "content hash mismatch" in _one_line(exc)
    assert not (settings.storage_path / "snapshots").exists()  # nothing built from bad input
    assert published_manifest(history["versions"][DAYS[2]], settings)["partition"] == DAYS[2]


def test_asset_events_in_any_order_make_one_snapshot_of_the_history(settings, history):
    versions, records = history["versions"], history["records"]
    # Two events in one run, newest first: the triggering date is the newest partition.
    extras = [{"version": versions[DAYS[2]]}, {"version": versions[DAYS[1]]}]
    plan = plan_training({}, extras, "asset_triggered__2026-10-04", settings)
    snap = plan["dataset"]["snapshot"]
    assert snap["versions"] == [versions[d] for d in DAYS]
    assert snap["id"] == snapshot_id(snap["versions"])
    assert plan["dataset"]["version"] == versions[DAYS[2]]
    train_file = Path(plan["trainer_config"]["train_file"])
    assert train_file == Path(snap["path"]) / "train.jsonl"
    assert plan["trainer_config"]["data_version"] == snap["id"]  # the recipe hash covers it

    trained = [json.loads(line) for line in train_file.read_text().splitlines()]
    trained_ids = [r["id"] for r in trained]
    held_out = {r["id"] for r in records[15:20] + records[35:40] + records[55:60]}
    assert not held_out & set(trained_ids)  # records[36] was held out on day 2
    assert len(trained_ids) == len(set(trained_ids)) == 45  # records[0] repeated on day 3
    manifest = json.loads((Path(snap["path"]) / "manifest.json").read_text())
    assert [v["version"] for v in manifest["versions"]] == snap["versions"]
    assert manifest["counts"] == {"train": 45, "dropped_held_out": 1, "dropped_repeats": 1}
    assert manifest["train_sha256"] == hashlib.sha256(train_file.read_bytes()).hexdigest()

    # Only an old event listed (Airflow lists the events up to the first that found the DAG
    # busy): the run still trains on everything published up to now.
    old_only = plan_training({}, [{"version": versions[DAYS[0]]}], "asset_triggered__3", settings)
    assert old_only["dataset"]["snapshot"]["id"] == snap["id"]

    # Same history, same snapshot: not rewritten.
    before = train_file.stat().st_mtime_ns
    again = plan_training({}, list(reversed(extras)), "asset_triggered__2", settings)
    assert again["dataset"]["snapshot"]["id"] == snap["id"]
    assert again["config_hash"] == plan["config_hash"]
    assert train_file.stat().st_mtime_ns == before


def test_param_date_latest_and_window_choose_the_history(settings, history, monkeypatch):
    versions = history["versions"]
    by_param = plan_training({"dataset_version": versions[DAYS[1]]}, [], "manual__1", settings)
    assert by_param["dataset"]["snapshot"]["versions"] == [versions[DAYS[0]], versions[DAYS[1]]]
    latest = plan_training({}, [], "manual__2", settings)
    assert latest["dataset"]["snapshot"]["versions"] == [versions[d] for d in DAYS]

    from modelyard import settings as settings_mod

    monkeypatch.setenv("MODELYARD_TRAINING__SNAPSHOT_WINDOW_DAYS", "2")
    settings_mod.get_settings.cache_clear()
    windowed = settings_mod.get_settings()
    end, manifests = select_versions([], windowed)
    assert end == DAYS[2]
    assert [m["version"] for m in manifests] == [versions[DAYS[1]], versions[DAYS[2]]]
    # A version that triggered the run is in its snapshot even outside the window.
    _, manifests = select_versions([versions[DAYS[0]], versions[DAYS[2]]], windowed, True)
    assert [m["version"] for m in manifests] == [versions[d] for d in DAYS]


def test_a_misspelt_conf_key_is_refused_not_ignored(settings, history):
    """Airflow merges a trigger's conf into params whatever its keys."""
    with pytest.raises(ConfigError) as exc:
        plan_training({"max_step": 5, "lerning_rate": 1.0, "colour": "red"}, [], "m__1", settings)
    line = _one_line(exc)
    assert line.startswith(
        "unknown conf key(s): colour, lerning_rate (did you mean learning_rate?)"
    )
    assert "max_step (did you mean max_steps?)" in line


def test_each_run_id_gets_a_run_dir_of_its_own(settings, history):
    """Ids Airflow accepts that a plain character swap would merge, or turn into `runs/`."""
    ids = ["manual:1", "manual+1", "manual_1", ".", "::", "~", "manual__2026-11-26T10:00:00+00:00"]
    dirs = [Path(plan_training({}, [], i, settings)["trainer_config"]["output_dir"]) for i in ids]
    assert len(set(dirs)) == len(ids), dirs
    runs = settings.storage_path / "runs"
    assert all(d.parent == runs and d.name not in ("", ".", "..") for d in dirs), dirs
    assert dirs[2].name == "manual_1"  # an id that needs no change keeps its name

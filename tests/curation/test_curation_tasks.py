"""DAG-facing tasks (curate -> GX gate -> publish), history across dates, and the CLI."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from curation_planting import edited, long_record, read_jsonl, write_lines

from modelyard.cli import main
from modelyard.sampledata import write_partition
from modelyard.settings import Settings
from modelyard.tasks.curation import curate_partition, publish_partition, validate_partition
from modelyard.validation import GateFailed


def _raw(settings: Settings, ds: str) -> Path:
    return Path(settings.storage) / "raw" / ds / "part-0.jsonl"


def _curate_and_publish(settings: Settings, ds: str) -> dict:
    staged = curate_partition(ds, settings)
    assert staged["status"] == "curated"
    assert validate_partition(staged["staging_dir"], settings)["success"]
    return publish_partition(staged["staging_dir"], settings)


def test_missing_partition_is_reported_not_raised(store: Settings) -> None:
    assert curate_partition("2026-01-01", store) == {"status": "missing", "partition": "2026-01-01"}


def test_earlier_versions_make_todays_copies_duplicates(store: Settings) -> None:
    week_ago = [long_record(seed, f"old-{seed}") for seed in range(30)]
    write_lines(_raw(store, "2026-11-13"), week_ago)
    today = [week_ago[0], edited(week_ago[1])] + [
        long_record(seed, f"new-{seed}") for seed in range(100, 130)
    ]
    write_lines(_raw(store, "2026-11-20"), today)

    published = _curate_and_publish(store, "2026-11-13")
    assert published["new"] is True
    version_dir = Path(published["path"])
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["gx"]["success"] and (version_dir / "gx" / "result.json").is_file()
    assert (version_dir / "gx" / "docs" / "index.html").is_file()
    assert (
        json.loads((Path(store.storage) / "datasets/_by_date/2026-11-13.json").read_text())[
            "version"
        ]
        == published["version"]
    )

    result = _curate_and_publish(store, "2026-11-20")
    rejected = {r["source"]["line"]: r for r in read_jsonl(Path(result["path"]) / "rejected.jsonl")}
    assert (rejected[1]["reason"], rejected[1]["duplicate_of"]) == ("duplicate", "old-0")
    assert (rejected[2]["reason"], rejected[2]["duplicate_of"]) == ("near_duplicate", "old-1")
    assert result["counts"]["input"] == 32 and result["counts"]["rejected"] == 2

    # A backfill of an earlier date does not see later versions, whatever the run order.
    write_lines(_raw(store, "2026-11-06"), today[:1])
    backfill = _curate_and_publish(store, "2026-11-06")
    assert backfill["counts"]["by_reason"] == {}

    # Re-running a date gives the same version, and publishing it again is a no-op.
    again = _curate_and_publish(store, "2026-11-20")
    assert (again["version"], again["new"]) == (result["version"], False)


def test_gate_failure_publishes_nothing(store: Settings) -> None:
    write_partition(Path(store.storage) / "raw", date(2026, 11, 20), n=90)
    staged = curate_partition("2026-11-20", store)
    staging = Path(staged["staging_dir"])
    train = read_jsonl(staging / "train.jsonl")
    leaked = {**train[0], "split": "eval", "id": "copied-into-eval"}
    train[1]["completion"] += " mail me: someone@example.org"
    train[1]["messages"][-1]["content"] = train[1]["completion"]
    train[2]["completion"] = "edited without its messages"
    (staging / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    with (staging / "eval.jsonl").open("a") as handle:
        handle.write(json.dumps(leaked) + "\n")

    store.curation.gate_batch_rows = 25  # the copy into eval lands in another GX batch
    with pytest.raises(GateFailed) as failure:
        validate_partition(str(staging), store)
    message = str(failure.value)
    for expectation in ("train_eval_overlap", "pii_left", "matches_messages", "text_hash"):
        assert f"({expectation})" in message
    # The copy appended to eval.jsonl: the files no longer hold what the manifest counted.
    assert "(counts_match_files)" in message and "(counts_add_up)" in message
    assert json.loads((staging / "gx" / "result.json").read_text())["success"] is False
    assert json.loads((staging / "manifest.json").read_text())["gx"]["batches"] > 1
    with pytest.raises(ValueError, match="not passed the validation gate"):
        publish_partition(str(staging), store)
    assert not (Path(store.storage) / "datasets").exists()


def test_cli_exit_codes(store: Settings, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = Path(store.storage) / "raw"
    lines = len(write_partition(raw, date(2026, 11, 20), n=60).read_bytes().splitlines())
    out = tmp_path / "out"
    assert main(["curate", "--input", str(raw / "2026-11-20"), "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert printed["version"] == manifest["version"] and printed["counts"]["input"] == lines
    assert all((out / f"{name}.jsonl").is_file() for name in ("train", "eval", "rejected"))

    config = tmp_path / "overrides.yaml"
    config.write_text("near_dup_threshold: 0.9\neval_fraction: 0.25\n")
    assert (
        main(
            [
                "curate",
                "--input",
                str(raw / "2026-11-20"),
                "--output",
                str(out),
                "--config",
                str(config),
            ]
        )
        == 0
    )
    assert json.loads((out / "manifest.json").read_text())["settings"]["near_dup_threshold"] == 0.9

    assert main(["curate", "--input", str(tmp_path / "nope"), "--output", str(out)]) == 2
    config.write_text("eval_fraction: 2\n")
    assert (
        main(
            [
                "curate",
                "--input",
                str(raw / "2026-11-20"),
                "--output",
                str(out),
                "--config",
                str(config),
            ]
        )
        == 2
    )
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0].startswith("modelyard: error: input not found")
    assert errors[1].startswith("modelyard: error: invalid config") and len(errors) == 2
    # A run that cannot pass the gate (every record is junk) exits non-zero, one line.
    write_lines(tmp_path / "junk.jsonl", [{"prompt": "hi", "completion": "ok"}])
    assert main(["curate", "--input", str(tmp_path / "junk.jsonl"), "--output", str(out)]) == 2
    assert "validation gate failed" in capsys.readouterr().err


def test_a_publish_that_fails_mid_copy_leaves_nothing_behind(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while copying the index: no half-copied version (with or without its
    manifest) stays under datasets/, and no date points at one; a retry publishes it."""
    import shutil

    write_partition(Path(store.storage) / "raw", date(2026, 11, 20), n=60)
    staged = curate_partition("2026-11-20", store)
    assert validate_partition(staged["staging_dir"], store)["success"]
    copytree = shutil.copytree

    def disk_full(src, dst, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copytree", disk_full)
    with pytest.raises(OSError, match="No space left"):
        publish_partition(staged["staging_dir"], store)
    datasets = Path(store.storage) / "datasets"
    assert not [p for p in datasets.iterdir() if p.name != "_by_date"]
    assert not list(datasets.glob("_by_date/*.json"))
    monkeypatch.setattr(shutil, "copytree", copytree)
    published = publish_partition(staged["staging_dir"], store)
    assert (Path(published["path"]) / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("day", "says"),
    [
        ("2099-01-01", "has not ended yet"),
        ("2026-11-26", "has not ended yet"),  # today: still being written
        ("2026-02-30", "is not a date"),
        ("../../etc", "is not a date"),
        ("2026-11-25", None),
    ],
)
def test_only_a_day_that_has_ended_is_curated(store, day, says):
    from modelyard.conf import ended_day

    if says is None:
        assert ended_day(day, today=date(2026, 11, 26)) == day
        return
    with pytest.raises(ValueError, match=says):
        ended_day(day, today=date(2026, 11, 26))
    if day.startswith("2099") or "/" in day:
        with pytest.raises(ValueError, match=says):
            curate_partition(day, store)  # whatever the clock says

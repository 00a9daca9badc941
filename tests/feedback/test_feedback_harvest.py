"""The harvest alone (no curation): windows by feedback time, the policy, file replacement,
the no-log case, and when curation may start."""

from __future__ import annotations

import json

import pytest

from modelyard import settings as settings_mod
from modelyard.feedback.harvest import harvest, report_path
from modelyard.feedback.ordering import harvest_pending
from modelyard.feedback.tasks import harvest_interval
from tests.feedback.traffic import at, interval, rate, request, serve

D1, D2 = "2026-10-02", "2026-10-03"
GOOD = json.dumps({"name": "Ines", "job": "pilot", "city": "Rome"})
BAD_FORMAT = "Ines, pilot, Rome"


def _ids(settings, report) -> list[str]:
    if report["file"] is None:
        return []
    text = (settings.storage_path / "raw" / report["file"]).read_text()
    return [json.loads(line)["id"] for line in text.splitlines()]


def _with(monkeypatch, **env) -> settings_mod.Settings:
    for key, value in env.items():
        monkeypatch.setenv(f"MODELYARD_FEEDBACK__{key.upper()}", value)
    settings_mod.get_settings.cache_clear()
    return settings_mod.get_settings()


def test_windows_are_by_feedback_time_and_new_content_replaces_the_old_file(store):
    settings = store
    serve(
        settings,
        [
            request("r-late", at(D1, 23), "Extract Ines.", GOOD),
            rate("r-late", at(D2, 1), 1),  # answered on D1, rated on D2: harvested on D2
            request("r-flip", at(D1, 8), "Extract Rosa.", GOOD),
            rate("r-flip", at(D1, 8.5), 1),
            rate("r-flip", at(D2, 9), -1),  # changed their mind the next day
            request("r-twice", at(D1, 9), "Extract Hugo.", GOOD),
            rate("r-twice", at(D1, 9.1), 1),
            rate("r-twice", at(D1, 9.2), -1),  # two clicks on one day: the latest counts
        ],
    )
    day1 = harvest(settings, D1, *interval(D1))
    assert _ids(settings, day1) == ["r-flip"]
    assert day1["outcomes"]["rated_down"] == 1
    day2 = harvest(settings, D2, *interval(D2))
    assert _ids(settings, day2) == ["r-late"] and day2["outcomes"]["rated_down"] == 1
    assert harvest(settings, D1, *interval(D1))["outcomes"] == day1["outcomes"]  # as of D1's end

    # Feedback written into D1 after its harvest (a late log flush): the re-run writes the
    # new content under its new name and only then removes the old file.
    serve(
        settings,
        [request("r-new", at(D1, 20), "Extract Lena.", GOOD), rate("r-new", at(D1, 21), 1)],
    )
    redo = harvest(settings, D1, *interval(D1))
    assert redo["changed"] and redo["file"] != day1["file"]
    assert sorted(p.name for p in (settings.storage_path / "raw" / D1).iterdir()) == [
        redo["file"].split("/")[1]
    ]
    assert _ids(settings, redo) == ["r-flip", "r-new"]


def test_policy_decides_what_is_harvested(store, monkeypatch):
    serve(
        store,
        [
            request("r-up", at(D1, 1), "Extract Ines.", GOOD),
            rate("r-up", at(D1, 1.1), 1),
            request("r-badformat", at(D1, 2), "Extract Omar.", BAD_FORMAT),
            rate("r-badformat", at(D1, 2.1), 1),
            request("r-fix", at(D1, 3), "Extract Vera.", BAD_FORMAT),
            rate("r-fix", at(D1, 3.1), -1, GOOD),
            request("r-failed", at(D1, 4), "Extract Wei.", None),
            rate("r-failed", at(D1, 4.1), 1),
        ],
    )
    day = interval(D1)
    default = harvest(store, D1, *day)
    assert _ids(store, default) == ["r-up", "r-badformat", "r-fix"]
    assert default["outcomes"]["no_answer"] == 1

    strict = _with(monkeypatch, require_valid_format="true")
    report = harvest(strict, D1, *day)
    assert _ids(strict, report) == ["r-up", "r-fix"] and report["outcomes"]["invalid_format"] == 1

    no_thumbs = _with(monkeypatch, require_valid_format="false", include_thumbs_up="false")
    assert _ids(no_thumbs, harvest(no_thumbs, D1, *day)) == ["r-fix"]

    nothing = _with(monkeypatch, include_corrections="false")
    report = harvest(nothing, D1, *day)
    assert report["file"] is None and report["outcomes"]["excluded"] == 3
    assert not (nothing.storage_path / "raw" / D1).exists()  # only feedback was there

    off = _with(monkeypatch, enabled="false")
    assert harvest_interval(D1, *day, settings=off) == {"status": "disabled", "partition": D1}
    assert harvest_pending(off, D2, *interval(D2)) is None


def test_without_a_request_log_nothing_waits_and_no_log_is_created(store):
    log_file = store.home / "serving" / "requests.db"
    assert harvest_pending(store, D1, *interval(D1)) is None
    report = harvest(store, D1, *interval(D1))
    assert report["records"] == 0 and report["file"] is None
    assert report_path(store, D1).is_file() and not log_file.exists()
    with pytest.raises(ValueError, match="empty harvest interval"):
        harvest(store, D1, interval(D1)[1], interval(D1)[0])


def test_curation_waits_only_for_dates_with_feedback(store):
    serve(store, [request("r-1", at(D1, 1), "Extract Ines.", GOOD), rate("r-1", at(D1, 2), 1)])
    assert harvest_pending(store, D2, *interval(D2)) is None  # no feedback arrived on D2
    assert "1 responses got feedback" in harvest_pending(store, D1, *interval(D1))
    harvest(store, D1, *interval(D1))
    assert harvest_pending(store, D1, *interval(D1)) is None
    # Feedback logged into D1 after its harvest (a late flush): curation waits for a re-run.
    serve(store, [request("r-2", at(D1, 3), "Extract Rosa.", GOOD), rate("r-2", at(D1, 4), 1)])
    assert "predates some of it" in harvest_pending(store, D1, *interval(D1))
    harvest(store, D1, *interval(D1))
    assert harvest_pending(store, D1, *interval(D1)) is None


def test_a_rating_whose_request_was_never_logged_is_counted_not_lost(store):
    """The gateway accepts a rating on a response it just served, but that request's log
    entry may have been dropped (a full log queue): the report says so instead of nothing."""
    settings = store
    serve(
        settings,
        [
            request("r-kept", at(D1, 8), "Extract Ines.", GOOD),
            rate("r-kept", at(D1, 8.5), 1),
            rate("r-dropped", at(D1, 9), 1),  # its request row never made it to the log
            rate("r-dropped", at(D1, 9.5), -1),
        ],
    )
    report = harvest(settings, D1, *interval(D1))
    assert _ids(settings, report) == ["r-kept"]
    assert report["outcomes"]["no_request_logged"] == 1
    assert report["outcomes"]["thumbs_up"] == 1

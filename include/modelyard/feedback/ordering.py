"""When ``curate_dataset`` may read a date's raw partition: after that date's harvest.

The condition is the data, not another DAG's run state: the harvest report
``feedback/<ds>.json`` is written last by a completed harvest and names the feedback events it
saw (``feedback_fingerprint``), so once the report matches what the request log holds for
the interval, the date's feedback file is in place. A report that does not match (feedback
logged into the interval after its harvest ran, e.g. a late flush) waits for a re-run. A date
whose interval received no feedback (no gateway, no traffic, a backfill of dates before
serving began) has nothing to harvest and never waits, nor does anything when
``feedback.enabled`` is off.
"""

from __future__ import annotations

from datetime import datetime

from modelyard.feedback.harvest import fingerprint, open_log, report_path
from modelyard.settings import Settings
from modelyard.storage import read_json


def harvest_pending(settings: Settings, ds: str, since: datetime, until: datetime) -> str | None:
    """Why curation of ``ds`` must still wait (one line), or None when it may start."""
    if not settings.feedback.enabled:
        return None
    reader = open_log(settings)
    if reader is None:
        return None
    try:
        rated = reader.latest_feedback(since=since, until=until)
    finally:
        reader.close()
    if not rated:
        return None
    path = report_path(settings, ds)
    if not path.is_file():
        harvested = "no harvest report yet"
    elif read_json(path).get("feedback_fingerprint") != fingerprint(rated):
        harvested = "its harvest report predates some of it"
    else:
        return None
    return (
        f"{len(rated)} responses got feedback in {since.isoformat()} .. {until.isoformat()} and "
        f"{harvested}: waiting for harvest_feedback to (re)write {path}"
    )

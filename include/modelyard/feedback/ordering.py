"""When ``curate_dataset`` may read a date's raw partition: after that date's harvest.

The condition is the data, not another DAG's run state: the harvest report
``feedback/<ds>.json`` is written last by a completed harvest, so once it exists the date's
feedback file is in place. A date whose interval received no feedback (no gateway, no
traffic, a backfill of dates before serving began) has nothing to harvest and never waits,
and neither does anything when ``feedback.enabled`` is off.
"""

from __future__ import annotations

from datetime import datetime

from modelyard.feedback.harvest import open_log, report_path
from modelyard.settings import Settings


def harvest_pending(settings: Settings, ds: str, since: datetime, until: datetime) -> str | None:
    """Why curation of ``ds`` must still wait (one line), or None when it may start."""
    if not settings.feedback.enabled or report_path(settings, ds).is_file():
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
    return (
        f"{len(rated)} responses got feedback in {since.isoformat()} .. {until.isoformat()}; "
        f"waiting for harvest_feedback to write {report_path(settings, ds)}"
    )

"""The DAG-facing steps: ``harvest_feedback``'s harvest and ``curate_dataset``'s wait for it.

Plain arguments and JSON-able results (XCom); settings default to ``get_settings()``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from modelyard.feedback.harvest import harvest
from modelyard.feedback.ordering import harvest_pending
from modelyard.settings import Settings, get_settings

log = logging.getLogger(__name__)


def harvest_interval(
    ds: str, since: datetime, until: datetime, settings: Settings | None = None
) -> dict:
    """Harvest ``[since, until)`` into ``raw/<ds>/``; ``{"status": "disabled"}`` when off."""
    settings = settings or get_settings()
    if not settings.feedback.enabled:
        return {"status": "disabled", "partition": ds}
    report = harvest(settings, ds, since, until)
    log.info(
        "feedback %s: %d records in %s (%s), outcomes %s",
        ds,
        report["records"],
        report["file"],
        "changed" if report["changed"] else "unchanged",
        report["outcomes"],
    )
    summary = ("partition", "file", "records", "outcomes", "changed")
    return {"status": "harvested", **{k: report[k] for k in summary}}


def feedback_harvested(
    ds: str, since: datetime, until: datetime, settings: Settings | None = None
) -> bool:
    """True when curation of ``ds`` may start (see ``modelyard.feedback.ordering``)."""
    waiting = harvest_pending(settings or get_settings(), ds, since, until)
    if waiting:
        log.info("%s", waiting)
    return waiting is None

"""Harvest one day of production feedback into that day's raw partition.

One run per data interval ``[D, D+1)`` reads the request log for the feedback that *arrived*
in it and writes ``<storage>/raw/D/feedback-<hash>.jsonl`` (rated-up answers as served,
corrections in place of the answer; rated-down answers are counted, never written; nothing
of ``"store": false`` requests), plus the report ``<storage>/feedback/D.json``, last.
Backfill-able (``modelyard airflow backfill create --dag-id harvest_feedback``) and
idempotent: re-running a date rewrites nothing, so curation republishes the same version.

Ordering: ``curate_dataset`` for D starts with a sensor (reschedule mode: no worker slot is
held while it waits) that waits for D's harvest report, chosen over an Asset because
curation is a time-scheduled, backfilled DAG: one run per date with its own data interval,
which an Asset-triggered run would not have (an asset-or-time schedule would curate a date
twice). The sensor waits only for dates whose interval holds feedback, so days before
serving began and ``feedback.enabled=false`` deployments curate without waiting for a
harvest that has nothing to do, which an ``ExternalTaskSensor`` on this DAG's runs would.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException


@dag(
    dag_id="harvest_feedback",
    # Same intervals as curate_dataset: the run for [D, D+1) starts after D ends.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["modelyard", "data", "feedback"],
    doc_md=__doc__,
)
def harvest_feedback():
    @task
    def harvest(data_interval_start=None, data_interval_end=None) -> dict:
        from modelyard.conf import run_partition
        from modelyard.feedback.tasks import harvest_interval

        # The interval names the partition (the scheduler's ds is its start; `airflow dags
        # test harvest_feedback D+1` runs the interval [D, D+1) under the logical date D+1).
        try:
            day = run_partition(data_interval_start)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        result = harvest_interval(day, data_interval_start, data_interval_end)
        if result["status"] == "disabled":
            raise AirflowSkipException("feedback harvesting is off (feedback.enabled)")
        return result

    harvest()


harvest_feedback()

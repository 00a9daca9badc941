"""Curate one raw partition per day into a GX-gated, content-addressed dataset version.

One run per data interval reads ``<storage>/raw/<day the interval starts>/`` (for a manual
run with logical date D, the interval Airflow infers is [D-1, D): it curates D-1). Backfills
rebuild historical versions; re-running a date republishes the same version id and emits no
second Asset event.
A date whose interval received production feedback is curated after ``harvest_feedback``
wrote it into the partition (the sensor ``feedback_harvested``; why a sensor: that DAG's doc).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Metadata, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from modelyard.assets import CURATED_DATASET


def _partition(data_interval_start) -> str:
    from modelyard.conf import ended_day, run_partition

    try:
        return ended_day(run_partition(data_interval_start))
    except ValueError as exc:
        raise AirflowFailException(str(exc)) from None  # a retry would have no date either


@dag(
    dag_id="curate_dataset",
    # A data interval per day: the run for [D, D+1) starts after D ends and curates raw/D.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # cross-version dedup reads earlier dates: keep versions in date order
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["modelyard", "data"],
    doc_md=__doc__,
)
def curate_dataset():
    # Reschedule mode: a waiting run holds no worker slot. Passes at once on dates without
    # feedback; six hours cover a late harvest, then the run fails rather than curating without.
    @task.sensor(poke_interval=10, timeout=6 * 3600, mode="reschedule")
    def feedback_harvested(data_interval_start=None, data_interval_end=None) -> bool:
        from modelyard.feedback.tasks import feedback_harvested

        day = _partition(data_interval_start)
        return feedback_harvested(day, data_interval_start, data_interval_end)

    @task
    def curate(data_interval_start=None) -> dict:
        from modelyard.tasks.curation import curate_partition

        day = _partition(data_interval_start)
        result = curate_partition(day)
        if result["status"] == "missing":
            raise AirflowSkipException(f"no raw partition for {day}")
        return result

    @task
    def validate(curated: dict) -> dict:
        from modelyard.tasks.curation import validate_partition

        return validate_partition(curated["staging_dir"])

    @task
    def publish(curated: dict, _validated: dict) -> dict:
        from modelyard.tasks.curation import publish_partition

        return publish_partition(curated["staging_dir"])

    @task(outlets=[CURATED_DATASET])
    def announce(published: dict):
        """Emit the Asset event only for a version that did not exist before."""
        if not published["new"]:
            raise AirflowSkipException(f"version {published['version']} already announced")
        yield Metadata(
            CURATED_DATASET,
            extra={
                "version": published["version"],
                "path": published["path"],
                "partition": published["partition"],
            },
        )

    curated = curate()
    feedback_harvested() >> curated
    announce(publish(curated, validate(curated)))


curate_dataset()

"""Watch the canary and decide: promote it to production, roll it back, or wait for data.

``canary_analysis`` compares the version holding ``canary`` with production on the request log
of the serving gateway (error rate, format validity, thumbs up, latency) since the canary moved
in, and promotes or rolls back through the registry (lock, ledger, human approval when
``promotion.require_human_approval``). Every run's report and chart are logged to MLflow on the
version. ``auto_canary`` moves a freshly registered version that passed the gate into canary
(``promotion.auto_canary``), so stages advance without a person.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task

from modelyard.assets import REGISTERED_VERSION
from modelyard.settings import get_settings


@dag(
    dag_id="canary_analysis",
    schedule=get_settings().canary.schedule,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["modelyard", "registry", "serving"],
    doc_md=__doc__,
)
def canary_analysis():
    @task
    def analyse() -> dict:
        from modelyard.canary.decision import format_report, run_canary_analysis

        ctx = get_current_context()
        report = run_canary_analysis(get_settings(), ctx["dag"].dag_id, ctx["run_id"])
        print(format_report(report))
        return report

    analyse()


@dag(
    dag_id="auto_canary",
    schedule=[REGISTERED_VERSION],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["modelyard", "registry"],
    doc_md=__doc__,
)
def auto_canary():
    @task
    def to_canary(triggering_asset_events=None) -> list[dict]:
        from modelyard.canary.auto import auto_canary as promote_announced

        events = triggering_asset_events[REGISTERED_VERSION] if triggering_asset_events else []
        ctx = get_current_context()
        return promote_announced(
            get_settings(), [e.extra for e in events], ctx["dag"].dag_id, ctx["run_id"]
        )

    to_canary()


canary_analysis()
auto_canary()

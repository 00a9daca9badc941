"""``modelyard backfill``: a real Airflow backfill of ``curate_dataset``, followed to the end.

Dates whose interval received production feedback are harvested first: ``curate_dataset``'s
sensor waits for a date's harvest (``modelyard.feedback.ordering``), so a backfill of curation
alone would sit for hours on such a date. The command backfills ``harvest_feedback`` over those
dates before ``curate_dataset``, and a harvest that fails is reported on its date, not waited on.

Why backfill runs used to run in parallel although ``curate_dataset`` has ``max_active_runs=1``:
Airflow 3 counts a backfill's runs against the *backfill's own* ``max_active_runs`` (10 unless
given, from the CLI and the REST API; only the UI's form defaults to 1). The scheduler
(``_start_queued_dagruns``) checks the DAG's limit only for runs outside a backfill. So the
backfill is created here with ``max_active_runs=1`` and ``run_backwards=False``: its runs start
one at a time in date order, which cross-version dedup needs (each date deduplicates against
the versions published for earlier dates).

Reprocessing is ``completed``: a date that already ran (an earlier backfill, the demo, the daily
schedule) is cleared and run again, so the command reports "unchanged" for it instead of
silently creating nothing (``none``, Airflow's default, skips every date that has a run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from modelyard.airflow_api import AirflowAPI, AirflowAPIError, quoted
from modelyard.airflow_env import (
    find_running_airflow,
    free_port,
    running_airflow,
    scheduler_healthy,
)
from modelyard.feedback.ordering import harvest_pending
from modelyard.settings import Settings

DAG_ID = "curate_dataset"
HARVEST_DAG_ID = "harvest_feedback"
TERMINAL = ("success", "failed")
#: How long Airflow may report the scheduler unhealthy (no heartbeat for its
#: ``scheduler_health_check_threshold``, 30 s by default) before a backfill stops waiting: a
#: scheduler that died (standalone does not restart it) would otherwise be waited for forever.
SCHEDULER_GRACE_S = 15.0


class NoScheduler(RuntimeError):
    """No Airflow scheduler runs on this home; the message says how to start one."""


@dataclass(frozen=True)
class DateOutcome:
    """What the backfill did for one date."""

    day: str
    status: str  # "new" | "unchanged" | "skipped" | "failed" | "not run"
    version: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("new", "unchanged", "skipped")

    def line(self) -> str:
        if self.status in ("new", "unchanged"):
            return f"{self.day}  {self.version}  {self.status}"
        if self.status == "skipped":
            return f"{self.day}  skipped: no raw partition"
        return f"{self.day}  {self.status}: {self.detail}"


def check_range(start: date, end: date, today: date | None = None) -> list[str]:
    """The days of ``[start, end]``; one-line ``ValueError`` for a range Airflow cannot run.

    A daily run for day D covers [D, D+1) and may start only once D has ended (UTC).
    """
    today = today or datetime.now(UTC).date()
    if start > end:
        raise ValueError(f"--from {start} is after --to {end}")
    if end >= today:
        raise ValueError(
            f"--to {end} has not ended yet (UTC today is {today}): the run for a day starts "
            "after that day; the last day you can backfill is yesterday"
        )
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def run_backfill(
    settings: Settings,
    start: date,
    end: date,
    start_airflow: bool = False,
    out: Callable[[str], None] = print,
) -> list[DateOutcome]:
    """Backfill ``curate_dataset`` over ``[start, end]`` on the Airflow running on this home
    (or, with ``start_airflow``, on one started for the duration); one outcome per date."""
    days = check_range(start, end)
    with ExitStack() as stack:
        url = find_running_airflow(settings)
        if url is None:
            if not start_airflow:
                raise NoScheduler(
                    f"no Airflow scheduler is running on {settings.home}: start one with "
                    "`make airflow` (or `modelyard airflow standalone`) and run this again, "
                    "or add --start-airflow to run one for this backfill"
                )
            out("starting Airflow (airflow standalone) for this backfill...")
            url = stack.enter_context(running_airflow(settings, port=free_port()))
        api = AirflowAPI.login_embedded(
            url, Path(settings.home) / "airflow", settings.ui.airflow_user
        )
        stack.callback(api.close)
        first = _dag_details(api)["start_date"][:10]
        if days[0] < first:
            raise ValueError(f"--from {days[0]} is before {DAG_ID}'s start date {first}")
        harvest = None
        if pending := feedback_days(settings, days):
            harvest = create_backfill(api, pending, HARVEST_DAG_ID)
            _unpause(api, out, HARVEST_DAG_ID)
            out(
                f"backfill {harvest['id']} of {HARVEST_DAG_ID} {pending[0]}..{pending[-1]}: "
                f"{len(pending)} date(s) got production feedback, harvested before curation"
            )
        backfill = create_backfill(api, days)
        _unpause(api, out)
        out(
            f"backfill {backfill['id']} of {DAG_ID} {days[0]}..{days[-1]} on {url} "
            "(one run at a time, in date order; dates that already ran are run again)"
        )
        return follow(api, backfill, days, out, harvest=harvest)


def feedback_days(settings: Settings, days: list[str]) -> list[str]:
    """The dates among ``days`` whose curation waits for a harvest of their feedback."""
    found = []
    for day in days:
        since = datetime.fromisoformat(day).replace(tzinfo=UTC)
        if harvest_pending(settings, day, since, since + timedelta(days=1)):
            found.append(day)
    return found


def _dag_details(api: AirflowAPI, timeout: float = 180.0) -> dict:
    """The DAG as Airflow knows it; a just-started Airflow knows it once its DAG processor has
    parsed it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return api.get(f"/api/v2/dags/{DAG_ID}/details")
        except AirflowAPIError as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(2)


def create_backfill(
    api: AirflowAPI, days: list[str], dag_id: str = DAG_ID, timeout: float = 180.0
) -> dict:
    """``POST /backfills`` of ``dag_id`` (one run at a time, in date order), retried while the
    embedded SQLite DB is busy or an earlier backfill of the DAG has only its bookkeeping left.

    Airflow answers 503 (or 500 "Database error") when the scheduler holds SQLite's write lock,
    sometimes leaving the backfill row without its runs. It answers 409 "already running" while
    any backfill of the DAG lacks ``completed_at``, which the scheduler sets on a timer (30 s
    after a last run ended; minutes for such a leftover, seen here). So on a 409 while none of
    the DAG's backfill runs is queued or running, the open backfills (bookkeeping only) are
    closed and the request is sent again; one with a live run is a backfill someone else started.
    """
    body = {
        "dag_id": dag_id,
        "from_date": f"{days[0]}T00:00:00Z",
        "to_date": f"{days[-1]}T00:00:00Z",
        "run_backwards": False,
        "reprocess_behavior": "completed",
        "max_active_runs": 1,
    }
    deadline = time.monotonic() + timeout
    while True:
        try:
            return api.post("/api/v2/backfills", body)
        except AirflowAPIError as exc:
            # SQLite busy shows as a 503, or as a 500 "Database error" when the lock timed out
            # inside the request's transaction.
            busy = exc.status == 503 or (exc.status == 500 and "Database error" in str(exc))
            finishing = exc.status == 409 and not _live_backfill_runs(api, dag_id)
            if not (busy or finishing) or time.monotonic() > deadline:
                if exc.status == 409:
                    raise AirflowAPIError(
                        409,
                        f"another backfill of {dag_id} is running: wait for it or cancel it "
                        "(Airflow UI: the DAG's Backfills tab)",
                    ) from None
                raise
            if finishing:
                for left in api.get("/api/v2/backfills", dag_id=dag_id)["backfills"]:
                    if left["completed_at"] is None:
                        _close(api, left)
            time.sleep(2)


def _live_backfill_runs(api: AirflowAPI, dag_id: str) -> int:
    """How many of ``dag_id``'s backfill runs are queued or running."""
    runs = api.get(
        f"/api/v2/dags/{dag_id}/dagRuns", run_type="backfill", state=["queued", "running"], limit=1
    )
    return runs["total_entries"]


def _unpause(api: AirflowAPI, out: Callable[[str], None], dag_id: str = DAG_ID) -> None:
    """Backfill runs start only while their DAG is unpaused."""
    if api.get(f"/api/v2/dags/{dag_id}")["is_paused"]:
        api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
        out(f"unpaused {dag_id} (its daily schedule is on from now; pause it in the UI to stop)")


def follow(
    api: AirflowAPI,
    backfill: dict,
    days: list[str],
    out: Callable[[str], None],
    every: float = 2.0,
    harvest: dict | None = None,
) -> list[DateOutcome]:
    """Print each date's outcome as its run ends (they end in date order) until every date has
    one, then close the backfill; a date the backfill did not run is known once Airflow marks the
    backfill completed (on a 30 s timer), so only then is it waited for. A failed harvest of a
    date (``harvest``: its backfill) ends the wait there: that date's curation waits for it.
    A scheduler Airflow reports unhealthy for ``SCHEDULER_GRACE_S`` ends it with NoScheduler."""
    outcomes: dict[str, DateOutcome] = {}
    unhealthy_since: float | None = None
    while True:
        runs = _runs_of(api, backfill, days)
        completed = len(runs) < len(days) and (
            api.get(f"/api/v2/backfills/{backfill['id']}")["completed_at"] is not None
        )
        for day in days:
            if day in outcomes:
                continue
            run = runs.get(day)
            if run is None and completed:
                outcomes[day] = DateOutcome(
                    day, "not run", detail="a run for this date was queued or running already"
                )
            elif run is not None and run["state"] in TERMINAL:
                outcomes[day] = _outcome(api, day, run)
            elif harvest is not None and (failed := _failed_harvest(api, harvest, day)):
                out(failed.line())
                rest = [d for d in days if d > day]
                blocked = [DateOutcome(d, "not run", detail=f"queued behind {day}") for d in rest]
                return [outcomes[d] for d in days if d < day] + [failed, *blocked]
            else:
                break  # later dates wait for this one: report in date order
            out(outcomes[day].line())
        if len(outcomes) == len(days):
            if not completed:
                _close(api, backfill)
            return [outcomes[day] for day in days]
        if scheduler_healthy(api.base_url):
            unhealthy_since = None
        elif unhealthy_since is None:
            unhealthy_since = time.monotonic()
        elif time.monotonic() - unhealthy_since >= SCHEDULER_GRACE_S:
            waiting = ", ".join(day for day in days if day not in outcomes)
            raise NoScheduler(
                f"the scheduler of {api.base_url} has stopped (Airflow reports no heartbeat), "
                f"so {waiting} cannot run; dates reported above are done. Restart Airflow "
                "(`make airflow`) and run this backfill again"
            )
        time.sleep(every)


def _close(api: AirflowAPI, backfill: dict) -> None:
    """Mark a backfill whose runs have all ended completed now, not on Airflow's timer.

    The scheduler sets ``completed_at`` on a 30 s timer and refuses another backfill of the DAG
    until then (409). Cancelling a backfill with no run left queued only sets ``completed_at``
    (and pauses it, which no longer matters), so the next backfill starts at once. When the
    scheduler got there first (409) or SQLite is busy, its timer still does the job.
    """
    with suppress(AirflowAPIError):
        api.request("PUT", f"/api/v2/backfills/{backfill['id']}/cancel")


def _failed_harvest(api: AirflowAPI, harvest: dict, day: str) -> DateOutcome | None:
    """``day``'s outcome when its harvest failed: its curation would wait for it for hours."""
    run = _runs_of(api, harvest, [day], HARVEST_DAG_ID).get(day)
    if run is None or run["state"] != "failed":
        return None
    link = f"{api.base_url}/dags/{HARVEST_DAG_ID}/runs/{quoted(run['dag_run_id'])}"
    return DateOutcome(
        day,
        "failed",
        detail=f"{HARVEST_DAG_ID} failed for this date and its curation waits for the harvest "
        f"(clear that run once fixed); {link}",
    )


def _runs_of(
    api: AirflowAPI, backfill: dict, days: list[str], dag_id: str = DAG_ID
) -> dict[str, dict]:
    """This backfill's run per date: backfill runs queued (created or cleared) after it began."""
    runs = api.get(
        f"/api/v2/dags/{dag_id}/dagRuns",
        logical_date_gte=f"{days[0]}T00:00:00Z",
        logical_date_lte=f"{days[-1]}T00:00:00Z",
        run_type="backfill",
        order_by="logical_date",
        limit=len(days),
    )["dag_runs"]
    created = _instant(backfill["created_at"])
    return {
        r["logical_date"][:10]: r
        for r in runs
        if r["queued_at"] and _instant(r["queued_at"]) >= created
    }


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _outcome(api: AirflowAPI, day: str, run: dict) -> DateOutcome:
    run_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted(run['dag_run_id'])}"
    tasks = {t["task_id"]: t for t in api.get(f"{run_path}/taskInstances")["task_instances"]}
    if tasks.get("curate", {}).get("state") == "skipped":
        return DateOutcome(day, "skipped")
    if tasks.get("publish", {}).get("state") == "success":
        published = api.get(f"{run_path}/taskInstances/publish/xcomEntries/return_value")["value"]
        status = "new" if published["new"] else "unchanged"
        return DateOutcome(day, status, version=published["version"])
    failed = next((t for t in tasks.values() if t["state"] == "failed"), None)
    link = f"{api.base_url}/dags/{DAG_ID}/runs/{quoted(run['dag_run_id'])}"
    if failed is None:
        return DateOutcome(day, "failed", detail=f"run {run['state']} without publishing; {link}")
    error = api.task_error(DAG_ID, run["dag_run_id"], failed["task_id"], failed["try_number"])
    return DateOutcome(
        day, "failed", detail=f"{failed['task_id']}: {error or 'see its log'}; {link}"
    )

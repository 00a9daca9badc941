"""Make a refused candidate and a rollback visible: the gate's verdict, run notes, alerts.

``finetune_model``'s ``gate`` task fails when the gate refused (``refusal`` gives its log lines),
so the run is red at a glance while ``register`` has still recorded the version. Alerts go
through Airflow's notifier mechanism: :class:`ModelyardNotifier` is a ``BaseNotifier`` used as
the task's callback; it posts JSON to ``settings.notify.webhook_url`` and/or hands the context
to the ``BaseNotifier`` class ``settings.notify.notifier`` names (a provider's Slack, SMTP...).
Settings are read when the alert fires, not when the DAG is parsed.

The run note: the Task SDK of Airflow 3.3 (task-sdk 1.3.2) has no call for a task to set its
DAG run's note (runtime note updates landed in Airflow's main branch after it), so the note is
set through the public REST API (``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}``) of the
Airflow serving this home, as ``settings.ui.airflow_user``. Under ``airflow dags test`` no API
server runs; the note is then skipped with a warning and the failed task still tells.
"""

from __future__ import annotations

import importlib
import json
import logging
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

from modelyard.settings import Settings, get_settings

log = logging.getLogger(__name__)
MAX_NOTE_CHARS = 1000


def refusal(registered: Mapping[str, Any], report: Mapping[str, Any]) -> list[str] | None:
    """Log lines for a candidate the gate refused (the failed checks with their margins and
    what it was compared with), or None when it passed."""
    gate = report.get("gate") or {}
    if gate.get("passed"):
        return None
    compared = (report.get("incumbent") or {}).get("label") or "the incumbent"
    lines = [
        f"gate refused version {registered.get('version')} of {registered.get('name')} "
        f"(compared with {compared}); failed: {', '.join(gate.get('failed') or ['?'])}"
    ]
    for check in gate.get("checks") or []:
        if not check.get("passed"):
            detail = {k: check[k] for k in ("value", "required", "margin") if k in check}
            if check.get("detail"):
                detail["detail"] = check["detail"]
            lines.append(f"  {check.get('name')}: {json.dumps(detail, default=str)}")
    return lines


def set_run_note(dag_id: str, run_id: str, note: str, settings: Settings) -> bool:
    """Set the note of DAG run ``run_id`` through the REST API of this home's Airflow."""
    from modelyard.airflow_api import AirflowAPI, AirflowAPIError, quoted
    from modelyard.airflow_env import find_running_airflow

    url = find_running_airflow(settings)
    if url is None:
        log.warning("run note not set (no Airflow API server serves %s): %s", settings.home, note)
        return False
    try:
        api = AirflowAPI.login_embedded(
            url, Path(settings.home) / "airflow", settings.ui.airflow_user
        )
        try:
            api.patch(
                f"/api/v2/dags/{dag_id}/dagRuns/{quoted(run_id)}",
                {"note": note[:MAX_NOTE_CHARS]},
            )
        finally:
            api.close()
    except AirflowAPIError as exc:
        log.warning("run note not set: %s", exc)
        return False
    return True


def post_webhook(url: str, payload: dict, timeout: float) -> None:
    """POST ``payload`` as JSON; an HTTP error or an unreachable URL raises ``OSError``."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (http(s) only)
        resp.read()


def _configured_notifier(settings: Settings) -> BaseNotifier | None:
    path = settings.notify.notifier
    if not path:
        return None
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, BaseNotifier)):
        raise TypeError(f"notify.notifier: {path} is not an Airflow BaseNotifier subclass")
    return cls(**settings.notify.notifier_kwargs)


def alert_payload(event: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """What an alert says: the event, where it happened, and the task's message."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    return {
        "event": event,
        "dag_id": getattr(dag_run, "dag_id", None),
        "run_id": getattr(dag_run, "run_id", None),
        "task_id": getattr(ti, "task_id", None),
        "message": str(exc) if exc else None,
        "result": _xcom(ti),
    }


def _xcom(ti: Any) -> Any:
    try:
        return ti.xcom_pull(task_ids=ti.task_id) if ti is not None else None
    except Exception:  # noqa: BLE001 - an alert must go out even when the XCom cannot be read
        return None


class ModelyardNotifier(BaseNotifier):
    """Alert on ``event`` ("refused" or "rollback") through the configured channels."""

    template_fields = ("event",)

    def __init__(self, event: str) -> None:
        super().__init__()
        self.event = event

    def notify(self, context: Any) -> None:
        settings = get_settings()
        payload = alert_payload(self.event, context)
        if settings.notify.webhook_url:
            try:
                post_webhook(
                    settings.notify.webhook_url, payload, settings.notify.webhook_timeout_seconds
                )
                log.info("%s alert posted to the notify webhook", self.event)
            except OSError as exc:
                log.error("notify webhook failed for %s: %s", self.event, exc)
        notifier = _configured_notifier(settings)
        if notifier is not None:
            notifier(context)

"""Alerts on a refused candidate and a rollback: Airflow notifiers, a real local webhook.

The notifier is what the ``gate`` task (on failure) and ``promote_model``'s ``rollback`` task
(on success) call back; here it is called as Airflow calls a callback (``notifier(context)``)
and its POST is received by a real HTTP server. ``notify.notifier`` names any BaseNotifier
class, built with ``notifier_kwargs``; bad settings are one line.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk import BaseNotifier

from modelyard.notify import ModelyardNotifier, refusal
from tests.orchestration.test_finetune_dag import Webhook

SEEN: list[dict] = []


class Recorder(BaseNotifier):
    """A notifier class named by settings, as a provider's (Slack, SMTP...) would be."""

    template_fields = ("channel",)

    def __init__(self, channel: str) -> None:
        super().__init__()
        self.channel = channel

    def notify(self, context) -> None:
        SEEN.append({"channel": self.channel, "run_id": context["dag_run"].run_id})


def _context(task_id: str, exception: Exception | None = None) -> dict:
    ti = SimpleNamespace(task_id=task_id, xcom_pull=lambda task_ids: {"version": "2"})
    dag_run = SimpleNamespace(dag_id="promote_model", run_id="manual__2026-11-25")
    return {"ti": ti, "dag_run": dag_run, "exception": exception}


@pytest.fixture
def notify_settings(settings, monkeypatch):
    from modelyard import settings as settings_mod

    def configure(**env: str):
        for key, value in env.items():
            monkeypatch.setenv(f"MODELYARD_NOTIFY__{key.upper()}", value)
        settings_mod.get_settings.cache_clear()
        return settings_mod.get_settings()

    return configure


def test_rollback_and_refusal_reach_the_webhook_and_the_configured_notifier(notify_settings):
    hook = Webhook()
    try:
        notify_settings(
            webhook_url=hook.url,
            notifier=f"{__name__}.Recorder",
            notifier_kwargs='{"channel": "#ml-alerts"}',
        )
        ModelyardNotifier("rollback")(_context("rollback"))
        ModelyardNotifier("refused")(_context("gate", RuntimeError("gate refused version 3")))
    finally:
        hook.close()
    assert [(a["event"], a["task_id"]) for a in hook.received] == [
        ("rollback", "rollback"),
        ("refused", "gate"),
    ]
    assert hook.received[0]["result"] == {"version": "2"}
    assert hook.received[0]["run_id"] == "manual__2026-11-25"
    assert hook.received[1]["message"] == "gate refused version 3"
    assert SEEN[-2:] == [{"channel": "#ml-alerts", "run_id": "manual__2026-11-25"}] * 2


def test_an_unreachable_webhook_is_logged_not_raised(notify_settings, caplog):
    hook = Webhook()
    url = hook.url
    hook.close()  # nothing listens there any more
    notify_settings(webhook_url=url, webhook_timeout_seconds="2")
    ModelyardNotifier("rollback")(_context("rollback"))
    assert "notify webhook failed for rollback" in caplog.text


def test_bad_notify_settings_are_one_line(notify_settings):
    from modelyard.settings import SettingsError

    for key, value in (("webhook_url", "ftp://host/x"), ("notifier", "not a path; rm")):
        with pytest.raises(SettingsError) as exc:
            notify_settings(**{"webhook_url": "", "notifier": "", key: value})
        assert f"notify.{key}" in str(exc.value) and "\n" not in str(exc.value)
    notify_settings(webhook_url="", notifier="modelyard.settings.Settings")
    with pytest.raises(TypeError, match="is not an Airflow BaseNotifier subclass"):
        ModelyardNotifier("refused").notify(_context("gate"))


def test_refusal_names_failed_checks_margins_and_the_comparison():
    report = {
        "gate": {
            "passed": False,
            "failed": ["rouge_l.threshold"],
            "checks": [
                {
                    "name": "rouge_l.threshold",
                    "passed": False,
                    "value": 0.1,
                    "required": 0.3,
                    "margin": -0.2,
                    "detail": "",
                },
                {"name": "format_validity.threshold", "passed": True, "margin": 0.4},
            ],
        },
        "incumbent": {"label": "production v2"},
    }
    lines = refusal({"name": "m", "version": "3"}, report)
    assert lines[0] == (
        "gate refused version 3 of m (compared with production v2); failed: rouge_l.threshold"
    )
    assert lines[1:] == ['  rouge_l.threshold: {"value": 0.1, "required": 0.3, "margin": -0.2}']
    assert refusal({"version": "3"}, {"gate": {"passed": True}}) is None

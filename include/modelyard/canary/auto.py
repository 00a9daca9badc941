"""Stages advance on their own: a version that passed the gate goes staging -> canary.

``finetune_model``'s ``register`` task emits a ``REGISTERED_VERSION`` Asset event for every
version it registers; the ``auto_canary`` DAG runs on it and moves the versions that reached
``staging`` into ``canary`` through :func:`modelyard.registry.stages.promote` (lock, ledger),
when ``promotion.auto_canary`` is on. From there ``canary_analysis`` decides.
"""

from __future__ import annotations

from typing import Any

from modelyard.settings import Settings

ACTOR = "airflow:auto_canary"


def auto_canary(
    settings: Settings,
    events: list[dict[str, Any]],
    dag_id: str | None = None,
    dag_run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Promote each announced, gate-passed version to canary; what happened to each event."""
    from modelyard.registry.stages import promote

    outcomes: list[dict[str, Any]] = []
    for extra in events:
        version = str(extra.get("version") or "")
        if not settings.promotion.auto_canary:
            outcomes.append({"version": version, "skipped": "promotion.auto_canary is off"})
        elif not extra.get("staging"):
            outcomes.append({"version": version, "skipped": "the gate refused it: no staging"})
        else:
            try:
                moved = promote(
                    settings,
                    to="canary",
                    actor=ACTOR,
                    reason="passed the gate; promotion.auto_canary is on",
                    version=version,
                    dag_id=dag_id,
                    dag_run_id=dag_run_id,
                )
            except ValueError as exc:  # a person moved it first: theirs stands
                outcomes.append({"version": version, "skipped": str(exc)})
            else:
                outcomes.append({"version": version, "stage": "canary", **moved})
    return outcomes

"""Stages advance on their own: a version that passed the gate goes staging -> canary.

``finetune_model``'s ``register`` task emits a ``REGISTERED_VERSION`` Asset event for every
version it registers; the ``auto_canary`` DAG runs on it and moves the versions that reached
``staging`` into ``canary`` through :func:`modelyard.registry.stages.promote` (lock, ledger),
when ``promotion.auto_canary`` is on. From there ``canary_analysis`` decides.

The first version is the exception: with nothing in production there is no live incumbent to
compare a canary with (and no production arm to route the other users to), so with
``promotion.first_to_production`` it continues canary -> production at once, both moves in
the ledger; a required human approval still stops it at canary.
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

    versions = [_announced_version(settings, extra) for extra in events]  # all, before a move
    outcomes: list[dict[str, Any]] = []
    for extra, version in zip(events, versions, strict=True):
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
                if _first_production(settings):
                    outcomes[-1] = _to_production(settings, version, dag_id, dag_run_id)
    return outcomes


def _announced_version(settings: Settings, extra: dict[str, Any]) -> str:
    """The version an event names, which must exist. Anyone with trigger rights can post an
    event: one naming no version would otherwise promote whichever version holds staging."""
    from mlflow.exceptions import MlflowException

    from modelyard.registry.artifacts import client_for
    from modelyard.registry.stages import version_ref

    try:
        version = version_ref(extra.get("version") if isinstance(extra, dict) else None)
    except ValueError:
        version = None
    if version is None:
        raise ValueError(f"a registered-version event names no model version: {extra!r}")
    try:
        client_for(settings).get_model_version(settings.registered_model, version)
    except MlflowException:
        raise ValueError(
            f"a registered-version event names version {version}, which "
            f"{settings.registered_model} does not have"
        ) from None
    return version


def _first_production(settings: Settings) -> bool:
    from modelyard.registry.artifacts import client_for

    if not settings.promotion.first_to_production:
        return False
    model = client_for(settings).get_registered_model(settings.registered_model)
    return "production" not in model.aliases


def _to_production(
    settings: Settings, version: str, dag_id: str | None, dag_run_id: str | None
) -> dict[str, Any]:
    from modelyard.registry.approval import approval_required
    from modelyard.registry.stages import promote

    if approval_required(settings):
        return {"version": version, "stage": "canary", "waiting": "a person's approval"}
    moved = promote(
        settings,
        to="production",
        actor=ACTOR,
        reason="first production: no live incumbent to compare a canary with "
        "(promotion.first_to_production)",
        version=version,
        dag_id=dag_id,
        dag_run_id=dag_run_id,
    )
    return {"version": version, "stage": "production", **moved}

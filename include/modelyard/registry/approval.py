"""Human approval of production, as recorded facts in the ledger.

When ``promotion.require_human_approval`` is set, ``promote(to="production")`` moves a version
only if the ledger holds an ``approve`` entry for that version that is

- newer than the version's latest move into canary (an approval is for the canary being
  watched now, not for an earlier stint), and not yet used by a promotion to production, and
- by someone other than the actor promoting it (four-eyes: a self-approval is no approval).

The setting is registry-wide (``PromotionSettings``); no per-model tag can change it. Rollback
needs no new approval: it returns production to a version that already held production, which
passed this check then if it was required (see ``stages.rollback``).
"""

from __future__ import annotations

from typing import Any

from modelyard.settings import Settings


def approval_required(settings: Settings) -> bool:
    """Whether production needs a recorded human approval (the promote DAG asks for one)."""
    return settings.promotion.require_human_approval


def standing_approvals(ledger: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    """Approvals of ``version`` since it last entered canary, not yet used by a promotion."""
    start = max(
        (
            i + 1
            for i, e in enumerate(ledger)
            if e["version"] == version and e["to_stage"] == "canary" and e["action"] == "promote"
        ),
        default=0,
    )
    standing: list[dict[str, Any]] = []
    for entry in ledger[start:]:
        if entry["version"] != version:
            continue
        if entry["action"] == "approve":
            standing.append(entry)
        elif entry["action"] == "promote" and entry["to_stage"] == "production":
            standing = []
    return standing


def require_approval(ledger: list[dict[str, Any]], name: str, version: str, actor: str) -> list:
    """The approvals that let ``actor`` move ``version`` to production; refuses without one."""
    standing = standing_approvals(ledger, version)
    by_others = [e for e in standing if e["actor"] and e["actor"] != actor]
    if by_others:
        return by_others
    how = (
        f"another person runs `modelyard approve --version {version} --reason ...`, or answers "
        "the approval task of a promote_model run in the Airflow UI"
    )
    if standing:
        raise PermissionError(
            f"version {version} of {name} is approved only by {actor}, who is promoting it: "
            f"production needs a second person's approval (four-eyes); {how}"
        )
    raise PermissionError(
        f"version {version} of {name} has no approval for production "
        f"(promotion.require_human_approval is on): {how}"
    )


def approvable(holder: str | None, version: str | None, name: str) -> str:
    """The version an approval is for: the canary (or ``version``, which must hold canary)."""
    target = version or holder
    if target is None:
        raise ValueError(f"no version of {name} holds canary: there is nothing to approve")
    if holder != target:
        raise ValueError(
            f"version {target} of {name} does not hold canary (held by {holder or 'none'}): "
            "approvals are for the version being watched in canary"
        )
    return target

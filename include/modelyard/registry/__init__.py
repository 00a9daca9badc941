"""MLflow model registry side of modelyard: versions with lineage, aliases as stages, a ledger."""

from modelyard.registry.approval import approval_required
from modelyard.registry.artifacts import load_model
from modelyard.registry.stages import approve, promote, register_candidate, rollback
from modelyard.registry.status import find_versions, format_status, status

__all__ = [
    "approval_required",
    "approve",
    "find_versions",
    "format_status",
    "load_model",
    "promote",
    "register_candidate",
    "rollback",
    "status",
]
